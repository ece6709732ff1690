"""No false pass, and no bare traceback, as users meet them (through pytester): a dump that
changes the original, an estimator whose parameters fix its input width, a pass that compared
only an identity, and bad input (a class, a generator y, no backend) as recorded usage errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.decomposition import SparseCoder

from pytest_persist import OutcomeKind, PersistUsageError, check_persistence, persistence_checks

CHANGES_ON_DUMP = """
import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin


class Linear(RegressorMixin, BaseEstimator):
    def __init__(self, noise=0.0):
        self.noise = noise

    def fit(self, X, y):
        self.coef_ = np.linalg.lstsq(X, y, rcond=None)[0]
        return self

    def predict(self, X):
        out = X @ self.coef_
        if self.noise:
            out = out + np.random.default_rng().normal(scale=self.noise, size=out.shape)
        return out


class HalvesWhileSaved(Linear):
    "Saves its halved self, and stays halved."

    def __getstate__(self):
        self.coef_ = self.coef_ / 2
        return super().__getstate__()


class SavesThenHalves(Linear):
    "Saves what it was, then halves the original: the loaded copy predicts as before."

    def __getstate__(self):
        state = super().__getstate__()
        state["coef_"] = self.coef_.copy()
        self.coef_ = self.coef_ / 2
        return state


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3))
    return X, X @ np.array([1.0, 2.0, 3.0])


