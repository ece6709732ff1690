"""The pytest-free core: comparison rules, state walk and check_persistence."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn import __version__ as sklearn_version
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from pytest_persist import OutcomeKind, PersistUsageError, check_persistence
from pytest_persist.backends.pickle_protocol import PickleBackend
from pytest_persist.roundtrip.compare import compare_outputs
from pytest_persist.roundtrip.state import compare_state


def _compare(want, got, **kw):
    kw.setdefault("rtol", 1e-7)
    kw.setdefault("atol", 1e-9)
    return compare_outputs({"predict": want}, {"predict": got}, **kw)


def test_labels_compare_exactly_and_floats_within_tolerance():
    assert _compare(np.array(["a", "b"]), np.array(["a", "b"])) == []
    [label] = _compare(np.array(["a", "b", "c", "d"]), np.array(["a", "x", "c", "d"]))
    assert (label.n_different, label.n_total) == (1, 4)
    assert "25.00% of labels differ" in label.message
    assert "first at index 1: expected 'b', got 'x'" in label.message  # plain values
    assert _compare(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-12])) == []
    [diff] = _compare(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    assert diff.max_abs == pytest.approx(0.5)
    assert diff.max_rel == pytest.approx(0.25)
    assert "expected 2.0, got 2.5" in diff.message


def test_nan_equals_nan_and_exact_is_bitwise():
    assert _compare(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), exact=True) == []
    [diff] = _compare(np.array([1.0]), np.array([1.0 + 1e-15]), exact=True)
    assert "bitwise" in diff.message


def test_dtype_and_shape_changes_are_differences():
    [diff] = _compare(np.array([1, 2]), np.array([1.0, 2.0]))
    assert "dtype differs" in diff.message
    [diff] = _compare(np.zeros((2, 2)), np.zeros(4))
    assert "shape differs" in diff.message


def test_label_flips_under_a_cap_are_tolerated():
    want = np.array([0, 1, 1, 0] * 25)
    got = want.copy()
    got[3] = 1
    [diff] = _compare(want, got, max_label_flips=0.02)
    assert diff.tolerated and diff.n_different == 1
    [diff] = _compare(want, got, max_label_flips=0.0)
    assert not diff.tolerated


def test_sparse_outputs_compare_as_sparse_without_densifying():
    # 10 x 2**20 would be 80 MB dense; compared as sparse it is instant
    want = sp.random(10, 2**20, density=1e-5, format="csr", random_state=0)
    got = want.copy()
    assert _compare(want, got) == []
    got.data[0] += 1.0
    [diff] = _compare(want, got)
    assert diff.n_different == 1 and diff.n_total == 10 * 2**20
    [diff] = _compare(want, want.toarray())
    assert "expected csr_matrix" in diff.message


def test_lists_of_arrays_and_frames_name_the_part_that_differs():
    pd = pytest.importorskip("pandas")
    [diff] = _compare([np.zeros(3), np.ones(3)], [np.zeros(3), np.full(3, 2.0)])
    assert diff.path == "[1]"
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    other = frame.copy()
    other.loc[1, "b"] = 5.0
    [diff] = _compare(frame, other)
    assert diff.path == "['b']"
    [diff] = _compare(frame, frame.rename(columns={"b": "c"}))
    assert "columns differ" in diff.message


def test_state_walk_names_the_path_inside_a_pipeline():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), DecisionTreeClassifier(random_state=0)).fit(X, y)
    import pickle

    loaded = pickle.loads(pickle.dumps(pipe))
    assert compare_state(pipe, loaded) == []
    loaded.steps[1][1].tree_.value[0, 0, 0] += 1.0
    differences = compare_state(pipe, loaded)
    assert differences and differences[0].startswith("steps[1][1].tree_")
    del loaded.steps[0][1].scale_
    assert "steps[0][1].scale_: missing after loading" in compare_state(pipe, loaded)


class _Noisy(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return self.classes_[np.zeros(len(X), dtype=int)]

    def predict_proba(self, X):
        rng = np.random.default_rng()
        proba = rng.random((len(X), len(self.classes_)))
        return proba / proba.sum(axis=1, keepdims=True)

    def score_samples(self, X):
        raise ValueError("score_samples is not defined for this model")


def test_nondeterministic_and_failing_methods_are_set_aside_not_false_mismatches():
    X, y = load_iris(return_X_y=True)
    [outcome] = check_persistence(_Noisy().fit(X, y), X, y, backends=["pickle"])
    assert outcome.kind is OutcomeKind.PASSED
    assert outcome.compared_methods == ["predict", "score"]
    assert outcome.not_compared["predict_proba"].startswith("nondeterministic")
    assert (
        "raises on the original estimator too, not a persistence failure"
        in (outcome.not_compared["score_samples"])
    )


def test_check_persistence_returns_structured_results():
    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    outcomes = check_persistence(forest, X, y)
    assert [o.backend for o in outcomes] == [
        "pickle",
        "joblib",
        "joblib-mmap",
        "joblib-compressed",
        "cloudpickle",
        "skops",
        "onnx",
    ]
    for outcome in outcomes:
        assert outcome.kind is OutcomeKind.PASSED, outcome.message()
        assert outcome.artifact_bytes > 1000
        assert outcome.dump_seconds >= 0 and outcome.load_seconds >= 0
        assert outcome.versions["scikit-learn"]
        np.testing.assert_array_equal(outcome.loaded.predict(X), forest.predict(X))
    sizes = {o.backend: o.artifact_bytes for o in outcomes}
    assert sizes["joblib-compressed"] < sizes["joblib"]
    record = outcomes[0].to_dict()
    assert record["kind"] == "passed" and "loaded" not in record


def test_hashing_vectorizer_output_is_not_densified():
    docs = ["persist me", "and me too"] * 50
    [outcome] = check_persistence(HashingVectorizer().fit(docs), docs, backends=["joblib"])
    assert outcome.kind is OutcomeKind.PASSED
    assert outcome.compared_methods == ["transform"]


def test_check_persistence_rejects_bad_input():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(PersistUsageError, match="not fitted"):
        check_persistence(RandomForestClassifier(), X, y)
    with pytest.raises(ValueError, match="unknown persistence backend"):
        check_persistence(RandomForestClassifier().fit(X, y), X, y, backends=["zip"])


class _PickleFromThePast(PickleBackend):
    """Writes a real pickle whose scikit-learn version reads as an older release, the way
    scikit-learn's own tests simulate version skew."""

    name = "pickle-from-the-past"

    def dump(self, estimator, path, call):
        import sklearn

        current = sklearn.__version__.encode()
        older = b"0." + b"9" * (len(current) - 2)  # same length keeps the pickle valid
        path.write_bytes(pickle.dumps(estimator, protocol=5).replace(current, older))


