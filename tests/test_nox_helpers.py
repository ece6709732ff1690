"""The nox helpers: rows, the chain, the report merge and the atlas, with no environment built."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_persist import nox as pn
from pytest_persist.atlas import publish as pn_publish
from pytest_persist.atlas import rows as version_rows
from pytest_persist.nox import CompatPair, ReportError, RowError, VersionRow

OLD = {"python": "3.10.13", "scikit-learn": "1.0.2", "numpy": "1.21.6", "scipy": "1.11.4"}
MID = {"python": "3.11.7", "scikit-learn": "1.3.2", "numpy": "1.26.4", "scipy": "1.17.1"}
NEW = {
    "python": "3.13.0",
    "scikit-learn": "1.9.1",
    "numpy": "2.5.5",
    "scipy": "1.18.1",
    "skl2onnx": "1.20.0",
}
ROWS = [
    VersionRow("3.10", "1.0", "1.21"),
    VersionRow("3.11", "1.3", "1.26"),
    VersionRow("3.13", "1.9", "2.5"),
]


def record(kind: str, estimator: str, backend: str, **extra: Any) -> dict[str, Any]:
    """A report record shaped as ``pytest --persist-report`` writes it."""
    base: dict[str, Any] = {
        "kind": kind,
        "estimator": estimator,
        "backend": backend,
        "test_id": f"examples/compat/test_compat.py::test_{estimator.lower()}[{backend}]",
        "error": "",
        "compared_methods": ["predict", "predict_proba"],
        "not_compared": {},
        "differences": [],
        "state_differences": [],
        "version_warnings": [],
        "details": {},
        "versions": {},
        "dump_seconds": 0.01,
        "load_seconds": 0.02,
        "artifact_bytes": 1234,
        "mode": "roundtrip",
    }
    base.update(extra)
    return base


def check(kind: str, estimator: str, backend: str, saved: dict, loaded: dict, **extra: Any):
    details = {"saved_environment": saved, "loaded_environment": loaded}
    return record(kind, estimator, backend, mode="check", details=details, **extra)


def warning(estimator: str, old: str, new: str) -> dict[str, Any]:
    return {
        "estimator": estimator,
        "original_version": old,
        "current_version": new,
        "category": "InconsistentVersionWarning",
        "message": f"Trying to unpickle estimator {estimator} from version {old} when using {new}",
    }


def write_report(path: Path, environment: dict, records: list[dict]) -> Path:
    report = {
        "format": "pytest-persist-report",
        "format_version": 1,
        "environment": environment,
        "records": records,
    }
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


@pytest.fixture
def reports(tmp_path: Path) -> list[Path]:
    """Two cross-version check reports and one same-environment round trip report."""
    old_to_mid = [
        check(
            "passed",
            "LogisticRegression",
            "pickle",
            OLD,
            MID,
            version_warnings=[warning("LogisticRegression", "1.0.2", "1.3.2")],
        ),
        check(
            "load_error",
            "HistGradientBoostingClassifier",
            "pickle",
            OLD,
            MID,
            error="AttributeError: Can't get attribute 'Loss' on <module 'sklearn._loss'>",
        ),
        check(
            "method_error",
            "RandomForestClassifier",
            "joblib",
            OLD,
            MID,
            error="AttributeError: 'DecisionTreeClassifier' object has no attribute "
            "'monotonic_cst'",
            version_warnings=[warning("DecisionTreeClassifier", "1.0.2", "1.3.2")] * 3,
        ),
        check("unavailable", "LogisticRegression", "onnx", OLD, MID, error="pip install skl2onnx"),
    ]
    mid_to_new = [
        check(
            "mismatch",
            "GradientBoostingClassifier",
            "pickle",
            MID,
            NEW,
            differences=[
                {
                    "method": "predict",
                    "message": "labels differ",
                    "path": "",
                    "max_abs": None,
                    "max_rel": None,
                    "n_different": 3,
                    "n_total": 150,
                    "tolerated": False,
                },
                {
                    "method": "predict_proba",
                    "message": "values differ | beyond tolerance",
                    "path": "[:, 1]",
                    "max_abs": 0.25,
                    "max_rel": 0.5,
                    "n_different": 12,
                    "n_total": 300,
                    "tolerated": False,
                },
            ],
        ),
        check("passed", "LogisticRegression", "pickle", MID, NEW),
    ]
    roundtrip = [
        record("passed", "LogisticRegression", "pickle"),
        record("passed", "FunctionTransformer", "cloudpickle"),
        record("dump_error", "FunctionTransformer", "pickle", error="Can't pickle <lambda>"),
        record("unsupported", "HistGradientBoostingClassifier", "onnx", error="no converter"),
    ]
    return [
        write_report(tmp_path / "a.json", MID, old_to_mid),
        write_report(tmp_path / "b.json", NEW, mid_to_new),
        write_report(tmp_path / "c.json", NEW, roundtrip),
    ]


# --- rows ---------------------------------------------------------------------------------


def test_row_id_requirements_and_params() -> None:
    row = VersionRow("3.10", "1.0", "1.21", pins=["scipy<1.12"])
    assert row.id == "py3.10-skl1.0-np1.21"
    assert row.pins == ("scipy<1.12",)
    assert row.requirements == ["scikit-learn==1.0.*", "numpy==1.21.*", "scipy<1.12"]
    assert row.nox_params == ("3.10", "1.0", "1.21")
    exact = VersionRow("3.11", "1.3.0", "1.26.4", id="first-inconsistent-warning")
    assert exact.id == "first-inconsistent-warning"
    assert exact.requirements[:2] == ["scikit-learn==1.3.0", "numpy==1.26.4"]


def test_row_matches_environment_by_series_or_exact_version() -> None:
    assert VersionRow("3.10", "1.0", "1.21").matches(OLD)
    assert VersionRow("3.10", "1.0.2", "1.21.6").matches(OLD)
    assert not VersionRow("3.10", "1.0.1", "1.21").matches(OLD)
    assert not VersionRow("3.11", "1.0", "1.21").matches(OLD)
    assert not VersionRow("3.10", "1.1", "1.21").matches(OLD)


def test_default_rows_are_valid_and_cover_the_range() -> None:
    rows = pn.validate_rows(pn.default_rows())
    assert len({r.id for r in rows}) == len(rows)
    assert {r.python for r in rows} == {"3.10", "3.11", "3.12", "3.13"}
    # every minor from 1.0 to 1.9, each as a series (its newest patch release)
    assert {r.sklearn for r in rows} == {f"1.{minor}" for minor in range(10)}
    assert {r.numpy.split(".")[0] for r in rows} == {"1", "2"}
    majors: dict[str, set[str]] = {}
    for r in rows:
        majors.setdefault(r.sklearn, set()).add(r.numpy.split(".")[0])
    assert {"1", "2"} in majors.values()  # one minor under numpy 1 and numpy 2


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (VersionRow("3.11", "1.3", "2.0"), "fails at import"),
        (VersionRow("3.11", "1.4.0", "2.0"), "from 1.4.2 on"),
        (VersionRow("3.13", "1.9", "1.26"), "numpy 1.26 has no wheels for Python 3.13"),
        (VersionRow("3.13", "1.9", "2.0"), "numpy 2.0 has no wheels for Python 3.13"),
        (VersionRow("3.10", "1.9", "2.2"), "scikit-learn 1.9 has no wheels for Python 3.10"),
        (VersionRow("3.10", "1.6", "2.3"), "series with wheels there: 1.21 to 2.2"),
        (VersionRow("3.12", "1.2", "1.26"), "scikit-learn 1.2 has no wheels for Python 3.12"),
        (VersionRow("3.11", "1.9", "1.23"), "requires numpy >= 1.24"),
        (VersionRow("3.9", "1.0", "1.21"), "needs Python >= 3.10"),
        (VersionRow("3.10", "0.24", "1.21"), "needs scikit-learn >= 1.0"),
        (VersionRow("3", "1.0", "1.21"), "python '3' is not"),
        (VersionRow("py3.10", "1.0", "1.21"), "python 'py3.10' is not"),
        (VersionRow("3.10", "latest", "1.21"), "sklearn 'latest' is not"),
        (VersionRow("3.10", "1.0", "2.x"), "numpy '2.x' is not"),
        (VersionRow("3.10", "1.0", "1.21", pins=["scipy"]), "pin 'scipy' is not"),
        (VersionRow("3.10", "1.0", "1.21", pins=["numpy<2"]), "through the row's fields"),
        (VersionRow("3.10", "1.0", "1.21", without=["tensorflow"]), "unknown extra"),
    ],
)
def test_validate_rows_names_the_impossible_cell(row: VersionRow, expected: str) -> None:
    with pytest.raises(RowError, match="impossible version rows") as info:
        pn.validate_rows([VersionRow("3.12", "1.5", "2.0"), row])
    message = str(info.value)
    assert expected in message
    assert f"row {row.id}:" in message
    assert "py3.12-skl1.5-np2.0" not in message


@pytest.mark.parametrize(
    "row",
    [
        VersionRow("3.11", "1.4", "2.0"),
        VersionRow("3.11", "1.4.2", "2.1"),
        VersionRow("3.13", "1.5", "2.1"),
        VersionRow("3.12", "1.3", "1.26"),
        VersionRow("3.10", "1.7", "1.22"),
        VersionRow("3.10", "1.0", "1.21", pins=["scipy<1.12", "pandas[performance]>=1.3"]),
        VersionRow("3.14", "1.9", "2.4"),
    ],
)
def test_validate_rows_accepts_coherent_rows(row: VersionRow) -> None:
    assert pn.validate_rows([row]) == [row]


def test_validate_rows_reports_every_problem_and_duplicates() -> None:
    rows = [
        VersionRow("3.10", "1.0", "1.21"),
        VersionRow("3.10", "1.0", "1.21"),
        VersionRow("3.11", "1.2", "2.0"),
    ]
    with pytest.raises(RowError) as info:
        pn.validate_rows(rows)
    message = str(info.value)
    assert "'py3.10-skl1.0-np1.21' appears 2 times" in message
    assert "row py3.11-skl1.2-np2.0:" in message
    with pytest.raises(RowError, match="is not a VersionRow"):
        pn.validate_rows([("3.10", "1.0", "1.21")])  # type: ignore[list-item]


# --- install arguments ----------------------------------------------------------------------


def test_row_install_args_pins_row_base_and_extras() -> None:
    plan = pn.row_install_args(VersionRow("3.10", "1.0", "1.21", pins=["scipy<1.12"]))
    assert plan.requirements[:3] == ["scikit-learn==1.0.*", "numpy==1.21.*", "scipy<1.12"]
    for requirement in ("pytest>=7.4", "joblib>=1.1", "skops>=0.9", "onnxruntime>=1.16"):
        assert requirement in plan.requirements
    assert plan.dropped == {}
    assert plan.unavailable_backends == []
    assert len(plan.requirements) == len(set(plan.requirements))

    only = pn.row_install_args(VersionRow("3.12", "1.5", "2.0"), ["cloudpickle"])
    assert "cloudpickle>=2.0" in only.requirements
    assert not any(r.startswith(("skops", "skl2onnx", "pandas")) for r in only.requirements)


def test_row_install_args_drops_extras_a_row_cannot_install(monkeypatch) -> None:
    row = VersionRow("3.10", "1.0", "1.21", without=["onnx"])
    plan = pn.row_install_args(row, ["onnx", "skops"])
    assert "left out by row py3.10-skl1.0-np1.21" in plan.dropped["onnx"]
    assert not any(r.startswith(("skl2onnx", "onnxruntime")) for r in plan.requirements)
    assert "skops>=0.9" in plan.requirements
    assert plan.unavailable_backends == ["onnx"]

    reason = "skops needs scikit-learn >= 1.1"
    limit = version_rows._ExtraLimit("skops", reason, sklearn_below=(1, 1))
    monkeypatch.setattr(version_rows, "_EXTRA_LIMITS", (limit,))
    old = pn.row_install_args(VersionRow("3.10", "1.0", "1.21"), ["skops", "cloudpickle"])
    assert old.dropped == {"skops": "skops needs scikit-learn >= 1.1"}
    assert "skops>=0.9" not in old.requirements
    new = pn.row_install_args(VersionRow("3.10", "1.1", "1.23"), ["skops"])
    assert new.dropped == {}
    assert "skops>=0.9" in new.requirements


def test_row_pins_on_a_left_out_extra_are_left_out_too() -> None:
    row = VersionRow("3.10", "1.0", "1.21", pins=["scipy<1.12", "onnx<1.18", "skops<0.11"])
    full = pn.row_install_args(row)
    assert {"scipy<1.12", "onnx<1.18", "skops<0.11"} <= set(full.requirements)
    plan = pn.row_install_args(row, ["skops"])
    assert "onnx<1.18" not in plan.requirements  # would install onnx without its extra
    assert "skops<0.11" in plan.requirements
    assert "scipy<1.12" in plan.requirements
    dropped = pn.row_install_args(VersionRow(*row.nox_params, pins=row.pins, without=["onnx"]))
    assert "onnx<1.18" not in dropped.requirements
    assert "skops<0.11" in dropped.requirements


def test_row_install_args_refuses_impossible_rows_and_unknown_extras() -> None:
    with pytest.raises(RowError, match="fails at import"):
        pn.row_install_args(VersionRow("3.11", "1.2", "2.0"))
    with pytest.raises(ValueError, match=r"unknown extra.*'tensorflow'.*known: cloudpickle"):
        pn.row_install_args(VersionRow("3.11", "1.2", "1.24"), ["tensorflow"])


# --- the chain ------------------------------------------------------------------------------


def _ids(pairs: list[CompatPair]) -> set[tuple[str, str]]:
    return {(p.saved.id, p.loaded.id) for p in pairs}


def test_forward_chain_older_into_newer_and_newest_into_every_older() -> None:
    a, b, c, d = (
        VersionRow("3.10", "1.0", "1.21"),
        VersionRow("3.11", "1.3", "1.26"),
        VersionRow("3.12", "1.5", "2.0"),
        VersionRow("3.13", "1.9", "2.5"),
    )
    shuffled = [c, a, d, b]
    pairs = pn.compat_chain(shuffled)
    assert _ids(pairs) == {
        (a.id, b.id),
        (a.id, c.id),
        (a.id, d.id),
        (b.id, c.id),
        (b.id, d.id),
        (c.id, d.id),
        (d.id, a.id),
        (d.id, b.id),
        (d.id, c.id),
    }
    assert len(pairs) == 9
    assert pairs[0] == CompatPair(a, b)
    assert pairs[0].id == f"{a.id}->{b.id}"
    assert pn.loads_into(a, pairs) == [d]
    assert pn.loads_into(b, pairs) == [a, d]
    assert pn.loads_into(d, pairs) == [a, b, c]
    assert pn.compat_chain(shuffled) == pn.compat_chain([a, b, c, d])


def test_forward_chain_goes_both_ways_within_a_scikit_learn_series() -> None:
    old = VersionRow("3.10", "1.0", "1.21")
    np1 = VersionRow("3.12", "1.9", "1.26")
    np2 = VersionRow("3.13", "1.9", "2.5")
    pairs = _ids(pn.compat_chain([np2, old, np1]))
    assert (np2.id, np1.id) in pairs  # numpy 2 -> 1 with the same scikit-learn
    assert (np1.id, np2.id) in pairs
    assert (np2.id, old.id) in pairs
    assert (np1.id, old.id) not in pairs
    assert len(pairs) == 5


def test_all_chain_and_edge_cases() -> None:
    rows = pn.default_rows()
    pairs = pn.compat_chain(rows, mode="all")
    assert len(pairs) == len(rows) * (len(rows) - 1)
    assert all(p.saved.id != p.loaded.id for p in pairs)
    assert len(_ids(pairs)) == len(pairs)
    assert pn.compat_chain(rows[:1]) == []
    assert pn.compat_chain([]) == []
    with pytest.raises(ValueError, match="unknown chain mode 'sideways'"):
        pn.compat_chain(rows, mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(RowError, match="duplicate row ids"):
        pn.compat_chain([rows[0], VersionRow(rows[0].python, rows[0].sklearn, rows[0].numpy)])


def test_row_for_finds_the_parametrized_row() -> None:
    rows = pn.default_rows()
    assert pn.row_for(rows, "3.11", "1.3", "1.26").id == "py3.11-skl1.3-np1.26"
    with pytest.raises(LookupError, match=r"sklearn=1\.1"):
        pn.row_for(rows, "3.12", "1.1", "1.23")


# --- merge ----------------------------------------------------------------------------------


def test_merge_tags_every_record_with_saved_and_loaded_rows(reports: list[Path]) -> None:
    atlas = pn.merge_reports(reports, ROWS)
    assert atlas["format"] == "pytest-persist-atlas"
    assert atlas["sources"] == [str(p) for p in reports]
    assert len(atlas["records"]) == 10
    assert list(atlas["environments"]) == [r.id for r in ROWS]
    assert atlas["environments"]["py3.10-skl1.0-np1.21"]["scikit-learn"] == "1.0.2"
    assert atlas["pairs"] == [
        "py3.10-skl1.0-np1.21 -> py3.11-skl1.3-np1.26",
        "py3.11-skl1.3-np1.26 -> py3.13-skl1.9-np2.5",
        "py3.13-skl1.9-np2.5 -> py3.13-skl1.9-np2.5",
    ]
    by_kind = {(r["kind"], r["mode"]): r for r in atlas["records"]}
    load_error = by_kind[("load_error", "check")]
    assert load_error["saved_row"] == "py3.10-skl1.0-np1.21"
    assert load_error["loaded_row"] == "py3.11-skl1.3-np1.26"
    assert load_error["source"] == "a.json"
    roundtrip = by_kind[("dump_error", "roundtrip")]
    assert roundtrip["saved_row"] == roundtrip["loaded_row"] == "py3.13-skl1.9-np2.5"
    assert set(atlas["backends"]) == {"pickle", "joblib", "onnx", "cloudpickle"}
    assert "HistGradientBoostingClassifier" in atlas["estimators"]


def test_merge_without_rows_names_rows_by_versions(reports: list[Path], tmp_path: Path) -> None:
    atlas = pn.merge_reports([tmp_path], ())  # a folder: every *.json in it
    assert len(atlas["sources"]) == 3
    assert list(atlas["environments"]) == [
        "py3.10-skl1.0.2-np1.21.6",
        "py3.11-skl1.3.2-np1.26.4",
        "py3.13-skl1.9.1-np2.5.5",
    ]
    assert atlas["pairs"][0] == "py3.10-skl1.0.2-np1.21.6 -> py3.11-skl1.3.2-np1.26.4"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not a readable JSON report"),
        (json.dumps({"format": "junit", "records": []}), "not a pytest-persist report"),
        (
            json.dumps({"format": "pytest-persist-report", "format_version": 99, "records": []}),
            "format_version 99 is not supported",
        ),
        (
            json.dumps({"format": "pytest-persist-report", "format_version": 2, "records": []}),
            "'environments' is missing",
        ),
        (
            json.dumps({"format": "pytest-persist-report", "format_version": 1}),
            "'records' is missing",
        ),
        (
            json.dumps(
                {
                    "format": "pytest-persist-report",
                    "format_version": 1,
                    "records": [{"kind": "exploded"}],
                }
            ),
            "record 0 has no known kind",
        ),
    ],
)
def test_merge_refuses_bad_reports_naming_the_file(
    tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "broken-report.json"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=expected) as info:
        pn.merge_reports([bad])
    assert str(bad) in str(info.value)


def test_merge_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such report file"):
        pn.merge_reports([tmp_path / "absent.json"])


# --- renderers ------------------------------------------------------------------------------


def test_describe_record_names_versions_error_and_differences(reports: list[Path]) -> None:
    atlas = pn.merge_reports(reports, ROWS)
    mismatch = next(r for r in atlas["records"] if r["kind"] == "mismatch")
    text = pn.describe_record(mismatch, atlas)
    assert text.startswith("GradientBoostingClassifier via pickle: mismatch")
    assert "saved under py3.11-skl1.3-np1.26 (python 3.11.7, scikit-learn 1.3.2" in text
    assert "loaded under py3.13-skl1.9-np2.5 (python 3.13.0, scikit-learn 1.9.1" in text
    assert "predict: labels differ; 3 of 150 differ" in text
    assert "max abs diff 0.25" in text
    method_error = next(r for r in atlas["records"] if r["kind"] == "method_error")
    text = pn.describe_record(method_error, atlas)
    assert "no attribute 'monotonic_cst'" in text
    assert "from DecisionTreeClassifier (1.0.2 -> 1.3.2) x3" in text


def _chain_reports(folder: Path) -> list[Path]:
    """Reports of a three-row chain: each row's round trips and every pair's checks.

    Ridge passes everywhere; Forest loads under MID but fails to load under NEW (upgrade break
    at NEW, last passed MID); Boost mismatches under MID already; downgrades from NEW: Ridge
    passes, Forest method_errors under MID, Boost loads into MID and fails under OLD.
    """
    rows = {"old": OLD, "mid": MID, "new": NEW}
    own = [
        ("Ridge", "joblib", "passed"),
        ("Forest", "joblib", "passed"),
        ("Boost", "joblib", "passed"),
        ("Boost", "onnx", "unsupported"),
    ]
    outcomes = {
        ("old", "mid"): {"Ridge": "passed", "Forest": "passed", "Boost": "mismatch"},
        ("old", "new"): {"Ridge": "passed", "Forest": "load_error", "Boost": "mismatch"},
        ("mid", "new"): {"Ridge": "passed", "Forest": "passed", "Boost": "passed"},
        ("new", "mid"): {"Ridge": "passed", "Forest": "method_error", "Boost": "passed"},
        ("new", "old"): {"Ridge": "passed", "Forest": "method_error", "Boost": "load_error"},
    }
    paths = []
    for name, env in rows.items():
        records = [
            record(k, e, b, error="no converter" if k == "unsupported" else "") for e, b, k in own
        ]
        paths.append(write_report(folder / f"{name}__{name}.json", env, records))
    for (saved, loaded), kinds in outcomes.items():
        records = [
            check(
                kind,
                estimator,
                "joblib",
                rows[saved],
                rows[loaded],
                error="" if kind in ("passed", "mismatch") else f"{kind} of {estimator}",
                differences=[
                    {
                        "method": "predict",
                        "message": "labels differ",
                        "n_different": 3,
                        "n_total": 60,
                        "tolerated": False,
                    }
                ]
                if kind == "mismatch"
                else [],
            )
            for estimator, kind in kinds.items()
        ]
        paths.append(write_report(folder / f"{saved}__{loaded}.json", rows[loaded], records))
    return paths


@pytest.fixture
def published(tmp_path: Path) -> dict[str, Any]:
    merged = pn.merge_reports(_chain_reports(tmp_path), ROWS)
    return pn.aggregate(merged, generated="2026-12-01 12:00 UTC", run_seconds=600.0)


def test_aggregate_gives_one_cell_per_estimator_backend_pair(reports: list[Path]) -> None:
    merged = pn.merge_reports(reports, ROWS)
    atlas = pn.aggregate(merged, generated="today", run_seconds=12.0)
    assert atlas["format"] == "pytest-persist-atlas" and atlas["format_version"] == 2
    assert atlas["generated"] == "today" and atlas["run_seconds"] == 12.0
    assert atlas["n_records"] == len(merged["records"]) == 10
    keys = {(c[0], c[1], c[2]) for c in atlas["cells"]}
    assert len(keys) == len(atlas["cells"])  # one cell per (pair, estimator, backend)
    expected = {(r["pair"], r["estimator"], r["backend"]) for r in merged["records"]}
    assert len(atlas["cells"]) == len(expected)
    assert atlas["sources"] == ["a.json", "b.json", "c.json"]
    assert atlas["environments"]["py3.10-skl1.0-np1.21"]["numpy"] == "1.21.6"
    load = next(c for c in atlas["cells"] if c[3] == "l")
    assert "Can't get attribute 'Loss'" in atlas["messages"][load[4]]
    assert next(c for c in atlas["cells"] if c[3] == "p" and c[4] == -1)


def test_aggregate_deduplicates_messages(tmp_path: Path) -> None:
    error = "ModuleNotFoundError: No module named 'sklearn.ensemble._gb_losses'"
    records = [check("load_error", f"E{i}", "joblib", OLD, NEW, error=error) for i in range(30)]
    atlas = pn.aggregate(pn.merge_reports([write_report(tmp_path / "r.json", NEW, records)]))
    assert len(atlas["cells"]) == 30
    assert atlas["messages"] == [error]


def test_break_points_upgrades_and_downgrades(published: dict[str, Any]) -> None:
    points = published["break_points"]
    ups = {(p["estimator"], p["saved"]): p for p in points["upgrades"]}
    old, mid, new = (r.id for r in ROWS)
    assert ups[("Forest", old)]["breaks_at"] == new
    assert ups[("Forest", old)]["last_passed"] == mid
    assert ups[("Forest", old)]["how"] == "load_error"
    assert ups[("Forest", old)]["message"] == "load_error of Forest"
    assert ups[("Boost", old)]["breaks_at"] == mid
    assert ups[("Boost", old)]["how"] == "mismatch"
    assert "predict: labels differ; 3 of 60 differ" in ups[("Boost", old)]["message"]
    assert ("Ridge", old) not in ups and ("Forest", mid) not in ups
    # saved under old and mid, 3 estimators with a passing own round trip in each
    assert points["checked"]["upgrades"] == 6
    downs = {p["estimator"]: p for p in points["downgrades"]}
    assert downs["Forest"]["breaks_at"] == mid and downs["Forest"]["how"] == "method_error"
    assert downs["Boost"]["breaks_at"] == old and downs["Boost"]["last_passed"] == mid
    assert "Ridge" not in downs
    assert points["checked"]["downgrades"] == 3


def test_markdown_atlas_starts_with_break_points(published: dict[str, Any]) -> None:
    md = pn.render_atlas_markdown(published)
    assert md.startswith("# pytest-persist compatibility atlas\n")
    assert "Generated 2026-12-01 12:00 UTC, built in 10.0 minutes" in md
    first_section = md.split("\n## ")[1]
    assert first_section.startswith("Break points: upgrades")
    old, mid, new = (r.id for r in ROWS)
    assert f"| joblib | {old} | {mid} | {new} | 💥 load_error | 1: Forest |" in md
    assert f"| joblib | {old} | {old} | {mid} | ❌ mismatch | 1: Boost |" in md
    downgrades = md.split("## Break points: downgrades")[1].split("## Environments")[0]
    assert f"| joblib | {new} | {mid} | {old} | 💥 load_error | 1: Boost |" in downgrades
    assert "| py3.10-skl1.0-np1.21 | 3.10.13 | 1.0.2 | 1.21.6 | 1.11.4 |" in md
    assert "## Failure messages" in md and "load_error of Forest" in md


def test_break_point_rows_name_twenty_estimators_then_fold_the_rest(tmp_path: Path) -> None:
    names = [f"Model{i:02d}" for i in range(25)]
    saved = write_report(tmp_path / "a.json", OLD, [record("passed", n, "joblib") for n in names])
    error = "ModuleNotFoundError: No module named 'numpy._core'"
    checks = [check("load_error", n, "joblib", OLD, NEW, error=error) for n in names]
    loaded = write_report(tmp_path / "b.json", NEW, checks)
    atlas = pn.aggregate(pn.merge_reports([saved, loaded]))
    assert len(atlas["break_points"]["upgrades"]) == 25
    md = pn.render_atlas_markdown(atlas)
    row = next(line for line in md.splitlines() if "load_error | 25: " in line)
    assert "Model19 and 5 more (atlas.html)" in row and "Model20" not in row
    page = pn.render_atlas_html(atlas)
    assert "Model19<details><summary>5 more</summary>Model20, Model21" in page


def test_markdown_escapes_table_cells(tmp_path: Path) -> None:
    path = write_report(
        tmp_path / "r.json", dict(NEW, python="3.13|0"), [record("passed", "A|B", "pickle")]
    )
    md = pn.render_atlas_markdown(pn.aggregate(pn.merge_reports([path])))
    assert "3.13\\|0" in md


def test_markdown_without_failures_says_so(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.json", NEW, [record("passed", "Ridge", "pickle")])
    md = pn.render_atlas_markdown(pn.aggregate(pn.merge_reports([path])))
    assert "No mismatch, load error, method error or dump error." in md


def test_html_atlas_is_self_contained(published: dict[str, Any]) -> None:
    page = pn.render_atlas_html(published)
    assert page.startswith("<!DOCTYPE html>")
    for forbidden in ("http://", "https://", "<link", "@import", "url(", "src="):
        assert forbidden not in page
    tags: list[tuple[str, dict[str, str | None]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, dict(attrs)))

    Tags().feed(page)
    ids = {attrs.get("id") for _tag, attrs in tags}
    assert {"break-table-upgrades", "break-table-downgrades", "grid", "f-backend"} <= ids
    assert {"f-est", "f-saved", "f-loaded"} <= ids
    start = page.index('<script type="application/json" id="atlas-data">')
    data = json.loads(page[page.index(">", start) + 1 : page.index("</script>", start)])
    assert data["cells"] == published["cells"]
    assert data["messages"] == published["messages"]
    assert "load_error of Forest" in page.split('id="grid-section"')[0]  # the static table


def test_html_data_cannot_end_its_script_block(tmp_path: Path) -> None:
    error = "ValueError: </script><script>alert(1)</script>"
    path = write_report(
        tmp_path / "r.json", NEW, [record("load_error", "X", "joblib", error=error)]
    )
    page = pn.render_atlas_html(pn.aggregate(pn.merge_reports([path])))
    assert "</script><script>alert" not in page
    assert page.count("</script>") == 2


def test_write_atlas_writes_json_markdown_and_html(tmp_path: Path) -> None:
    reports = _chain_reports(tmp_path)
    written = pn.write_atlas(reports, tmp_path / "atlas", ROWS, run_seconds=5.0, generated="now")
    assert sorted(p.name for p in written.values()) == ["atlas.html", "atlas.json", "atlas.md"]
    merged = json.loads(written["json"].read_text(encoding="utf-8"))
    assert merged == pn.aggregate(pn.merge_reports(reports, ROWS), generated="now", run_seconds=5.0)
    assert not list((tmp_path / "atlas").glob("*.tmp"))


def test_v2_reports_merge_like_v1(tmp_path: Path) -> None:
    v1 = write_report(tmp_path / "v1.json", NEW, [check("load_error", "X", "joblib", OLD, NEW)])
    v2 = tmp_path / "v2" / "r.json"
    v2.parent.mkdir()
    records = [
        {
            **record("load_error", "X", "joblib", mode="check"),
            "saved_environment": "a",
            "loaded_environment": "b",
        }
    ]
    report = {
        "format": "pytest-persist-report",
        "format_version": 2,
        "environments": {"a": OLD, "b": NEW},
        "records": records,
    }
    v2.write_text(json.dumps(report), encoding="utf-8")
    first, second = pn.merge_reports([v1], ROWS), pn.merge_reports([v2], ROWS)
    assert first["environments"] == second["environments"]
    assert first["pairs"] == second["pairs"] == ["py3.10-skl1.0-np1.21 -> py3.13-skl1.9-np2.5"]
    report["records"][0]["saved_environment"] = "zz"
    v2.write_text(json.dumps(report), encoding="utf-8")
    with pytest.raises(ReportError, match="saved_environment refers to environment 'zz'") as info:
        pn.merge_reports([v2])
    assert str(v2) in str(info.value)


def test_readme_findings_are_generated_from_the_atlas(tmp_path: Path) -> None:
    written = pn.write_atlas(_chain_reports(tmp_path), tmp_path / "atlas", ROWS, generated="x")
    readme = tmp_path / "README.md"
    start, end = pn_publish.FINDINGS_START, pn_publish.FINDINGS_END
    readme.write_text(f"# T\n\n## What the atlas found\n\n{start}\nold\n{end}\n\nrest\n")
    assert pn.update_readme(written["json"], readme)
    text = readme.read_text(encoding="utf-8")
    assert "old" not in text and text.endswith(f"{end}\n\nrest\n")
    region = text.split(start)[1].split(end)[0]
    assert "From the atlas generated x" in region
    assert (
        "joblib, saved under py3.10-skl1.0-np1.21: load_error under py3.13-skl1.9-np2.5" in region
    )
    assert not pn.update_readme(written["json"], readme)  # unchanged the second time
    readme.write_text("no region\n")
    with pytest.raises(ValueError, match="no findings region"):
        pn.update_readme(written["json"], readme)


def test_progress_counts_reports_of_this_run(tmp_path: Path) -> None:
    chain = pn.compat_chain(ROWS)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "stale.json").write_text("{}")
    pn.start_run(tmp_path)
    assert not (tmp_path / "reports" / "stale.json").exists()
    assert pn.progress(tmp_path, chain).startswith(f"rows saved 0/3, pairs checked 0/{len(chain)}")
    old = ROWS[0].id
    (tmp_path / "reports" / f"{old}__{old}.json").write_text("{}")
    pair = chain[0]
    (tmp_path / "reports" / f"{pair.saved.id}__{pair.loaded.id}.json").write_text("{}")
    text = pn.progress(tmp_path, chain)
    assert text.startswith(f"rows saved 1/3, pairs checked 1/{len(chain)}, ")
    assert "min so far, about" in text and "min left" in text


def test_progress_estimates_saves_and_checks_separately(tmp_path: Path) -> None:
    import os
    import time

    chain = pn.compat_chain(ROWS)
    pn.start_run(tmp_path)
    started = time.time() - 100
    (tmp_path / "run-started").write_text(f"{started}\n")
    for row in ROWS:  # three saves done 60 s after the start: 20 s each
        path = tmp_path / "reports" / f"{row.id}__{row.id}.json"
        path.write_text("{}")
        os.utime(path, (started + 60, started + 60))
    pair = chain[0]  # one check in the 40 s since
    (tmp_path / "reports" / f"{pair.saved.id}__{pair.loaded.id}.json").write_text("{}")
    text = pn.progress(tmp_path, chain)
    assert text.startswith(f"rows saved 3/3, pairs checked 1/{len(chain)}, 1.7 min so far")
    assert text.endswith(f"about {40 * (len(chain) - 1) / 60:.0f} min left")


# --- nox-free import and the session helpers ------------------------------------------------


def test_module_imports_without_nox() -> None:
    code = (
        "import sys; sys.modules['nox'] = None\n"
        "import pytest_persist.nox as pn\n"
        "pn.validate_rows(pn.default_rows())\n"
        "try:\n    pn.parametrize_rows(pn.default_rows())\n"
        "except ImportError:\n    print('lazy')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lazy"


def test_add_pyenv_to_path_picks_newest_patch(tmp_path: Path, monkeypatch) -> None:
    for version in ("3.11.2", "3.11.7", "3.12.1"):
        folder = tmp_path / "versions" / version / "bin"
        folder.mkdir(parents=True)
        (folder / f"python{version[:4]}").write_text("")
    monkeypatch.setenv("PATH", "/usr/bin")
    missing = pn.add_pyenv_to_path(["3.11", "3.12", "3.13"], root=tmp_path)
    assert missing == ["3.13"]
    path = os.environ["PATH"].split(os.pathsep)
    assert str(tmp_path / "versions" / "3.11.7" / "bin") in path
    assert str(tmp_path / "versions" / "3.11.2" / "bin") not in path
    assert path[-1] == "/usr/bin"


class FakeSession:
    """Records what a noxfile asks of its session (and the folder each command runs in)."""

    def __init__(self, python: str, tmp: Path | None = None) -> None:
        self.python = python
        self.tmp = tmp
        self.cwd = Path.cwd()
        self.calls: list[tuple[str, tuple, dict]] = []

    def install(self, *args: str, **kwargs: Any) -> None:
        self.calls.append(("install", args, kwargs))

    def run(self, *args: str, **kwargs: Any) -> None:
        self.calls.append(("run", args, {**kwargs, "cwd": self.cwd}))

    def warn(self, message: str) -> None:
        self.calls.append(("warn", (message,), {}))

    def error(self, message: str) -> None:
        raise RuntimeError(message)

    def create_tmp(self) -> str:
        assert self.tmp is not None
        self.tmp.mkdir(parents=True, exist_ok=True)
        return str(self.tmp)

    @contextlib.contextmanager
    def chdir(self, path: str | os.PathLike[str]) -> Iterator[None]:
        before, self.cwd = self.cwd, Path(path)
        try:
            yield
        finally:
            self.cwd = before


def test_install_row_installs_wheels_only_then_the_project() -> None:
    session = FakeSession("3.10")
    row = VersionRow("3.10", "1.0", "1.21", without=["onnx"])
    plan = pn.install_row(session, row)
    kinds = [c[0] for c in session.calls]
    assert kinds == ["warn", "install", "install", "run"]
    assert "extra 'onnx' left out" in session.calls[0][1][0]
    wheels = session.calls[1][1]
    assert wheels[:2] == ("--only-binary", ":all:")
    assert list(wheels[2:]) == plan.requirements
    assert session.calls[2][1] == ("--no-deps", ".")
    # uv writes no .pyc at install unless asked: every row interpreter would compile sklearn
    assert session.calls[1][2]["env"] == session.calls[2][2]["env"] == {"UV_COMPILE_BYTECODE": "1"}
    with pytest.raises(RuntimeError, match=r"needs 3\.10"):
        pn.install_row(FakeSession("3.12"), row)


def test_install_row_resolves_extra_packages_with_the_row() -> None:
    session = FakeSession("3.12")
    row = VersionRow("3.12", "1.6", "2.2")
    pn.install_row(session, row, ["skops"], project="my-project", packages=["pytest-persist"])
    assert session.calls[0][1][-1] == "pytest-persist"
    assert session.calls[1][1] == ("--no-deps", "my-project")


def test_save_artifacts_replaces_the_row_store(tmp_path: Path) -> None:
    oldest = pn.default_rows()[0]
    stale = tmp_path / "store" / oldest.id / "deleted-test-entry"
    stale.mkdir(parents=True)
    session = FakeSession(oldest.python)
    store = pn.save_artifacts(session, oldest, tmp_path / "store", "-q", report_path="r.json")
    assert store == (tmp_path / "store" / oldest.id).resolve()
    assert not store.exists()  # emptied; the pytest run would fill it
    _name, args, kwargs = session.calls[-1]
    assert args[:4] == ("python", "-m", "pytest", "examples/compat")
    assert args[4:] == (
        "-p",
        "no:cacheprovider",
        "--persist-save",
        str(store),
        "--persist-report",
        str(Path("r.json").resolve()),
        "-q",
    )
    assert kwargs["success_codes"] == [0, 1]


def test_check_artifacts_runs_from_an_empty_folder_per_saved_row(tmp_path: Path) -> None:
    rows = pn.default_rows()
    newest, oldest = rows[-1], rows[0]
    (tmp_path / "store" / oldest.id).mkdir(parents=True)
    saved = pn.loads_into(newest, pn.compat_chain(rows))
    assert saved[0] == oldest
    session = FakeSession(newest.python, tmp=tmp_path / "session-tmp")
    written = pn.check_artifacts(
        session, newest, tmp_path / "store", tmp_path / "reports", "-x", saved=saved, workers=2
    )
    assert written == [tmp_path / "reports" / f"{oldest.id}__{newest.id}.json"]
    runs = [c for c in session.calls if c[0] == "run"]
    assert len(runs) == 1
    args, kwargs = runs[0][1], runs[0][2]
    empty = kwargs["cwd"]
    assert args == (
        "python",
        "-m",
        "pytest",
        "-c",
        str(empty / "pytest.ini"),
        "--rootdir",
        str(empty),
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        f"--persist-load={tmp_path / 'store' / oldest.id}",
        "--persist-report",
        str(written[0]),
        "-x",
    )
    assert kwargs["success_codes"] == [0, 1]
    assert empty.parent == tmp_path / "session-tmp"
    assert [p.name for p in empty.iterdir()] == ["pytest.ini"]  # nothing else to collect
    assert session.cwd == Path.cwd()
    warned = [c[1][0] for c in session.calls if c[0] == "warn"]
    assert len(warned) == len(saved) - 1
    assert all("no artifacts saved under" in w for w in warned)


def test_chain_reports_lists_the_chain_reports_present_and_missing(tmp_path: Path) -> None:
    chain = pn.compat_chain(ROWS)
    old, mid, new = (row.id for row in ROWS)
    for name in (f"{old}__{old}.json", f"{old}__{mid}.json", "py3.9-stale__x.json"):
        (tmp_path / name).write_text("{}")
    present, missing = pn.chain_reports(tmp_path, chain)
    assert present == [tmp_path / f"{old}__{old}.json", tmp_path / f"{old}__{mid}.json"]
    assert tmp_path / f"{new}__{old}.json" in missing
    assert len(present) + len(missing) == len(ROWS) + len(chain)


# --- scikit-learn 1.0's breaking dependencies ------------------------------------------------


def test_sklearn_1_0_rows_are_capped_below_scipy_1_11_and_numpy_1_24() -> None:
    plan = pn.row_install_args(VersionRow("3.10", "1.0", "1.21", pins=["scipy<1.12"]), [])
    assert "scipy<1.11" in plan.requirements and "numpy<1.24" in plan.requirements
    assert "scipy<1.11" in pn.default_rows()[0].pins
    assert not any("scipy<" in r for r in pn.row_install_args(ROWS[1], []).requirements)
    for row, expected in [
        (VersionRow("3.10", "1.0", "1.24"), "numpy >= 1.24: installs, then fails: it uses np"),
        (VersionRow("3.10", "1.0", "1.21", pins=["scipy>=1.11"]), "scipy >= 1.11"),
        (VersionRow("3.10", "1.0", "1.21", pins=["scipy==1.11.4"]), "sym_pos"),
    ]:
        assert any(expected in problem for problem in pn.row_problems(row)), row
    assert pn.row_problems(VersionRow("3.10", "1.0", "1.23", pins=["scipy>=1.8,<1.11"])) == []
    assert pn.row_problems(VersionRow("3.10", "1.1", "1.24", pins=["scipy>=1.11"])) == []


def test_estimators_saved_by_several_tests_are_named_after_their_test(tmp_path: Path) -> None:
    records = [
        dict(record("passed", "Pipeline", "joblib"), test_id="t.py::test_columns[joblib]"),
        dict(record("passed", "Pipeline", "cloudpickle"), test_id="t.py::test_lambda[cloudpickle]"),
        record("passed", "Ridge", "joblib"),
    ]
    atlas = pn.merge_reports([write_report(tmp_path / "r.json", NEW, records)])
    assert atlas["estimators"] == ["Pipeline (test_columns)", "Pipeline (test_lambda)", "Ridge"]
    assert {r["estimator_name"] for r in atlas["records"]} == {"Pipeline", "Ridge"}