@pytest.mark.persist_roundtrip(backends=["pickle", "joblib"])
def test_halves(persist_roundtrip, data):
    X, y = data
    persist_roundtrip(HalvesWhileSaved().fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_saves_then_halves(persist_roundtrip, data):
    X, y = data
    persist_roundtrip(SavesThenHalves().fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_noisy(persist_roundtrip, data):
    X, y = data
    persist_roundtrip(Linear(noise=1.0).fit(X, y), X)
"""


def test_a_dump_that_changes_the_original_fails_saying_so(run_suite, pytester):
    run = run_suite(CHANGES_ON_DUMP, "--persist-report=report.json")
    for test_id in ("test_halves[pickle]", "test_halves[joblib]", "test_saves_then_halves[pickle]"):
        assert run.status(test_id) == "FAILED", run.text
    failures = run.text.split("= FAILURES =")[1].split("warnings summary")[0]
    assert "HalvesWhileSaved via pickle: dump_error" in failures
    assert "dumping HalvesWhileSaved with pickle changed the original estimator: coef_" in failures
    assert "dumping SavesThenHalves with pickle changed the original estimator: coef_" in failures
    assert "nondeterministic" not in failures and "state only" not in failures
    # a method that really answers differently on two calls of an unchanged original is
    # still set aside, not failed
    assert run.status("test_noisy[pickle]") == "PASSED"
    report = json.loads((pytester.path / "report.json").read_text())
    kinds = {r["test_id"].split("::")[1]: r["kind"] for r in report["records"]}
    assert kinds == {
        "test_halves[pickle]": "dump_error",
        "test_halves[joblib]": "dump_error",
        "test_saves_then_halves[pickle]": "dump_error",
        "test_noisy[pickle]": "passed",
    }
    noisy = next(r for r in report["records"] if r["estimator"] == "Linear")
    assert noisy["not_compared"]["predict"].startswith("nondeterministic")
    halved = next(r for r in report["records"] if r["estimator"] == "HalvesWhileSaved")
    assert halved["details"]["original_changed"] == ["coef_ changed"]


@pytest.mark.parametrize("shape", [(4, 3), (2, 7)])
def test_sparse_coder_gets_data_as_wide_as_its_dictionary(shape):
    dictionary = np.random.RandomState(0).normal(size=shape)
    coder = SparseCoder(dictionary=dictionary)
    [(estimator, check)] = persistence_checks([coder], backends=["pickle"])
    outcome = check(estimator)
    assert outcome.kind is OutcomeKind.PASSED, outcome.message()
    assert "transform" in outcome.compared_methods
    assert not outcome.identity


RELEASE_SPARSE_CODER = """
import numpy as np
from sklearn.decomposition import SparseCoder
from pytest_persist import parametrize_with_persistence

DICTIONARY = np.random.RandomState(0).normal(size=(4, 3))


@parametrize_with_persistence([SparseCoder(dictionary=DICTIONARY)], backends=["pickle", "skops"])
def test_coder(estimator, check):
    assert "transform" in check(estimator).compared_methods
"""


def test_sparse_coder_passes_as_a_release_check(run_suite):
    run = run_suite(RELEASE_SPARSE_CODER)
    assert set(run.statuses.values()) == {"PASSED"}, run.text
    assert len(run.statuses) == 2


BAD_INPUT = """
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from pytest_persist import parametrize_with_persistence

X, y = load_iris(return_X_y=True)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_class(persist_roundtrip):
    persist_roundtrip(LogisticRegression, X, y)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_generator_y(persist_roundtrip):
    model = LogisticRegression(max_iter=500).fit(X, y)
    persist_roundtrip(model, X, (label for label in y))


@pytest.mark.persist_roundtrip(backends=[])
def test_no_backend(persist_roundtrip):
    persist_roundtrip(LogisticRegression(max_iter=500).fit(X, y), X, y)


@parametrize_with_persistence([LogisticRegression], backends=["pickle"])
def test_release_class(estimator, check):
    check(estimator)


@parametrize_with_persistence([Ridge()], backends=[])
def test_release_no_backend(estimator, check):
    check(estimator)
"""


def test_a_class_a_generator_y_and_no_backend_are_recorded_usage_errors(run_suite, pytester):
    run = run_suite(BAD_INPUT, "--persist-report=report.json", "--persist-report-md=report.md")
    assert run.status("test_class[pickle]") == "FAILED"
    assert run.status("test_generator_y[pickle]") == "FAILED"
    assert run.status("test_no_backend[usage-error]") == "ERROR"
    assert run.status("test_release_class[LogisticRegression-class-pickle]") == "FAILED"
    assert run.status("test_release_no_backend[usage-error]") == "FAILED"
    text = run.text
    assert "Traceback" not in text and "Cannot clone" not in text, text
    assert (
        "usage error: LogisticRegression is a class, not an instance: pass LogisticRegression(...)"
    ) in text
    assert "y for LogisticRegression must be array-like" in text
    assert "not generator" in text
    assert "test_no_backend: backends=[] names no backend" in text
    assert "test_release_no_backend: backends=[] names no backend" in text
    # every item is a record, in the JSON, the markdown and the terminal summary
    report = json.loads((pytester.path / "report.json").read_text())
    recorded = sorted((r["test_id"].split("::")[1], r["kind"]) for r in report["records"])
    assert recorded == [
        ("test_class[pickle]", "usage_error"),
        ("test_generator_y[pickle]", "usage_error"),
        ("test_no_backend[usage-error]", "usage_error"),
        ("test_release_class[LogisticRegression-class-pickle]", "usage_error"),
        ("test_release_no_backend[usage-error]", "usage_error"),
    ]
    classes = [r for r in report["records"] if r["test_id"].endswith("test_class[pickle]")]
    assert [(r["estimator"], r["backend"]) for r in classes] == [("LogisticRegression", "pickle")]
    # counted as pytest counts them: the fixture's usage error fails setup (an error)
    counts = "4 failed (4 usage_error), 1 error (1 usage_error)"
    assert f"round trips: {counts}" in text
    assert "4 failed, 1 error" in text
    markdown = (pytester.path / "report.md").read_text()
    assert counts in markdown
    assert "LogisticRegression via pickle: usage_error" in markdown


IDENTITY = """
import numpy as np
import pytest
from sklearn.preprocessing import FunctionTransformer, StandardScaler

X = np.random.RandomState(0).normal(size=(30, 4))


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_identity(persist_roundtrip):
    persist_roundtrip(FunctionTransformer().fit(X), X)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_scaler(persist_roundtrip):
    persist_roundtrip(StandardScaler().fit(X), X)
"""


def test_a_pass_that_compared_an_identity_says_so_and_fails_strict(run_suite, pytester):
    run = run_suite(IDENTITY, "--persist-report=report.json")
    assert run.status("test_identity[pickle]") == "PASSED"
    assert "PersistIdentityWarning: FunctionTransformer via pickle: passed (identity)" in run.text
    assert "round trips: 1 passed, 1 passed (identity)" in run.text, run.text
    report = json.loads((pytester.path / "report.json").read_text())
    details = {r["estimator"]: r["details"] for r in report["records"]}
    assert details["FunctionTransformer"]["identity"].startswith(
        "identity: every compared output (transform, inverse_transform) equals the input X"
    )
    assert "identity" not in details["StandardScaler"]
    strict = run_suite(IDENTITY, "--persist-strict")
    assert strict.status("test_identity[pickle]") == "FAILED"
    assert "--persist-strict: a pass whose outputs equal its input fails" in strict.text
    assert strict.status("test_scaler[pickle]") == "PASSED"


def test_the_pytest_free_api_refuses_the_same_input():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    with pytest.raises(PersistUsageError, match="LogisticRegression is a class, not an instance"):
        check_persistence(LogisticRegression, X, y, backends=["pickle"])
    model = LogisticRegression(max_iter=500).fit(X, y)
    with pytest.raises(PersistUsageError, match="not list_iterator"):
        check_persistence(model, X, iter(list(y)), backends=["pickle"])
    with pytest.raises(PersistUsageError, match="names no backend"):
        check_persistence(model, X, y, backends=[])
    with pytest.raises(PersistUsageError, match="leaves no backend"):
        check_persistence(model, X, y, backends=["pickle"], exclude=["pickle"])
    with pytest.raises(PersistUsageError, match="names no backend"):
        list(persistence_checks([model], backends=[]))