def test_version_warnings_of_every_nested_estimator_are_recorded_and_grouped():
    from pytest_persist import BackendRegistry

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    registry = BackendRegistry([_PickleFromThePast()])
    [outcome] = check_persistence(forest, X, y, registry=registry)
    assert outcome.kind is OutcomeKind.PASSED  # warned, and still predicts the same
    names = [w.estimator for w in outcome.version_warnings]
    assert names.count("DecisionTreeClassifier") == 5  # the template tree and 4 trees
    assert "RandomForestClassifier" in names
    assert {w.current_version for w in outcome.version_warnings} == {sklearn_version}
    [line] = outcome.version_warning_lines()
    assert "DecisionTreeClassifier x5" in line and f"loaded with {sklearn_version}" in line


class _CountsItsCalls(ClassifierMixin, BaseEstimator):
    """Like scikit-learn 1.0's KDTree, which counts its own queries."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.n_calls_ = 0
        return self

    def predict(self, X):
        self.n_calls_ += 1
        return self.classes_[np.zeros(len(X), dtype=int)]


def test_state_is_compared_before_the_loaded_model_is_used():
    X, y = load_iris(return_X_y=True)
    [outcome] = check_persistence(_CountsItsCalls().fit(X, y), X, y, backends=["pickle"])
    assert outcome.kind is OutcomeKind.PASSED, outcome.message()
    assert outcome.loaded.n_calls_ > 0  # it was called, after the state walk


def test_check_persistence_validates_its_keywords_like_the_marker():
    X, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(random_state=0).fit(X, y)
    with pytest.raises(PersistUsageError, match=r"unknown keyword\(s\) tolerance"):
        check_persistence(model, X, y, tolerance=1e-3)
    with pytest.raises(PersistUsageError, match="rtol must be a non-negative number"):
        check_persistence(model, X, y, rtol="tight")
    with pytest.raises(PersistUsageError, match="pass backends= and exclude= as arguments"):
        check_persistence(model, X, y, xfail={"onnx": "no"})
    # backend options reach the backend: an empty skops allowlist refuses the tree type
    [outcome] = check_persistence(model, X, y, backends=["skops"], trusted=[])
    assert outcome.kind is OutcomeKind.LOAD_ERROR
    assert "sklearn.tree._tree.Tree" in outcome.message()
