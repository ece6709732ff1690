"""Release checks on the third-party libraries people ship, as their authors would write them
(through pytester, in a subprocess): category_encoders, LightGBM, XGBoost, hdbscan and MAPIE.

Each library is in the ``test`` extra; a test whose library is missing is skipped, naming it.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter

import numpy as np
import pytest


def needs(*modules: str) -> None:
    """Skip unless every module is installed, without importing it here: pytester restores
    ``sys.modules`` after each test, and numpy's extensions cannot be imported twice."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (pip install -e '.[test]')")


ENCODERS = """
import pandas as pd
import numpy as np
import category_encoders as ce
from pytest_persist import parametrize_with_persistence

# What ran before must not matter: a groupby fills pandas' StringDtype._cache.
pd.DataFrame({"a": ["x", "y", "x"], "b": [1, 2, 3]}).groupby("a").size()

try:
    import statsmodels  # GLMMEncoder needs it
except ImportError:
    statsmodels = None
NAMES = [
    n for n in ce.__all__
    if n[0].isupper() and n != "WOEEncoder" and (statsmodels or n != "GLMMEncoder")
]


def binary(estimator):
    rng = np.random.RandomState(0)
    X = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], 80), "n": rng.normal(size=80)})
    return X, (X["colour"] == "red").astype(int).to_numpy()


@parametrize_with_persistence([getattr(ce, n)() for n in NAMES], backends=BACKENDS)
def test_encoder(estimator, check):
    check(estimator)


@parametrize_with_persistence([ce.WOEEncoder()], backends=BACKENDS, data=binary)
def test_woe(estimator, check):
    check(estimator)
"""

BACKENDS = ["pickle", "joblib", "cloudpickle", "skops"]


def test_category_encoders_encode_categories_and_every_item_is_recorded(run_suite, pytester):
    needs("category_encoders")
    source = ENCODERS.replace("BACKENDS", repr(BACKENDS))
    run = run_suite(source, "--persist-report=report.json", "-W", "ignore")
    statuses = Counter((item.split("-")[-1].rstrip("]"), s) for item, s in run.statuses.items())
    n_items = len(run.statuses)
    n_encoders = n_items // len(BACKENDS)
    assert n_encoders >= 22, run.text  # category_encoders 2.11: 23 less GLMMEncoder
    for backend in ("pickle", "joblib", "cloudpickle"):
        assert statuses[(backend, "PASSED")] == n_encoders, run.text
    assert "(identity)" not in run.text and "usage error" not in run.text
    report = json.loads((pytester.path / "report.json").read_text())
    assert len(report["records"]) == n_items
    records = [r for r in report["records"] if r["backend"] != "skops"]
    assert all(r["kind"] == "passed" and "transform" in r["compared_methods"] for r in records)
    assert not any(r["state_differences"] for r in records)  # no pandas cache reported as lost
    # skops cannot store the pandas objects most encoders keep; it says which attributes
    skops = [r for r in report["records"] if r["backend"] == "skops"]
    refused = [r for r in skops if r["kind"] == "dump_error"]
    assert refused, json.dumps(skops)[:2000]
    for record in refused:
        assert "skops cannot save " in record["error"], record["error"]
        assert "no default __reduce__" in record["error"]
    assert any("mapping" in r["error"] for r in refused)
    print(f"category_encoders: {n_encoders} encoders; {Counter(r['kind'] for r in skops)} (skops)")


def test_pandas_caches_are_not_fitted_state():
    pd = pytest.importorskip("pandas")
    ce = pytest.importorskip("category_encoders")
    from pytest_persist import OutcomeKind, check_persistence

    rng = np.random.RandomState(0)
    X = pd.DataFrame({"colour": rng.choice(["red", "green", "blue"], 60)})
    y = (X["colour"] == "red").to_numpy().astype(float) + rng.normal(size=60)
    X.groupby("colour").size()  # fills the cache of the column's dtype
    for encoder in (ce.CatBoostEncoder(), ce.LeaveOneOutEncoder()):
        encoder.fit(X, y)
        for outcome in check_persistence(encoder, X, y, backends=["pickle", "cloudpickle"]):
            assert outcome.kind is OutcomeKind.PASSED, outcome.message()
            assert not outcome.state_differences


BOOSTERS = """
import lightgbm
import xgboost
from pytest_persist import parametrize_with_persistence

MODELS = [
    lightgbm.LGBMClassifier(n_estimators=10, verbose=-1),
    lightgbm.LGBMRegressor(n_estimators=10, verbose=-1),
    xgboost.XGBClassifier(n_estimators=10),
    xgboost.XGBRegressor(n_estimators=10),
]


@parametrize_with_persistence(MODELS, backends=["pickle", "skops", "onnx"])
def test_booster(estimator, check):
    outcome = check(estimator)
    assert "predict" in outcome.compared_methods
"""


def test_lightgbm_and_xgboost_release_checks(run_suite, pytester):
    needs("lightgbm", "xgboost", "onnxmltools")
    run = run_suite(BOOSTERS, "--persist-report=report.json", "-W", "ignore")
    assert len(run.statuses) == 12, run.text
    assert set(run.statuses.values()) == {"PASSED"}, run.text
    report = json.loads((pytester.path / "report.json").read_text())
    fitted_with_y = [r for r in report["records"] if "score" in r["compared_methods"]]
    assert len(fitted_with_y) == 8  # pickle and skops compare score: fitted with a target


