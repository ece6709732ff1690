"""The ONNX backend with real skl2onnx, onnxruntime and scikit-learn estimators (no mocks)."""

from __future__ import annotations

import locale
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.cross_decomposition import CCA
from sklearn.datasets import load_diabetes, load_iris
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC

from pytest_persist.backends.base import BackendCall, UnsupportedEstimator
from pytest_persist.backends.onnx_runtime import (
    METADATA_KEY,
    OnnxBackend,
    OnnxConverterError,
    OnnxModel,
    register_onnx_converter,
)

PROBA_ATOL = 1e-5
TREE_FLIP_CAP = 0.02  # float32 thresholds may flip a label sitting on a split


@pytest.fixture(autouse=True)
def _quiet_convergence() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        yield


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    return load_diabetes(return_X_y=True)


def roundtrip(
    estimator: Any, X: Any, tmp_path: Path, **options: Any
) -> tuple[OnnxModel, dict[str, Any]]:
    """dump, then load in a fresh call (as another process would): the model and dump details."""
    backend = OnnxBackend()
    path = tmp_path / f"model{backend.suffix}"
    dump_call = BackendCall(X=X, options=options)
    backend.dump(estimator, path, dump_call)
    loaded = backend.load(path, BackendCall(options=options))
    assert isinstance(loaded, OnnxModel)
    return loaded, dump_call.details


def flipped_fraction(expected: np.ndarray, actual: np.ndarray) -> float:
    assert expected.shape == actual.shape
    assert expected.dtype == actual.dtype
    return float(np.mean(expected != actual))


def test_backend_attributes() -> None:
    backend = OnnxBackend()
    assert backend.name == "onnx"
    assert backend.modules == ("skl2onnx", "onnxruntime")
    assert backend.suffix == ".onnx"
    assert backend.preserves_objects is False
    assert (backend.default_rtol, backend.default_atol) == (1e-4, 1e-5)
    assert backend.is_available()
    assert {"skl2onnx", "onnxruntime"} <= set(backend.library_versions())


def test_logistic_regression(iris, tmp_path) -> None:
    X, y = iris
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    loaded, details = roundtrip(clf, X, tmp_path)
    assert_array_equal(loaded.predict(X.copy()), clf.predict(X))
    assert_allclose(loaded.predict_proba(X.copy()), clf.predict_proba(X), atol=PROBA_ATOL)
    # The graph computes no log-probabilities: the adapter does not invent them.
    assert not hasattr(loaded, "predict_log_proba")
    assert loaded.onnx_outputs == ["label", "probabilities"]
    assert details["onnx_methods"] == {
        "predict": "label",
        "predict_proba": "probabilities",
    }
    assert details["onnx_retries"] == []
    assert details["onnx_options"]["zipmap"] is False
    # The graph has no decision_function output: the adapter must not pretend it has one.
    assert not hasattr(loaded, "decision_function")
    assert not hasattr(loaded, "transform")


def test_random_forest_with_string_labels(iris, tmp_path) -> None:
    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, labels)
    loaded, _ = roundtrip(clf, X, tmp_path)
    predicted = loaded.predict(X.copy())
    assert predicted.dtype == clf.predict(X).dtype  # '<U10', not object
    assert predicted.ndim == 1
    assert flipped_fraction(clf.predict(X), predicted) <= TREE_FLIP_CAP
    assert_allclose(loaded.predict_proba(X.copy()), clf.predict_proba(X), atol=PROBA_ATOL)


def test_random_forest_regressor(diabetes, tmp_path) -> None:
    X, y = diabetes
    reg = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, y)
    loaded, details = roundtrip(reg, X, tmp_path)
    predicted = loaded.predict(X.copy())
    assert predicted.shape == (X.shape[0],)  # graph gives (n, 1); predict is 1-D
    backend = OnnxBackend()
    assert_allclose(predicted, reg.predict(X), rtol=backend.default_rtol, atol=backend.default_atol)
    assert details["onnx_methods"] == {"predict": "variable"}
    assert not hasattr(loaded, "predict_proba")


