"""What a user sees is consistent: the plugin's counts add up to pytest's, a failure says each
fact once, and the bundled examples run without skips or warning noise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

ROOT = Path(__file__).parent.parent

SUITE = """
import pytest
from sklearn.cross_decomposition import CCA
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC


@pytest.mark.persist_roundtrip(backends=["pickle", "onnx"])
def test_cca(persist_roundtrip):
    X, _ = load_iris(return_X_y=True)
    persist_roundtrip(CCA(n_components=1).fit(X[:, :2], X[:, 2:]), X[:, :2])


@pytest.mark.persist_roundtrip(
    backends=["pickle", "joblib-mmap"],
    xfail={"joblib-mmap": "SVC.predict_proba fails on read-only memory-mapped arrays"},
)
def test_svc(persist_roundtrip):
    X, y = load_iris(return_X_y=True)
    persist_roundtrip(SVC(probability=True, random_state=0).fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_logistic(persist_roundtrip):
    X, y = load_iris(return_X_y=True)
    persist_roundtrip(LogisticRegression(max_iter=300).fit(X, y), X, y)
"""


def _pytest_counts(text: str) -> dict[str, int]:
    last = [line for line in text.splitlines() if re.search(r"\bin [\d.]+s", line)][-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|xfailed)", last)}


def test_the_summary_counts_are_pytests(run_suite):
    run = run_suite(SUITE, "-W", "ignore::FutureWarning")
    pytest_counts = _pytest_counts(run.text)
    [line] = [line for line in run.text.splitlines() if line.startswith("round trips:")]
    mine = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|xfailed)", line)}
    assert mine == pytest_counts, (line, pytest_counts)
    assert "1 xfailed (1 method_error)" in line and "1 skipped (1 unsupported)" in line


def test_a_cross_version_failure_says_each_version_once(pytester, tmp_path):
    """Saved "under numpy 1.26.4 and pandas 1.5.3", failing here: numpy appears once, on the
    versions line; the other change (pandas) on its own line."""
    import numpy as np

    from pytest_persist.backends import BackendCall, BackendRegistry
    from pytest_persist.environments.fingerprint import environment_fingerprint
    from pytest_persist.store.entries import save_entry

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    artifact = tmp_path / "forest.pkl"
    BackendRegistry()["pickle"].dump(forest, artifact, BackendCall(X=X))
    environment = dict(environment_fingerprint(), numpy="1.26.4", pandas="1.5.3")
    wrong = (forest.predict(X) + 1) % 3  # outputs the loaded model will not give: a mismatch
    save_entry(
        pytester.path / "store",
        test_id="t.py::test_forest",
        backend_name="pickle",
        estimator=forest,
        artifact_path=artifact,
        X=X,
        y=y,
        expected_outputs={"predict": wrong},
        not_compared={},
        environment=environment,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--persist-load=store")
    text = result.stdout.str()
    assert result.ret == 1, text
    # the failure, and (with CI set) the short summary repeating it whole
    versions = {line.strip() for line in text.splitlines() if line.strip().startswith("versions:")}
    others = {line.strip() for line in text.splitlines() if "other environment changes" in line}
    assert len(versions) == 1 and len(others) == 1, text
    assert f"numpy 1.26.4 -> {np.__version__}" in versions.pop()
    other = others.pop()
    assert "pandas 1.5.3 ->" in other and "numpy" not in other


def test_methods_failing_alike_are_named_together():
    from pytest_persist.results.outcome import by_reason

    said = by_reason({"predict": "ValueError: X", "predict_proba": "ValueError: X", "score": "Y"})
    assert said == "predict, predict_proba: ValueError: X; score: Y"


def test_the_examples_run_without_skips_or_future_warnings():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples", "-p", "no:cacheprovider", "-rs",
         "-W", "error::FutureWarning", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    counts = _pytest_counts(done.stdout)
    assert counts.get("skipped", 0) == 0 and counts["passed"] > 50, done.stdout[-2000:]
