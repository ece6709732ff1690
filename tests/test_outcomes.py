"""Every outcome of a round trip, as a user's test suite sees it, with real estimators."""

from __future__ import annotations

PICKLE_FAMILY = ["pickle", "joblib", "joblib-mmap", "joblib-compressed", "cloudpickle"]

USER_SUITE = """
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_multilabel_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler


@pytest.fixture
def iris():
    return load_iris(return_X_y=True)


class NearestCentroidLike(ClassifierMixin, BaseEstimator):
    \"\"\"A user's own estimator, defined in the test module.\"\"\"

    def __init__(self, shrink=0.0):
        self.shrink = shrink

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.centroids_ = np.array([X[y == c].mean(axis=0) for c in self.classes_])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        distances = ((X[:, None, :] - self.centroids_[None]) ** 2).sum(axis=2)
        return self.classes_[distances.argmin(axis=1)]


class BrokenSetstate(NearestCentroidLike):
    def __setstate__(self, state):
        raise RuntimeError("corrupt state: centroids lost in transit")


class ForgetsCentroidsOnPickle(NearestCentroidLike):
    \"\"\"Drops a fitted attribute that predict does not need on this X.\"\"\"

    def fit(self, X, y):
        super().fit(X, y)
        self.training_spread_ = X.std(axis=0)
        return self

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("training_spread_")
        return state


class PredictFailsAfterLoad(NearestCentroidLike):
    def __setstate__(self, state):
        state.pop("centroids_")
        super().__setstate__(state)


class DriftsOnLoad(RegressorMixin, BaseEstimator):
    \"\"\"Loads with coefficients off by ``drift``: a silent wrong prediction.\"\"\"

    def __init__(self, drift=1e-3):
        self.drift = drift

    def fit(self, X, y):
        self.coef_ = np.linalg.lstsq(X, y, rcond=None)[0]
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return X @ self.coef_

    def __setstate__(self, state):
        state = dict(state)
        state["coef_"] = state["coef_"] * (1 + state["drift"])
        super().__setstate__(state)


@pytest.mark.persist_roundtrip
def test_forest(persist_roundtrip, iris):
    X, y = iris
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    loaded = persist_roundtrip(forest, X, y)
    assert loaded.predict(X[:2]).shape == (2,)


@pytest.mark.persist_roundtrip
def test_column_transformer_pipeline_on_frame(persist_roundtrip):
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({
        "age": rng.uniform(20, 60, 80),
        "income": rng.lognormal(10, 1, 80),
        "city": rng.choice(["paris", "oslo", "lima"], 80),
    })
    y = (frame["age"] > 40).astype(int)
    pre = ColumnTransformer([
        ("num", StandardScaler(), ["age", "income"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
    ])
    model = make_pipeline(pre, LogisticRegression()).fit(frame, y)
    persist_roundtrip(model, frame, y)


@pytest.mark.persist_roundtrip
def test_pandas_output(persist_roundtrip, iris):
    X, _ = iris
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    scaler = StandardScaler().set_output(transform="pandas").fit(frame)
    persist_roundtrip(scaler, frame)


@pytest.mark.persist_roundtrip
def test_lambda(persist_roundtrip, iris):
    X, _ = iris
    persist_roundtrip(FunctionTransformer(lambda a: a * 2.0).fit(X), X)


@pytest.mark.persist_roundtrip
def test_own_estimator(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(NearestCentroidLike().fit(X, y), X, y)


@pytest.mark.persist_roundtrip
def test_multi_output(persist_roundtrip):
    X, Y = make_multilabel_classification(n_samples=60, n_classes=3, random_state=0)
    model = MultiOutputClassifier(LogisticRegression(max_iter=500)).fit(X, Y)
    persist_roundtrip(model, X, Y)


@pytest.mark.persist_roundtrip
def test_sparse_output(persist_roundtrip):
    docs = ["the cat sat", "the dog ran", "a cat and a dog", "nothing here"] * 5
    persist_roundtrip(CountVectorizer().fit(docs), docs)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_broken_setstate(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(BrokenSetstate().fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["joblib"])
def test_dropped_attribute(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(ForgetsCentroidsOnPickle().fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["joblib"], state="ignore")
def test_dropped_attribute_relaxed(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(ForgetsCentroidsOnPickle().fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["cloudpickle"])
def test_predict_fails_after_load(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(PredictFailsAfterLoad().fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["pickle"], state="ignore")
def test_drift(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(DriftsOnLoad().fit(X, y), X)


@pytest.mark.persist_roundtrip(backends=["pickle"], state="ignore", rtol=1e-2)
def test_drift_within_tolerance(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(DriftsOnLoad().fit(X, y), X)


@pytest.mark.persist_roundtrip(backends=["pickle"], state="ignore", rtol=1e-2, exact=True)
def test_drift_exact(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(DriftsOnLoad(drift=1e-15).fit(X, y), X)
"""