@pytest.mark.parametrize("transformer", [StandardScaler(), PCA(n_components=3)], ids=repr)
def test_transformers(transformer, iris, tmp_path) -> None:
    X, _ = iris
    transformer.fit(X)
    loaded, details = roundtrip(transformer, X, tmp_path)
    assert details["onnx_methods"] == {"transform": "variable"}
    assert_allclose(loaded.transform(X.copy()), transformer.transform(X), rtol=1e-4, atol=1e-5)
    assert not hasattr(loaded, "predict")


def test_kmeans_label_and_distances(iris, tmp_path) -> None:
    X, _ = iris
    km = KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)
    loaded, details = roundtrip(km, X, tmp_path)
    assert details["onnx_methods"] == {"predict": "label", "transform": "scores"}
    assert_array_equal(loaded.predict(X.copy()), km.predict(X))
    assert_allclose(loaded.transform(X.copy()), km.transform(X), rtol=1e-4, atol=1e-4)


def test_isolation_forest_needs_ml_opset_3(iris, tmp_path) -> None:
    X, _ = iris
    iso = IsolationForest(n_estimators=20, random_state=0).fit(X)
    loaded, details = roundtrip(iso, X, tmp_path)
    assert len(details["onnx_retries"]) == 1
    assert "ai.onnx.ml" in details["onnx_retries"][0]
    assert details["onnx_target_opset"]["ai.onnx.ml"] == 3
    assert details["onnx_methods"] == {"predict": "label", "decision_function": "scores"}
    predicted = loaded.predict(X.copy())
    assert predicted.shape == (X.shape[0],)
    assert flipped_fraction(iso.predict(X), predicted) <= TREE_FLIP_CAP
    assert_allclose(loaded.decision_function(X.copy()), iso.decision_function(X), atol=1e-5)


def test_linear_svc_refuses_zipmap(iris, tmp_path) -> None:
    X, y = iris
    svc = LinearSVC(random_state=0).fit(X, y)
    loaded, details = roundtrip(svc, X, tmp_path)
    assert any("zipmap" in retry for retry in details["onnx_retries"])
    assert details["onnx_options"]["zipmap"] is None
    # LinearSVC has no predict_proba: skl2onnx's "probabilities" are decision_function scores.
    assert details["onnx_methods"] == {"predict": "label", "decision_function": "probabilities"}
    assert not hasattr(loaded, "predict_proba")
    assert_array_equal(loaded.predict(X.copy()), svc.predict(X))
    assert_allclose(loaded.decision_function(X.copy()), svc.decision_function(X), atol=1e-4)


def test_linear_svc_binary_decision_function_is_1d(iris, tmp_path) -> None:
    X, y = iris
    svc = LinearSVC(random_state=0).fit(X, y == 1)
    loaded, _ = roundtrip(svc, X, tmp_path)
    assert_array_equal(loaded.predict(X.copy()), svc.predict(X))  # bool labels stay bool
    assert_allclose(loaded.decision_function(X.copy()), svc.decision_function(X), atol=1e-4)


@pytest.mark.parametrize("outputs_given", [False, True])
def test_dump_reads_the_outputs_the_caller_computed(iris, tmp_path, outputs_given) -> None:
    """The adapter records each method's ndim and label dtype; with the round trip's own
    outputs in ``BackendCall.outputs`` the dump does not call the estimator again."""
    X, y = iris
    svc = LinearSVC(random_state=0).fit(X, y == 1)
    outputs = {"predict": svc.predict(X), "decision_function": svc.decision_function(X)}
    calls: list[str] = []
    for method in outputs:
        original = getattr(svc, method)

        def counted(data, _method=method, _original=original):
            calls.append(_method)
            return _original(data)

        setattr(svc, method, counted)  # on the instance: the class (and its converter) as is
    path = tmp_path / "model.onnx"
    OnnxBackend().dump(svc, path, BackendCall(X=X, outputs=outputs if outputs_given else {}))
    if outputs_given:
        assert calls == []
    else:  # predict calls decision_function itself
        assert set(calls) == {"predict", "decision_function"}
    loaded = OnnxBackend().load(path, BackendCall())
    assert loaded.decision_function(X.copy()).ndim == 1  # binary: 1-D, as the estimator's
    assert loaded.predict(X.copy()).dtype == outputs["predict"].dtype  # bool labels stay bool


