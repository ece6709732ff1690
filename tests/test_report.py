"""JSON, markdown and terminal reports of round trips and checks."""

from __future__ import annotations

import hashlib
import json

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from pytest_persist import check_persistence
from pytest_persist.environments.fingerprint import environment_fingerprint
from pytest_persist.environments.version_warnings import VersionWarningRecord
from pytest_persist.nox import merge_reports
from pytest_persist.results.outcome import Difference, Outcome, OutcomeKind
from pytest_persist.results.report import (
    Record,
    environment_id,
    read_json_report,
    summary_lines,
    write_json_report,
    write_markdown_report,
)


def warning(estimator="DecisionTreeClassifier", old="1.2.2", new="1.9.1"):
    return VersionWarningRecord(estimator, old, new, "InconsistentVersionWarning", "Trying...")


def sample_records() -> list[Record]:
    passed = Outcome(OutcomeKind.PASSED, "LogisticRegression", "pickle", test_id="t.py::test_lr")
    mismatch = Outcome(
        OutcomeKind.MISMATCH,
        "RandomForestClassifier",
        "joblib",
        test_id="t.py::test_rf[joblib]",
        differences=[
            Difference("predict", "2.00% of labels differ", n_different=3, n_total=150),
            Difference("predict_proba", "values differ", max_abs=float("nan"), max_rel=0.5),
        ],
        version_warnings=[warning(), warning(), warning("RandomForestClassifier")],
        details={"saved_environment": {"scikit-learn": "1.2.2"}},
    )
    crashed = Outcome(
        OutcomeKind.LOAD_ERROR,
        "Weird|Model",
        "cloudpickle",
        test_id="t.py::test_weird[cloudpickle-big]",
        error="the loader crashed with SIGABRT while loading",
    )
    unavailable = Outcome(
        OutcomeKind.UNAVAILABLE, "LogisticRegression", "onnx", test_id="t.py::test_lr", error="no"
    )
    return [
        Record(passed, "roundtrip"),
        Record(mismatch, "check"),
        Record(crashed, "check"),
        Record(unavailable, "roundtrip"),
    ]


def test_json_report_schema(tmp_path):
    records = sample_records()
    here = {"python": "3.11.7"}
    path = write_json_report(tmp_path / "out" / "report.json", records, here)
    data = json.loads(path.read_text())  # strict JSON, no NaN
    assert list(data) == ["format", "format_version", "environment", "environments", "records"]
    assert data["format"] == "pytest-persist-report" and data["format_version"] == 2
    canonical = json.dumps(here, sort_keys=True, separators=(",", ":")).encode()
    assert data["environment"] == "env-" + hashlib.sha256(canonical).hexdigest()[:12]
    assert data["environment"] == environment_id(here)
    saved_id = environment_id({"scikit-learn": "1.2.2"})
    assert data["environments"] == {data["environment"]: here, saved_id: {"scikit-learn": "1.2.2"}}
    first, second = data["records"][:2]
    assert first["mode"] == "roundtrip" and second["mode"] == "check"
    assert first["kind"] == "passed" and second["kind"] == "mismatch"
    for key in Outcome.__dataclass_fields__:
        if key not in ("loaded", "artifact"):  # in-process objects, not report data
            assert key in first
    assert "loaded" not in first and "artifact" not in first
    assert second["differences"][1]["max_abs"] == "nan"
    assert second["version_warnings"][0]["original_version"] == "1.2.2"
    # environments are referred to, never repeated: a round trip's both are the run's
    assert (first["saved_environment"], first["loaded_environment"]) == (data["environment"],) * 2
    assert second["saved_environment"] == saved_id and "saved_environment" not in second["details"]
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary left


def _v1_report(path, records, environment):
    """What format version 1 wrote: every record carries its environments in its details."""
    report = {
        "format": "pytest-persist-report",
        "format_version": 1,
        "environment": environment,
        "records": [record.to_dict() for record in records],
    }
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


def check_records(environment) -> list[Record]:
    """Check records as ``check_entry`` makes them, two saved elsewhere, one here."""
    elsewhere = {**environment, "scikit-learn": "1.2.2"}
    records = []
    for index, saved in enumerate([elsewhere, elsewhere, environment]):
        outcome = Outcome(OutcomeKind.PASSED, "LogisticRegression", "pickle", test_id=f"t::{index}")
        outcome.details = {
            "entry": f"store/{index}",
            "saved_environment": dict(saved),
            "loaded_environment": dict(environment),
        }
        records.append(Record(outcome, "check"))
    return records