CLUSTERS = """
import numpy as np
import pytest
import hdbscan

from pytest_persist import check_persistence

rng = np.random.RandomState(0)
X = np.vstack([rng.normal(centre, 0.3, size=(40, 2)) for centre in (0, 3, 6)])
FUNCTIONS = {
    "approximate_predict": hdbscan.approximate_predict,
    "membership_vector": hdbscan.membership_vector,
}


@pytest.mark.persist_roundtrip(backends=["pickle", "skops", "shifted"], functions=FUNCTIONS)
def test_functions(persist_roundtrip):
    persist_roundtrip(hdbscan.HDBSCAN(prediction_data=True).fit(X), X, state="ignore")


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_nothing_to_call(persist_roundtrip):
    persist_roundtrip(hdbscan.HDBSCAN().fit(X), X)
"""

SHIFTED = """
import pickle
from pytest_persist.backends import Backend


class Shifted(Backend):
    "Loads the clusterer with its exemplars moved: membership_vector must change."

    name = "shifted"

    def dump(self, estimator, path, call):
        path.write_bytes(pickle.dumps(estimator))

    def load(self, path, call):
        model = pickle.loads(path.read_bytes())
        data = model.prediction_data_
        data.exemplars = [exemplar + 1.0 for exemplar in data.exemplars]
        return model


def pytest_persist_add_backends(registry):
    registry.register(Shifted())
"""


def test_hdbscan_functions_of_the_model_are_compared(run_suite, pytester):
    needs("hdbscan")
    pytester.makeconftest(SHIFTED)
    run = run_suite(CLUSTERS, "--persist-report=report.json", "-W", "ignore")
    assert run.status("test_functions[pickle]") == "PASSED", run.text
    assert run.status("test_functions[skops]") == "PASSED", run.text
    assert run.status("test_functions[shifted]") == "FAILED"
    assert "membership_vector: values differ" in run.text
    report = json.loads((pytester.path / "report.json").read_text())
    by_backend = {r["backend"]: r for r in report["records"] if "test_functions" in r["test_id"]}
    assert by_backend["pickle"]["compared_methods"] == ["approximate_predict", "membership_vector"]
    assert by_backend["pickle"]["details"]["extra_calls"] == {
        "approximate_predict": "hdbscan.prediction.approximate_predict(model, X)",
        "membership_vector": "hdbscan.prediction.membership_vector(model, X)",
    }
    assert [d["method"] for d in by_backend["shifted"]["differences"]] == ["membership_vector"]
    # without them, a clusterer has nothing to call; the message says why, not "sampler"
    assert run.status("test_nothing_to_call[pickle]") == "PASSED"
    state_only = next(r for r in report["records"] if "test_nothing_to_call" in r["test_id"])
    message = state_only["details"]["state_only"]
    assert "HDBSCAN has no prediction method: fit_predict fits it again" in message
    assert "sampler" not in message and "fit_resample" not in message


INTERVALS = """
import numpy as np
import pytest
from mapie.regression import SplitConformalRegressor
from sklearn.linear_model import Ridge
from pytest_persist import parametrize_with_persistence

rng = np.random.RandomState(0)
X = rng.normal(size=(200, 3))
y = X @ np.array([1.0, 2.0, 3.0]) + rng.normal(size=200)


@pytest.mark.persist_roundtrip(
    backends=["pickle", "skops", "wider"],
    extra_methods={"predict_interval": {"allow_infinite_bounds": False}},
)
def test_intervals(persist_roundtrip):
    model = SplitConformalRegressor(Ridge(), prefit=False, confidence_level=0.9)
    model.fit(X[:100], y[:100]).conformalize(X[100:], y[100:])
    persist_roundtrip(model, X, y, state="ignore")


@parametrize_with_persistence([SplitConformalRegressor(Ridge(), prefit=False)], backends=["pickle"])
def test_release(estimator, check):
    check(estimator)
"""

WIDER = """
import pickle
from pytest_persist.backends import Backend


class Wider(Backend):
    "Loads the conformal regressor with its conformity scores scaled: intervals widen."

    name = "wider"

    def dump(self, estimator, path, call):
        path.write_bytes(pickle.dumps(estimator))

    def load(self, path, call):
        model = pickle.loads(path.read_bytes())
        model._mapie_regressor.conformity_scores_ = model._mapie_regressor.conformity_scores_ * 1.5
        return model


def pytest_persist_add_backends(registry):
    registry.register(Wider())
"""


def test_mapie_extra_methods_and_an_object_that_is_no_estimator(run_suite, pytester):
    needs("mapie")
    pytester.makeconftest(WIDER)
    run = run_suite(INTERVALS, "--persist-report=report.json", "-W", "ignore")
    assert run.status("test_intervals[pickle]") == "PASSED", run.text
    assert run.status("test_intervals[skops]") == "PASSED", run.text
    assert run.status("test_intervals[wider]") == "FAILED"
    report = json.loads((pytester.path / "report.json").read_text())
    by_backend = {r["backend"]: r for r in report["records"] if "test_intervals" in r["test_id"]}
    assert by_backend["pickle"]["compared_methods"] == ["predict", "predict_interval"]
    assert by_backend["pickle"]["details"]["extra_calls"] == {
        "predict_interval": "predict_interval(X, allow_infinite_bounds=False)"
    }
    assert {d["method"] for d in by_backend["wider"]["differences"]} == {"predict_interval"}
    # MAPIE 1.x's regressors have fit but no get_params: a usage error saying so, a readable id
    assert run.status("test_release[SplitConformalRegressor-pickle]") == "FAILED", run.text
    assert (
        "usage error: SplitConformalRegressor is not a scikit-learn estimator: it has fit but "
        "no get_params"
    ) in run.text
    assert "Traceback" not in run.text and "object>" not in run.text
    release = next(r for r in report["records"] if "test_release" in r["test_id"])
    assert (release["kind"], release["estimator"]) == ("usage_error", "SplitConformalRegressor")