def _en_us_locale_available() -> bool:
    previous = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "en_US.UTF-8")
    except locale.Error:
        return False
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    return True


TEXT = [
    "The cat sat on the mat",
    "the dog barked at the cat",
    "A bird sang; the dog slept",
    "cats and dogs and birds",
]


@pytest.mark.parametrize("vectorizer_class", [CountVectorizer, TfidfVectorizer])
def test_text_vectorizers_locale_retry(vectorizer_class, tmp_path) -> None:
    vectorizer = vectorizer_class().fit(TEXT)
    loaded, details = roundtrip(vectorizer, TEXT, tmp_path)
    locale_retries = [retry for retry in details["onnx_retries"] if "locale" in retry]
    if _en_us_locale_available():
        assert locale_retries == []
    else:
        assert len(locale_retries) == 1
        assert details["onnx_options"]["locale"] == "C"
    expected = vectorizer.transform(TEXT).toarray()
    assert_allclose(loaded.transform(list(TEXT)), expected, atol=1e-6)


def test_pipeline_with_column_transformer_on_dataframe(tmp_path) -> None:
    pd = pytest.importorskip("pandas")  # a test dependency: pytest-persist[test]
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(
        {
            "width": rng.randn(80),
            "height": rng.randn(80),
            "colour": rng.choice(["red", "green", "blue"], 80),
        }
    )
    y = (frame.width + (frame.colour == "red") > 0.3).astype(int)
    pipe = make_pipeline(
        ColumnTransformer(
            [("num", StandardScaler(), ["width", "height"]), ("cat", OneHotEncoder(), ["colour"])]
        ),
        LogisticRegression(),
    ).fit(frame, y)
    loaded, details = roundtrip(pipe, frame, tmp_path)
    assert [entry["name"] for entry in details["onnx_inputs"]] == ["width", "height", "colour"]
    assert [entry["dtype"] for entry in details["onnx_inputs"]] == ["float32", "float32", "str"]
    assert_array_equal(loaded.predict(frame.copy()), pipe.predict(frame))
    assert_allclose(loaded.predict_proba(frame.copy()), pipe.predict_proba(frame), atol=1e-5)
    with pytest.raises(TypeError, match="DataFrame with columns"):
        loaded.predict(frame.to_numpy())


def test_numeric_dataframe_becomes_one_float_input(iris, tmp_path) -> None:
    pd = pytest.importorskip("pandas")
    X, y = iris
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    clf = LogisticRegression(max_iter=1000).fit(frame, y)
    loaded, details = roundtrip(clf, frame, tmp_path)
    assert details["onnx_inputs"] == [{"name": "X", "dtype": "float32"}]
    assert_array_equal(loaded.predict(frame.copy()), clf.predict(frame))
    assert_allclose(loaded.predict_proba(frame.copy()), clf.predict_proba(frame), atol=1e-5)


def test_float64_option(diabetes, tmp_path) -> None:
    from sklearn.linear_model import Ridge

    X, y = diabetes
    reg = Ridge().fit(X, y)
    loaded, details = roundtrip(reg, X, tmp_path, onnx_dtype="float64")
    assert details["onnx_inputs"][0]["dtype"] == "float64"
    assert_allclose(loaded.predict(X.copy()), reg.predict(X), rtol=1e-10)


def test_hist_gradient_boosting(iris, tmp_path) -> None:
    """skl2onnx 1.20 crashes inside the TreeEnsemble converter under onnx 1.23 / protobuf 7: a
    converter that fails is an ``OnnxConverterError`` (a dump_error), not unsupported, with a
    short message and the versions (or, once fixed, the model agrees)."""
    X, y = iris
    clf = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    backend = OnnxBackend()
    call = BackendCall(X=X)
    try:
        backend.dump(clf, tmp_path / "model.onnx", call)
    except OnnxConverterError as error:
        message = str(error)
        assert "HistGradientBoostingClassifier" in message
        assert "not 'unsupported'" in message
        assert "caused by TypeError" in message
        assert "skl2onnx " in message and "protobuf " in message
        assert len(message) < 1200  # a message, not a dump of the tree's attributes
        assert call.details["onnx_conversion"] == "converter_failed"
        assert "Expected an int" in call.details["onnx_conversion_error"]
        return
    loaded = backend.load(tmp_path / "model.onnx", BackendCall())
    assert flipped_fraction(clf.predict(X), loaded.predict(X.copy())) <= TREE_FLIP_CAP
    assert_allclose(loaded.predict_proba(X.copy()), clf.predict_proba(X), atol=PROBA_ATOL)