def test_v1_and_v2_reports_read_back_identically(tmp_path):
    environment = environment_fingerprint()
    records = [*sample_records(), *check_records(environment)]
    v1_environment, v1 = read_json_report(_v1_report(tmp_path / "v1.json", records, environment))
    v2_environment, v2 = read_json_report(
        write_json_report(tmp_path / "v2.json", records, environment)
    )
    assert v1_environment == v2_environment == environment
    assert [r.to_dict() for r in v2] == [r.to_dict() for r in v1] == [r.to_dict() for r in records]
    v2_data = json.loads((tmp_path / "v2.json").read_text())
    assert len(v2_data["environments"]) == 3  # here, 1.2.2 and the mismatch's partial one
    assert (tmp_path / "v2.json").stat().st_size < (tmp_path / "v1.json").stat().st_size


def test_an_undefined_environment_id_is_an_error(tmp_path):
    path = write_json_report(tmp_path / "r.json", check_records({"python": "3.11.7"}), {})
    data = json.loads(path.read_text())
    data["records"][1]["saved_environment"] = "env-000000000000"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"record 1's saved_environment .*env-000000000000"):
        read_json_report(path)
    data["format_version"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="report format version 3 unknown"):
        read_json_report(path)


def test_nox_merge_reads_v1_and_v2_alike(tmp_path):
    environment = environment_fingerprint()
    records = [*sample_records(), *check_records(environment)]
    (tmp_path / "v1").mkdir()
    v1 = merge_reports([_v1_report(tmp_path / "v1" / "r.json", records, environment)])
    v2 = merge_reports([write_json_report(tmp_path / "v2" / "r.json", records, environment)])
    assert v2["records"] == v1["records"]
    assert v2["environments"] == v1["environments"]
    here = next(r["loaded_row"] for r in v2["records"] if r["mode"] == "roundtrip")
    checks = [r for r in v2["records"] if r["test_id"].startswith("t::")]
    assert [r["loaded_row"] for r in checks] == [here] * 3
    assert checks[0]["saved_row"] == checks[1]["saved_row"] != here == checks[2]["saved_row"]


def test_json_report_reads_back(tmp_path):
    records = sample_records()
    environment, back = read_json_report(
        write_json_report(tmp_path / "r.json", records, environment_fingerprint())
    )
    assert environment["python"]
    assert [(r.mode, r.outcome.kind, r.outcome.backend) for r in back] == [
        (r.mode, r.outcome.kind, r.outcome.backend) for r in records
    ]
    assert back[1].outcome.version_warnings == records[1].outcome.version_warnings


def test_real_roundtrip_outcomes_serialize(tmp_path):
    X, y = load_iris(return_X_y=True)
    outcomes = check_persistence(LogisticRegression(max_iter=500).fit(X, y), X, y)
    path = write_json_report(
        tmp_path / "r.json", [Record(o) for o in outcomes], environment_fingerprint()
    )
    data = json.loads(path.read_text())
    assert {r["kind"] for r in data["records"]} == {"passed"}
    assert all(r["dump_seconds"] is not None for r in data["records"])


def test_markdown_report(tmp_path):
    path = write_markdown_report(tmp_path / "summary.md", sample_records())
    text = path.read_text()
    assert "### Round trips" in text and "### Stored artifacts checked" in text
    assert "| estimator (test) | pickle | onnx |" in text
    assert "| LogisticRegression (test_lr) | ✅ passed | ⚪ unavailable |" in text
    assert "RandomForestClassifier (test_rf) | ❌ mismatch ⚠3 |" in text
    assert "Weird\\|Model (test_weird[big])" in text  # pipes escaped, backend id dropped
    assert "| DecisionTreeClassifier | 1.2.2 | 1.9.1 | 2 |" in text
    assert "<summary>Weird|Model via cloudpickle: load_error (check)</summary>" in text
    assert "SIGABRT" in text


def test_summary_lines():
    lines = summary_lines(sample_records())
    text = "\n".join(lines)
    assert lines[0] == "round trips: 1 passed, 1 unavailable"
    assert "stored artifacts checked: 1 mismatch, 1 load_error" in text
    assert "DecisionTreeClassifier: 1.2.2 -> 1.9.1 x2 in RandomForestClassifier (test_rf)" in text
    header = next(line for line in lines if "estimator (test)" in line and "joblib" in line)
    assert header.index("joblib") < header.index("cloudpickle")


def test_nothing_to_say_gives_no_lines():
    passed = Outcome(OutcomeKind.PASSED, "LogisticRegression", "pickle", test_id="t::a")
    assert summary_lines([Record(passed)]) == []
    assert summary_lines([]) == []
    assert summary_lines([Record(passed)], always=True)
    assert summary_lines([Record(passed, "check")])  # checks are always worth a line


def test_mode_is_validated():
    with pytest.raises(ValueError, match="mode"):
        Record(Outcome(OutcomeKind.PASSED, "X", "pickle"), "other")
