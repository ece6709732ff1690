"""--persist-save, --persist-load, --persist-version-warning and the reports, as users meet
them: through pytester in a subprocess, with and without xdist."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from store_helpers import MISBEHAVING, skew_versions, store_model

from pytest_persist.store.entries import iter_entries

SUITE = """
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier


@pytest.fixture
def iris():
    return load_iris(return_X_y=True)


@pytest.mark.persist_roundtrip(backends=["pickle", "joblib"])
def test_tree(persist_roundtrip, persist_extra, iris):
    X, y = iris
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    persist_extra["score"] = tree.score(X, y)
    persist_roundtrip(tree, X, y)


def test_two_models_all_backends(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(LogisticRegression(max_iter=300).fit(X, y), X, y, backends=["pickle"])
    persist_roundtrip(DecisionTreeClassifier().fit(X, y), X, backends=["cloudpickle"])
"""


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def test_save_then_load_even_after_the_tests_are_gone(run_suite, pytester):
    run = run_suite(SUITE, "--persist-save", "store")
    assert run.result.ret == 0, run.text
    after = run.text.split("short test summary")[0].split("passed")[-1]
    store = pytester.path / "store"
    [saved] = [line for line in after.splitlines() if "pytest-persist" in line]
    assert re.fullmatch(
        rf"pytest-persist: saved 4 artifacts \([0-9.]+ MB\) to {re.escape(str(store))} "
        r"\(0 replaced\)",
        saved,
    ), after
    entries = iter_entries(pytester.path / "store")
    assert sorted((e.test_id, e.backend) for e in entries) == [
        ("test_suite.py::test_tree[joblib]", "joblib"),
        ("test_suite.py::test_tree[pickle]", "pickle"),
        ("test_suite.py::test_two_models_all_backends", "pickle"),
        ("test_suite.py::test_two_models_all_backends#2", "cloudpickle"),
    ]
    tree = next(e for e in entries if e.backend == "pickle" and "tree" in e.test_id)
    assert tree.extra == {"score": pytest.approx(0.9733, abs=1e-3)}
    assert "persist_extra" in tree.test_source and "def test_tree" in tree.test_source
    assert tree.params["max_depth"] == "3"
    assert tree.environment["scikit-learn"] == sklearn.__version__

    (pytester.path / "test_suite.py").unlink()  # a deleted test is still checked
    run = run_suite("", "--persist-load", "store", name="test_other.py")
    assert run.result.ret == 0, run.text
    assert run.statuses == {
        "test_suite.py::test_tree[joblib]": "PASSED",
        "test_suite.py::test_tree[pickle]": "PASSED",
        "test_suite.py::test_two_models_all_backends[pickle]": "PASSED",
        "test_suite.py::test_two_models_all_backends#2[cloudpickle]": "PASSED",
    }
    assert "stored artifacts checked: 4 passed" in run.text


def test_xdist_saves_and_loads(run_suite, pytester):
    run = run_suite(SUITE, "-n", "2", "--persist-save", "store")
    assert run.result.ret == 0, run.text
    entries = iter_entries(pytester.path / "store")
    assert len(entries) == 4
    for entry in entries:
        entry.verify()
    assert not [p for p in (pytester.path / "store").iterdir() if p.name.startswith(".")]

    run = run_suite(
        SUITE,
        "-n",
        "2",
        "--persist-load",
        "store",
        "-k",
        "persist_load",
        "--persist-report",
        "r.json",
    )
    assert run.result.ret == 0, run.text
    assert run.text.count("= pytest-persist =") == 1  # the controller only
    assert "stored artifacts checked: 4 passed" in run.text
    report = json.loads((pytester.path / "r.json").read_text())
    assert sorted(r["backend"] for r in report["records"]) == [
        "cloudpickle",
        "joblib",
        "pickle",
        "pickle",
    ]
    assert {r["mode"] for r in report["records"]} == {"check"}


def test_saving_twice_replaces(run_suite, pytester):
    for _ in range(2):
        run = run_suite(SUITE, "--persist-save", "store", "-k", "test_tree")
        assert run.result.ret == 0, run.text
    assert len(iter_entries(pytester.path / "store")) == 2


def test_failed_roundtrip_is_not_saved(run_suite, pytester):
    source = """
        import pytest
        from sklearn.datasets import load_iris
        from sklearn.preprocessing import FunctionTransformer

        @pytest.mark.persist_roundtrip(backends=["pickle", "cloudpickle"])
        def test_lambda(persist_roundtrip):
            X, _ = load_iris(return_X_y=True)
            persist_roundtrip(FunctionTransformer(lambda X: X + 1).fit(X), X)
    """
    run = run_suite(source, "--persist-save", "store")
    assert run.status("test_lambda[pickle]") == "FAILED"
    assert [e.backend for e in iter_entries(pytester.path / "store")] == ["cloudpickle"]
    assert "= pytest-persist =" in run.text  # a failure is something to say
    assert "dump_error" in run.text


@pytest.fixture
def skewed_store(pytester, iris):
    """A store whose forest claims it was saved with scikit-learn 1.0.2, plus a clean entry."""
    X, y = iris
    root = pytester.path / "store"
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    store_model(root, forest, X, y, test_id="old/test_m.py::test_forest", edit=skew_versions)
    store_model(root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_lr")
    return root


def test_version_warnings_are_recorded_beside_a_pass(run_suite, skewed_store, pytester):
    run = run_suite("", "--persist-load", "store", "--persist-report-md", "summary.md")
    assert run.result.ret == 0, run.text
    assert run.status("old/test_m.py::test_forest[pickle]") == "PASSED"
    assert "passed ⚠5" in run.text  # the forest, its 3 trees and its template tree
    assert f"DecisionTreeClassifier: 1.0.2 -> {sklearn.__version__} x4" in run.text
    markdown = (pytester.path / "summary.md").read_text()
    assert f"| DecisionTreeClassifier | 1.0.2 | {sklearn.__version__} | 4 |" in markdown


@pytest.mark.parametrize("how", ["option", "ini"])
def test_version_warning_error_mode(how, run_suite, skewed_store):
    args = ["--persist-version-warning=error"] if how == "option" else []
    ini = "[pytest]\npersist_version_warning = error\n" if how == "ini" else ""
    run = run_suite("", "--persist-load", "store", *args, ini=ini)
    assert run.result.ret == 1
    assert run.status("old/test_m.py::test_forest[pickle]") == "FAILED"
    assert run.status("t.py::test_lr[pickle]") == "PASSED"
    assert "VersionSkewError" in run.text
    assert (
        f"saved with scikit-learn 1.0.2 and is being loaded with scikit-learn {sklearn.__version__}"
        in run.text
    )


def test_bad_entries_fail_alone(run_suite, skewed_store, pytester):
    entries = {e.test_id: e for e in iter_entries(skewed_store)}
    forest = entries["old/test_m.py::test_forest"]
    with open(forest.artifact_path, "ab") as handle:
        handle.write(b"tampered")
    broken = skewed_store / "broken-entry"
    shutil.copytree(entries["t.py::test_lr"].path, broken)
    (broken / "entry.json").write_text('{"format": "pytest-persist-store-entry", "format_')
    run = run_suite("", "--persist-load", "store")
    assert run.result.ret == 1
    assert run.status("old/test_m.py::test_forest[pickle]") == "FAILED"
    assert run.status("broken-entry") == "FAILED"
    assert run.status("t.py::test_lr[pickle]") == "PASSED"
    assert "sha256" in run.text and "Refusing to load it" in run.text
    assert str(broken / "entry.json") in run.text and "not valid JSON" in run.text


def test_crashing_and_hanging_artifacts(run_suite, pytester, monkeypatch, iris):
    modules = pytester.path / "modules"
    modules.mkdir()
    (modules / "misbehaving_model.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(modules))
    import misbehaving_model

    X, _ = iris
    root = pytester.path / "store"
    store_model(root, misbehaving_model.Misbehaving().fit(X), X, None, test_id="t.py::test_crash")
    monkeypatch.setenv("PYTHONPATH", str(modules))
    (modules / "misbehave_mode.txt").write_text("abort")  # the loader's env is a clean one
    run = run_suite("def test_after():\n    pass\n", "--persist-load", "store")
    assert run.status("t.py::test_crash[pickle]") == "FAILED"
    assert run.status("test_after") == "PASSED"  # the session survived
    assert "crashed with SIGABRT while loading" in run.text

    (modules / "misbehave_mode.txt").write_text("hang")
    run = run_suite("", "--persist-load", "store", "--persist-load-timeout", "5")
    assert run.status("t.py::test_crash[pickle]") == "FAILED"
    assert "timed out after 5 s" in run.text


def test_unavailable_backend_is_skipped(run_suite, pytester, iris):
    X, y = iris
    entry = store_model(pytester.path / "store", LogisticRegression(max_iter=300).fit(X, y), X, y)
    manifest = json.loads(entry.entry_file.read_text())
    manifest["backend"] = "a-backend-not-installed-here"
    entry.entry_file.write_text(json.dumps(manifest))
    run = run_suite("", "--persist-load", "store")
    assert run.result.ret == 0, run.text
    assert list(run.statuses.values()) == ["SKIPPED"]
    assert "not registered here" in run.text


def test_roundtrip_reports(run_suite, pytester):
    run = run_suite(
        SUITE, "--persist-report", "out/r.json", "--persist-report-md", "out/r.md", "-k", "tree"
    )
    assert run.result.ret == 0, run.text
    report = json.loads((pytester.path / "out" / "r.json").read_text())
    assert report["format"] == "pytest-persist-report" and report["format_version"] == 2
    assert report["environments"][report["environment"]]["scikit-learn"] == sklearn.__version__
    assert [(r["mode"], r["backend"], r["kind"]) for r in report["records"]] == [
        ("roundtrip", "pickle", "passed"),
        ("roundtrip", "joblib", "passed"),
    ]
    assert report["records"][0]["dump_seconds"] > 0
    assert (
        "| DecisionTreeClassifier (test_tree) | ✅ passed | ✅ passed |"
        in (pytester.path / "out" / "r.md").read_text()
    )
    assert "= pytest-persist =" not in run.text  # all passed: nothing to say


def test_usage_errors(pytester):
    result = pytester.runpytest_subprocess("--persist-load", "missing-dir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--persist-load*no such store directory*"])
    pytester.makeini("[pytest]\npersist_version_warning = loud\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*persist_version_warning*'loud'*record or error*"])


def test_this_environments_skops_allowlist_applies(run_suite, pytester, iris):
    import numpy as np
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = iris
    model = make_pipeline(FunctionTransformer(np.round), LogisticRegression(max_iter=300))
    store_model(pytester.path / "store", model.fit(X, y), X, y, backend="skops")
    run = run_suite("", "--persist-load", "store")
    assert run.result.ret == 0, run.text
    run = run_suite("", "--persist-load", "store", "--persist-trusted", "builtins.int")
    assert run.result.ret == 1
    assert "UntrustedTypesError" in run.text and "numpy.round" in run.text