def test_cca_has_no_converter(iris, tmp_path) -> None:
    X, _ = iris
    cca = CCA(n_components=1).fit(X[:, :2], X[:, 2:])
    with pytest.raises(UnsupportedEstimator, match="shape calculator") as caught:
        roundtrip(cca, X[:, :2], tmp_path)
    assert "CCA" in str(caught.value)
    assert "\n" not in str(caught.value)


class LinearScore(RegressorMixin, BaseEstimator):
    """A third-party estimator skl2onnx knows nothing about: y = X @ coef_ + intercept_."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearScore:
        design = np.c_[X, np.ones(len(X))]
        solution = np.linalg.lstsq(design, y, rcond=None)[0]
        self.coef_, self.intercept_ = solution[:-1], float(solution[-1])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X) @ self.coef_ + self.intercept_


class Doubler(TransformerMixin, BaseEstimator):
    """Never registered with skl2onnx."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return 2 * np.asarray(X)


def test_custom_estimator_without_converter(iris, tmp_path) -> None:
    X, _ = iris
    with pytest.raises(UnsupportedEstimator, match="Doubler"):
        roundtrip(Doubler().fit(X), X, tmp_path)


def _linear_score_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([rows, 1])


def _linear_score_converter(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxMatMul

    model = operator.raw_operator
    opset = container.target_opset
    coef = model.coef_.astype(np.float32).reshape(-1, 1)
    intercept = np.array([model.intercept_], dtype=np.float32)
    result = OnnxAdd(
        OnnxMatMul(operator.inputs[0], coef, op_version=opset),
        intercept,
        op_version=opset,
        output_names=operator.outputs[:1],
    )
    result.add_to(scope, container)


def test_register_custom_converter_round_trip(diabetes, tmp_path) -> None:
    X, y = diabetes
    reg = LinearScore().fit(X, y)
    register_onnx_converter(
        LinearScore, "PytestPersistLinearScore", _linear_score_shape, _linear_score_converter
    )
    loaded, details = roundtrip(reg, X, tmp_path)
    assert details["onnx_methods"] == {"predict": "variable"}
    backend = OnnxBackend()
    assert_allclose(loaded.predict(X.copy()), reg.predict(X), rtol=backend.default_rtol, atol=1e-3)


def test_artifact_loads_from_the_file_alone(iris, tmp_path) -> None:
    """What the adapter needs lives in the ONNX metadata, not in the dump call."""
    import onnx

    X, y = iris
    labels = np.array(["a", "b", "c"])[y]
    clf = LogisticRegression(max_iter=1000).fit(X, labels)
    path = tmp_path / "model.onnx"
    OnnxBackend().dump(clf, path, BackendCall(X=X))
    keys = [prop.key for prop in onnx.load(str(path)).metadata_props]
    assert METADATA_KEY in keys
    loaded = OnnxModel(path)
    assert_array_equal(loaded.predict(X.astype(np.float64)), clf.predict(X))
    assert sorted(dir(loaded)) == sorted(set(dir(loaded)))
    assert {"predict", "predict_proba"} <= set(dir(loaded))


def test_quadratic_discriminant_label_row_is_raveled(iris, tmp_path) -> None:
    """skl2onnx gives QuadraticDiscriminantAnalysis's label as shape (1, n)."""
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    X, y = iris
    qda = QuadraticDiscriminantAnalysis().fit(X, y)
    loaded, _ = roundtrip(qda, X, tmp_path)
    assert_array_equal(loaded.predict(X.copy()), qda.predict(X))
    assert_allclose(loaded.predict_proba(X.copy()), qda.predict_proba(X), atol=PROBA_ATOL)


def test_graph_runs_once_for_all_methods_of_the_same_input(iris, tmp_path) -> None:
    X, y = iris
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    loaded, _ = roundtrip(forest, X, tmp_path)
    runs = []
    real_run = loaded.session.run

    def counting_run(names, feeds):
        runs.append(list(names))
        return real_run(names, feeds)

    loaded.session = type("Spy", (), {"run": staticmethod(counting_run)})()
    labels = loaded.predict(X.copy())
    proba = loaded.predict_proba(X.copy())  # a fresh copy of the same X: served from the run
    assert runs == [["label", "probabilities"]]
    labels[:] = -1  # callers may mutate what they get; the cache must not change
    assert_array_equal(loaded.predict(X.copy()), forest.predict(X))
    other = loaded.predict_proba(X[::-1].copy())  # another input: the graph runs again
    assert len(runs) == 2
    assert_allclose(other, proba[::-1], atol=PROBA_ATOL)


# --- third-party models through onnxmltools, and a converter that fails ----------------------


def _third_party(kind: str) -> Any:
    """A small real LightGBM or XGBoost model (the libraries are in the test extra)."""
    if kind.startswith("LGBM"):
        lightgbm = pytest.importorskip("lightgbm")
        return getattr(lightgbm, kind)(n_estimators=20, verbose=-1, random_state=0)
    xgboost = pytest.importorskip("xgboost")
    return getattr(xgboost, kind)(n_estimators=20, random_state=0, n_jobs=1)


@pytest.mark.parametrize("kind", ["LGBMClassifier", "XGBClassifier"])
def test_third_party_classifier_converts_through_onnxmltools(kind, iris, tmp_path) -> None:
    pytest.importorskip("onnxmltools")
    X, y = iris
    clf = _third_party(kind).fit(X, y)
    loaded, details = roundtrip(clf, X, tmp_path)
    library = "convert_lightgbm" if kind.startswith("LGBM") else "convert_xgboost"
    assert details["onnx_converters"][kind].endswith(library)
    assert details["onnx_methods"] == {"predict": "label", "predict_proba": "probabilities"}
    assert flipped_fraction(clf.predict(X), loaded.predict(X.copy())) <= TREE_FLIP_CAP
    assert_allclose(loaded.predict_proba(X.copy()), clf.predict_proba(X), atol=PROBA_ATOL)


@pytest.mark.parametrize("kind", ["LGBMRegressor", "XGBRegressor"])
def test_third_party_regressor_converts_through_onnxmltools(kind, diabetes, tmp_path) -> None:
    pytest.importorskip("onnxmltools")
    X, y = diabetes
    model = _third_party(kind).fit(X, y)
    loaded, details = roundtrip(model, X, tmp_path)
    assert list(details["onnx_converters"]) == [kind]
    assert details["onnx_methods"] == {"predict": "variable"}
    assert_allclose(loaded.predict(X.copy()), model.predict(X), rtol=OnnxBackend.default_rtol)


def test_a_warning_raised_as_an_error_is_a_failed_converter(iris, tmp_path) -> None:
    """SVC(probability=True)'s converter reads ``probA_``, deprecated in scikit-learn 1.9: under
    ``filterwarnings = error`` that FutureWarning is the converter failing, not a missing one."""
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        svc = SVC(probability=True, random_state=0).fit(X, y)
    call = BackendCall(X=X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        try:
            OnnxBackend().dump(svc, tmp_path / "model.onnx", call)
        except OnnxConverterError as error:
            assert "FutureWarning was raised as an error" in str(error)
            assert call.details["onnx_conversion"] == "converter_failed"
            return
    pytest.skip("this scikit-learn/skl2onnx pair raises no FutureWarning converting SVC")


def test_a_converter_declining_an_option_is_unsupported(iris, tmp_path) -> None:
    """skl2onnx's GaussianProcessClassifier converter raises NotImplementedError for more than
    two classes: a converter saying what it does not handle is unsupported, not a failure."""
    X, y = iris
    gpc = GaussianProcessClassifier(random_state=0).fit(X, y)
    call = BackendCall(X=X)
    with pytest.raises(UnsupportedEstimator, match="binary classification"):
        OnnxBackend().dump(gpc, tmp_path / "model.onnx", call)
    assert call.details["onnx_conversion"] == "converter_declined"