def test_every_outcome_through_the_marker(run_suite):
    run = run_suite(USER_SUITE, "--persist-backends", ",".join(PICKLE_FAMILY))
    for backend in PICKLE_FAMILY:
        for test in [
            "test_forest",
            "test_column_transformer_pipeline_on_frame",
            "test_pandas_output",
            "test_own_estimator",
            "test_multi_output",
            "test_sparse_output",
        ]:
            assert run.status(f"{test}[{backend}]") == "PASSED", run.text
        expected_lambda = "PASSED" if backend == "cloudpickle" else "FAILED"
        assert run.status(f"test_lambda[{backend}]") == expected_lambda, run.text

    text = run.text
    # dump_error: the lambda, named, with the backend that copes
    assert (
        "pickle cannot serialize the lambda in FunctionTransformer(func=<lambda>); "
        "the cloudpickle backend can" in text
    )
    assert "FunctionTransformer via joblib-mmap: dump_error" in text
    # load_error
    assert run.status("test_broken_setstate[pickle]") == "FAILED"
    assert "BrokenSetstate via pickle: load_error" in text
    assert "RuntimeError: corrupt state: centroids lost in transit" in text
    # state difference, found and named, and relaxable
    assert run.status("test_dropped_attribute[joblib]") == "FAILED"
    assert "ForgetsCentroidsOnPickle via joblib: mismatch" in text
    assert "training_spread_: missing after loading" in text
    assert run.status("test_dropped_attribute_relaxed[joblib]") == "PASSED"
    # method_error
    assert run.status("test_predict_fails_after_load[cloudpickle]") == "FAILED"
    assert "PredictFailsAfterLoad via cloudpickle: method_error" in text
    assert "predict raises after loading PredictFailsAfterLoad with cloudpickle" in text
    # mismatch with figures, tolerance and exact comparison
    assert run.status("test_drift[pickle]") == "FAILED"
    assert "DriftsOnLoad via pickle: mismatch" in text
    assert "predict: values differ beyond rtol=1e-07, atol=1e-09" in text
    assert "150 of 150 elements differ; max abs diff" in text
    assert run.status("test_drift_within_tolerance[pickle]") == "PASSED"
    assert run.status("test_drift_exact[pickle]") == "FAILED"
    assert "values differ beyond bitwise" in text
    # no multi-screen tracebacks from inside the plugin
    assert "pytest_persist/roundtrip.py" not in text
    assert "pytest_persist/runner.py" not in text


def test_nothing_is_written_outside_pytest_temporary_directories(run_suite, pytester):
    before = {p.name for p in pytester.path.iterdir()}
    run_suite(USER_SUITE, "-k", "forest or lambda", "--persist-backends", "pickle,onnx,skops")
    new_entries = {p.name for p in pytester.path.iterdir()} - before
    # pytester points HOME at this folder, and onnxruntime keeps a telemetry device id under
    # $HOME/.cache/Microsoft: the library's doing in the home folder, nothing of ours
    onnxruntime_home = pytester.path / ".cache" / "Microsoft"
    assert {p.name for p in pytester.path.glob(".cache/*")} <= {"Microsoft"}
    assert not list(onnxruntime_home.rglob("*.pkl"))
    new_entries.discard(".cache")
    # the test module, pytester's captured output, and pytest's own basetemp: nothing else
    assert {n for n in new_entries if not n.startswith("runpytest-")} <= {
        "test_suite.py",
        "stdout",
        "stderr",
    }
    artifacts = [p.name for p in pytester.path.rglob("*.pkl")]
    assert "RandomForestClassifier.pkl" in artifacts
    assert all(
        "runpytest-" in str(p.relative_to(pytester.path)) for p in pytester.path.rglob("*.pkl")
    )
