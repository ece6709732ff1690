"""Tests for pytest_persist.estimators.fit_data: every default instance fits and predicts on
its data."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils import all_estimators
from threadpoolctl import threadpool_limits

from pytest_persist.estimators import fit_data as estimator_data
from pytest_persist.estimators.fit_data import (
    N_FEATURES,
    NOT_BUILT,
    DataTags,
    data_tags,
    default_instances,
    make_fit_data,
)

METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score_samples",
)

INSTANCES = default_instances()


def _fit(estimator, X, y):
    return estimator.fit(X) if y is None else estimator.fit(X, y)


def _copy(X):
    """A copy of X, so that no estimator sees the very object it was fitted on."""
    return [x.copy() if hasattr(x, "copy") else x for x in X] if isinstance(X, list) else X.copy()


def _n_rows(out):
    return len(out[0]) if isinstance(out, list) else out.shape[0]


def _build(cls_name, **params):
    cls = dict(all_estimators())[cls_name]
    return estimator_data._build(cls_name, cls).set_params(**params)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "estimator"), INSTANCES, ids=[name for name, _ in INSTANCES])
def test_every_instance_fits_and_predicts(name, estimator):
    X, y = make_fit_data(estimator)
    # One BLAS/OpenMP thread: on tiny data, threads only spin (a loaded 2-core machine made
    # LogisticRegression-based meta-estimators 5-10 times slower).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # Small data and few iterations: convergence is not what is tested here; nor are
        # deprecations (PassiveAggressive* in 1.8+).
        warnings.simplefilter("ignore")
        estimator = clone(estimator)
        _fit(estimator, X, y)
        called = []
        for method in METHODS:
            if not hasattr(estimator, method):
                continue
            out = getattr(estimator, method)(_copy(X))
            called.append(method)
            if method != "transform" and not data_tags(estimator).three_d_array:
                n = len(X)
                assert _n_rows(out) == n, f"{name}.{method} returned {_n_rows(out)} rows, not {n}"
    assert (
        called
        or not any(hasattr(type(estimator), m) for m in METHODS)
        or name
        in {
            # Methods that exist on the class but are unavailable for this configuration.
            "LocalOutlierFactor",
        }
    )


def test_nothing_dropped_silently():
    built = {name for name, _ in default_instances()}
    listed = {name for name, _ in all_estimators()}
    assert built.isdisjoint(NOT_BUILT)
    assert built | set(NOT_BUILT) == listed


def test_halving_search_when_enabled():
    pytest.importorskip("sklearn.experimental.enable_halving_search_cv")
    instances = dict(default_instances())
    for name in ("HalvingGridSearchCV", "HalvingRandomSearchCV"):
        estimator = instances[name]
        X, y = make_fit_data(estimator)
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore")
            assert estimator.fit(X, y).predict_proba(_copy(X)).shape == (len(X), 3)
    assert not NOT_BUILT


def test_build_failure_is_recorded(monkeypatch):
    def broken():
        raise RuntimeError("cannot build this one")

    monkeypatch.setitem(estimator_data._SPECS, "Ridge", broken)
    names = [name for name, _ in default_instances(type_filter="regressor")]
    try:
        assert "Ridge" not in names
        assert NOT_BUILT == {"Ridge": "RuntimeError: cannot build this one"}
    finally:
        monkeypatch.undo()
        default_instances()  # leave NOT_BUILT as the other tests expect


def test_type_filter():
    classifiers = default_instances(type_filter="classifier")
    assert classifiers
    assert all(data_tags(est).estimator_type == "classifier" for _, est in classifiers)
    default_instances()


def test_instances_are_seeded_and_fresh():
    first = dict(default_instances())
    second = dict(default_instances())
    for name in ("RandomForestClassifier", "StackingClassifier", "SGDClassifier"):
        params = first[name].get_params(deep=True)
        seeds = [v for k, v in params.items() if k.endswith("random_state")]
        assert seeds and None not in seeds, name
        assert first[name] is not second[name]
    assert first["Pipeline"].steps[0][1] is not second["Pipeline"].steps[0][1]


def test_data_is_deterministic_and_sized():
    from sklearn.linear_model import LogisticRegression

    X1, y1 = make_fit_data(LogisticRegression())
    X2, y2 = make_fit_data(LogisticRegression())
    X3, _ = make_fit_data(LogisticRegression(), random_state=1)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    X4, y4 = make_fit_data(LogisticRegression(), n_samples=30)
    assert X1.shape == (60, N_FEATURES) and X4.shape == (30, N_FEATURES) and len(y4) == 30


def test_classifiers_multiclass_unless_binary_only():
    from sklearn.linear_model import LogisticRegression

    _, y = make_fit_data(LogisticRegression())
    assert sorted(np.unique(y)) == [0, 1, 2]
    if "FixedThresholdClassifier" in dict(all_estimators()):
        _, y = make_fit_data(_build("FixedThresholdClassifier"))
        assert sorted(np.unique(y)) == [0, 1]


def test_positive_only_input():
    from sklearn.naive_bayes import MultinomialNB

    X, _ = make_fit_data(MultinomialNB())
    assert X.min() >= 0
    with pytest.raises(ValueError, match=r"[Nn]egative"):  # the tag matters
        MultinomialNB().fit(X - 1, make_fit_data(MultinomialNB())[1])


def test_positive_only_target():
    from sklearn.linear_model import GammaRegressor, LinearRegression

    _, y = make_fit_data(GammaRegressor())
    assert y.min() > 0
    _, y = make_fit_data(LinearRegression())
    assert y.min() < 0


def test_multi_output_targets():
    from sklearn.cross_decomposition import CCA, PLSSVD
    from sklearn.linear_model import LinearRegression, MultiTaskLasso

    assert make_fit_data(MultiTaskLasso())[1].ndim == 2
    assert make_fit_data(LinearRegression())[1].ndim == 1
    _, Y = make_fit_data(CCA(n_components=3))
    assert Y.shape[1] >= 3
    _, Y = make_fit_data(PLSSVD())
    assert Y.ndim == 2 and Y.shape[1] >= 2
    _, Y = make_fit_data(_build("MultiOutputClassifier"))
    assert Y.ndim == 2 and set(np.unique(Y)) == {0, 1}


@pytest.mark.parametrize("name", ["CountVectorizer", "TfidfVectorizer", "HashingVectorizer"])
def test_text_vectorizers_get_documents(name):
    X, y = make_fit_data(dict(all_estimators())[name]())
    assert y is None
    assert isinstance(X, list) and all(isinstance(doc, str) and " " in doc for doc in X)


def test_dict_and_token_inputs():
    from sklearn.feature_extraction import DictVectorizer, FeatureHasher

    X, _ = make_fit_data(DictVectorizer())
    assert all(isinstance(row, dict) and row for row in X)
    X, _ = make_fit_data(FeatureHasher())
    assert all(isinstance(row, dict) for row in X)
    X, _ = make_fit_data(FeatureHasher(input_type="string"))
    assert all(isinstance(row, list) and isinstance(row[0], str) for row in X)
    FeatureHasher(input_type="string").fit_transform(X)


def test_one_d_and_label_inputs():
    from sklearn.isotonic import IsotonicRegression
    from sklearn.preprocessing import LabelEncoder, MultiLabelBinarizer

    X, y = make_fit_data(IsotonicRegression())
    assert X.ndim == 1 and y.shape == X.shape
    assert np.corrcoef(X, y)[0, 1] > 0.5  # an increasing relation, not noise
    X, y = make_fit_data(LabelEncoder())
    assert X.ndim == 1 and y is None
    X, y = make_fit_data(MultiLabelBinarizer())
    assert isinstance(X[0], tuple) and y is None


def test_categorical_input():
    from sklearn.naive_bayes import CategoricalNB
    from sklearn.preprocessing import OneHotEncoder

    X, y = make_fit_data(OneHotEncoder())
    assert np.issubdtype(X.dtype, np.integer) and X.min() >= 0 and y is None
    X, y = make_fit_data(CategoricalNB())
    assert X.min() >= 0 and y is not None
    # CategoricalNB is tagged categorical only from scikit-learn 1.3 (before: positive only).
    assert np.issubdtype(X.dtype, np.integer) == data_tags(CategoricalNB()).categorical


def test_transformers_that_need_y():
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.feature_selection import SelectKBest

    for needs in (SelectKBest(), LinearDiscriminantAnalysis(), _build("SelectFromModel")):
        assert make_fit_data(needs)[1] is not None, needs
    for unsupervised in (PCA(), KMeans(n_init=2)):
        assert make_fit_data(unsupervised)[1] is None, unsupervised


def test_pairwise_inputs():
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import KernelCenterer
    from sklearn.svm import SVC

    for estimator in (KernelCenterer(), SVC(kernel="precomputed")):
        X, _ = make_fit_data(estimator)
        assert X.shape == (60, 60)
        np.testing.assert_allclose(X, X.T)
    X, y = make_fit_data(KNeighborsClassifier(metric="precomputed"))
    assert X.shape == (60, 60) and np.allclose(np.diag(X), 0)
    KNeighborsClassifier(metric="precomputed").fit(X, y).predict(X)


class _OldStyle:
    """Stands for an estimator of scikit-learn 1.0-1.5, which only has ``_get_tags()``."""

    def __init__(self, estimator_type=None, **tags):
        if estimator_type is not None:
            self._estimator_type = estimator_type
        self._tags = tags

    def _get_tags(self):
        return {"X_types": ["2darray"], **self._tags}

    def fit(self, X, y=None):
        return self

    def get_params(self, deep=True):
        return {}


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        (_OldStyle("classifier", binary_only=True), {"binary_only": True, "requires_y": False}),
        (_OldStyle("regressor", multioutput_only=True), {"multi_output_only": True}),
        (_OldStyle(requires_positive_X=True), {"positive_X": True}),
        (_OldStyle(X_types=["string"]), {"string": True, "two_d_array": False}),
        (_OldStyle(X_types=["1darray"]), {"one_d_array": True, "two_d_array": False}),
        (_OldStyle(X_types=["categorical"]), {"categorical": True}),
        (_OldStyle(X_types=["2dlabels"]), {"two_d_labels": True}),
        (_OldStyle("DensityEstimator"), {"estimator_type": "density_estimator"}),
    ],
)
def test_old_tags_are_translated(monkeypatch, estimator, expected):
    monkeypatch.setattr(estimator_data, "_get_tags_new", None)
    tags = data_tags(estimator)
    for field, value in expected.items():
        assert getattr(tags, field) == value, field


def test_old_tags_drive_the_data(monkeypatch):
    monkeypatch.setattr(estimator_data, "_get_tags_new", None)
    X, y = make_fit_data(_OldStyle("classifier", binary_only=True))
    assert sorted(np.unique(y)) == [0, 1] and X.shape == (60, N_FEATURES)
    X, y = make_fit_data(_OldStyle("regressor", multioutput_only=True))
    assert y.ndim == 2
    X, _ = make_fit_data(_OldStyle(X_types=["string"]))
    assert isinstance(X[0], str)


def test_data_tags_of_a_new_style_estimator():
    from sklearn.naive_bayes import MultinomialNB

    tags = data_tags(MultinomialNB())
    assert isinstance(tags, DataTags)
    assert tags.estimator_type == "classifier" and tags.positive_X and tags.requires_y


def test_module_is_pytest_free():
    # scikit-learn's all_estimators() imports pytest when it is installed; with pytest made
    # unimportable, the module must still build every instance and its data.
    code = (
        "import sys; sys.modules['pytest'] = None; sys.modules['_pytest'] = None\n"
        "import pytest_persist.estimators.fit_data as m\n"
        "m.make_fit_data(m.default_instances()[0][1])"
    )
    root = Path(estimator_data.__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
