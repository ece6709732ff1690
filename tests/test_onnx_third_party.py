"""ONNX through the plugin: LightGBM and XGBoost via onnxmltools, the skip that names the package
to install without it, and a converter that crashes (a failure) kept apart from a missing one
(a skip). Real libraries, through pytester."""

from __future__ import annotations

import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("xgboost")
pytest.importorskip("onnxmltools")

THIRD_PARTY_SUITE = """
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.datasets import load_diabetes, load_iris
from xgboost import XGBClassifier, XGBRegressor

IRIS = load_iris(return_X_y=True)
DIABETES = load_diabetes(return_X_y=True)


@pytest.mark.persist_roundtrip(backends=["onnx"])
@pytest.mark.parametrize("model", [
    LGBMClassifier(n_estimators=20, verbose=-1, random_state=0),
    XGBClassifier(n_estimators=20, random_state=0, n_jobs=1),
], ids=["lgbm", "xgb"])
def test_classifier(persist_roundtrip, model):
    X, y = IRIS
    loaded = persist_roundtrip(model.fit(X, y), X, y)
    assert hasattr(loaded, "predict_proba")  # the probabilities were compared


@pytest.mark.persist_roundtrip(backends=["onnx"])
@pytest.mark.parametrize("model", [
    LGBMRegressor(n_estimators=20, verbose=-1, random_state=0),
    XGBRegressor(n_estimators=20, random_state=0, n_jobs=1),
], ids=["lgbm", "xgb"])
def test_regressor(persist_roundtrip, model):
    X, y = DIABETES
    persist_roundtrip(model.fit(X, y), X, y)
"""


def test_lightgbm_and_xgboost_convert_through_onnxmltools(run_suite):
    run = run_suite(THIRD_PARTY_SUITE)
    for test in ("test_classifier", "test_regressor"):
        for model in ("lgbm", "xgb"):
            assert run.status(f"{test}[onnx-{model}]") == "PASSED", run.text
    assert run.result.ret == 0


def test_without_onnxmltools_the_skip_names_the_package(run_suite, pytester):
    # onnxmltools made unimportable for that run, as on a machine that lacks it
    pytester.makeconftest("import sys\nsys.modules['onnxmltools'] = None\n")
    run = run_suite(THIRD_PARTY_SUITE)
    assert run.status("test_classifier[onnx-lgbm]") == "SKIPPED"
    assert run.status("test_regressor[onnx-xgb]") == "SKIPPED"
    assert "skl2onnx has no converter for LGBMClassifier" in run.text
    assert "skl2onnx has no converter for XGBRegressor" in run.text
    assert "pip install onnxmltools" in run.text


CONVERTER_SUITE = """
import pytest
from sklearn.cross_decomposition import CCA
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.svm import SVC

IRIS = load_iris(return_X_y=True)


@pytest.mark.persist_roundtrip(backends=["onnx"])
def test_no_converter(persist_roundtrip):
    X, _ = IRIS
    persist_roundtrip(CCA(n_components=1).fit(X[:, :2], X[:, 2:]), X[:, :2])


@pytest.mark.persist_roundtrip(backends=["onnx"])
def test_converter_crashes(persist_roundtrip):
    X, y = load_diabetes(return_X_y=True)
    persist_roundtrip(HistGradientBoostingRegressor(max_iter=5).fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["onnx"])
def test_warning_as_error(persist_roundtrip):
    X, y = IRIS
    with pytest.warns(FutureWarning):  # SVC(probability=True) is deprecated in 1.9
        model = SVC(probability=True, random_state=0).fit(X, y)
    persist_roundtrip(model, X, y)
"""


def test_a_crashing_converter_fails_and_a_missing_one_skips(run_suite):
    run = run_suite(CONVERTER_SUITE, ini="[pytest]\nfilterwarnings = error::FutureWarning\n")
    assert run.status("test_no_converter[onnx]") == "SKIPPED"
    assert "skl2onnx cannot convert CCA: MissingShapeCalculator" in run.text
    assert run.status("test_converter_crashes[onnx]") == "FAILED"
    assert "HistGradientBoostingRegressor via onnx: dump_error" in run.text
    assert "the ONNX converter for HistGradientBoostingRegressor failed" in run.text
    assert "caused by TypeError: Field onnx.AttributeProto.ints" in run.text
    assert run.status("test_warning_as_error[onnx]") == "FAILED"
    assert "SVC via onnx: dump_error" in run.text
    assert "a FutureWarning was raised as an error by a filterwarnings setting" in run.text
