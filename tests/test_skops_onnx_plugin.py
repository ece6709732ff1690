"""skops trust audit, ONNX through the plugin, converter and backend hooks, and
parametrize_with_persistence, as users meet them through pytester."""

from __future__ import annotations

TRUST_SUITE = """
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier


@pytest.fixture
def forest():
    X, y = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), X, y


@pytest.mark.persist_roundtrip(backends=["skops"])
def test_reported_not_enforced(persist_roundtrip, forest):
    persist_roundtrip(*forest)


@pytest.mark.persist_roundtrip(backends=["skops"], trusted=[])
def test_nothing_trusted(persist_roundtrip, forest):
    persist_roundtrip(*forest)


@pytest.mark.persist_roundtrip(backends=["skops"], trusted=["sklearn.tree._tree.Tree"])
def test_tree_trusted(persist_roundtrip, forest):
    persist_roundtrip(*forest)
"""


def test_skops_trust_audit_names_every_type_users_must_grant(run_suite):
    run = run_suite(TRUST_SUITE)
    assert run.status("test_reported_not_enforced[skops]") == "PASSED"
    assert run.status("test_tree_trusted[skops]") == "PASSED"
    assert run.status("test_nothing_trusted[skops]") == "FAILED"
    assert "RandomForestClassifier via skops: load_error" in run.text
    assert "skops needs 1 type(s) the trusted= allowlist does not grant" in run.text
    assert "  - sklearn.tree._tree.Tree" in run.text

    # a session-wide allowlist from the command line; the marker's own trusted= wins
    run = run_suite(TRUST_SUITE, "--persist-trusted", "numpy.float64")
    assert run.status("test_reported_not_enforced[skops]") == "FAILED"
    assert run.status("test_tree_trusted[skops]") == "PASSED"


ONNX_SUITE = """
import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression


class LinearScore(RegressorMixin, BaseEstimator):
    \"\"\"A third-party estimator skl2onnx knows nothing about.\"\"\"

    def fit(self, X, y):
        design = np.c_[X, np.ones(len(X))]
        solution = np.linalg.lstsq(design, y, rcond=None)[0]
        self.coef_, self.intercept_ = solution[:-1], float(solution[-1])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return np.asarray(X) @ self.coef_ + self.intercept_


def boundary_rows():
    \"\"\"Rows a hair's breadth from a logistic regression's decision boundary.\"\"\"
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 4))
    y = (X @ [1.0, -2.0, 0.5, 1.5] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    w, b = clf.coef_[0], clf.intercept_[0]
    base = rng.normal(size=(20, 4))
    offsets = np.where(np.arange(20) % 2, 1e-9, -1e-9)
    boundary = base - ((base @ w + b - offsets) / (w @ w))[:, None] * w
    return clf, np.vstack([X, boundary])


@pytest.mark.persist_roundtrip(backends=["onnx"], rtol=1e-3)
def test_third_party_regressor(persist_roundtrip):
    X, y = load_diabetes(return_X_y=True)
    persist_roundtrip(LinearScore().fit(X, y), X)


@pytest.mark.persist_roundtrip(backends=["onnx"])
def test_labels_flip_under_float32(persist_roundtrip):
    clf, X = boundary_rows()
    persist_roundtrip(clf, X)


@pytest.mark.persist_roundtrip(backends=["onnx"], max_label_flips=0.1)
def test_labels_flip_under_a_cap(persist_roundtrip):
    clf, X = boundary_rows()
    persist_roundtrip(clf, X)
"""

CONVERTER_CONFTEST = """
def _shape(operator):
    from skl2onnx.common.data_types import FloatTensorType

    operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension(), 1])


def _convert(scope, operator, container):
    import numpy as np
    from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxMatMul

    model = operator.raw_operator
    opset = container.target_opset
    coef = model.coef_.astype(np.float32).reshape(-1, 1)
    product = OnnxMatMul(operator.inputs[0], coef, op_version=opset)
    total = OnnxAdd(product, np.array([model.intercept_], dtype=np.float32), op_version=opset,
                    output_names=operator.outputs[:1])
    total.add_to(scope, container)


def pytest_persist_register_onnx_converters(register):
    from test_suite import LinearScore

    register(LinearScore, "TestSuiteLinearScore", _shape, _convert)
"""


def test_onnx_unsupported_strict_flips_and_converter_hook(run_suite, pytester):
    run = run_suite(ONNX_SUITE)
    assert run.status("test_third_party_regressor[onnx]") == "SKIPPED"
    assert "onnx cannot persist LinearScore: skl2onnx cannot convert LinearScore" in run.text
    assert "MissingShapeCalculator" in run.text
    assert run.status("test_labels_flip_under_float32[onnx]") == "FAILED"
    assert "of labels differ; first at index 2" in run.text
    assert run.status("test_labels_flip_under_a_cap[onnx]") == "PASSED"

    strict = run_suite(ONNX_SUITE, "--persist-strict", "-k", "third_party")
    assert strict.status("test_third_party_regressor[onnx]") == "FAILED"
    assert "LinearScore via onnx: unsupported" in strict.text

    pytester.makeconftest(CONVERTER_CONFTEST)
    hooked = run_suite(ONNX_SUITE, "-k", "third_party")
    assert hooked.status("test_third_party_regressor[onnx]") == "PASSED", hooked.text


def test_parametrize_with_persistence_ids_data_and_expected_failures(run_suite):
    run = run_suite(
        """
        import numpy as np
        import pytest
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import FunctionTransformer
        from pytest_persist import parametrize_with_persistence


        def square(a):
            return a * a


        ESTIMATORS = [Ridge(alpha=2.0), FunctionTransformer(func=lambda a: a + 1)]


        def expected_failed(estimator):
            if isinstance(estimator, FunctionTransformer):
                reason = "a lambda does not pickle by reference"
                return {"pickle": reason, "joblib": reason, "skops": "skops refuses lambdas"}
            return {"cloudpickle": "wrongly expected to fail"}


        @parametrize_with_persistence(
            ESTIMATORS,
            backends=["pickle", "joblib", "cloudpickle", "skops", "onnx"],
            expected_failed=expected_failed,
        )
        def test_persistence(estimator, check):
            outcome = check(estimator)
            assert outcome.compared_methods
        """
    )
    assert run.status("test_persistence[Ridge(alpha=2.0)-pickle]") == "PASSED"
    assert run.status("test_persistence[Ridge(alpha=2.0)-onnx]") == "PASSED"
    # a wrong expectation is caught (strict xfail)
    assert run.status("test_persistence[Ridge(alpha=2.0)-cloudpickle]") == "FAILED"
    lambda_id = "FunctionTransformer(func=<function<lambda>>)"  # no address: stable for xdist
    assert run.status(f"test_persistence[{lambda_id}-pickle]") == "XFAIL"
    assert run.status(f"test_persistence[{lambda_id}-joblib]") == "XFAIL"
    assert run.status(f"test_persistence[{lambda_id}-cloudpickle]") == "PASSED"
    assert run.status(f"test_persistence[{lambda_id}-onnx]") == "SKIPPED"
    assert run.status(f"test_persistence[{lambda_id}-skops]") == "XFAIL"


def test_session_options_and_ini_for_flips_strict_and_trust(run_suite):
    flips = run_suite(ONNX_SUITE, "-k", "flip_under_float32", "--persist-max-label-flips=0.1")
    assert flips.status("test_labels_flip_under_float32[onnx]") == "PASSED"
    flips_ini = run_suite(
        ONNX_SUITE, "-k", "flip_under_float32", ini="[pytest]\npersist_max_label_flips = 0.1\n"
    )
    assert flips_ini.status("test_labels_flip_under_float32[onnx]") == "PASSED"
    strict_ini = run_suite(ONNX_SUITE, "-k", "third_party", ini="[pytest]\npersist_strict = true\n")
    assert strict_ini.status("test_third_party_regressor[onnx]") == "FAILED"
    trusted_ini = run_suite(
        TRUST_SUITE, "-k", "reported", ini="[pytest]\npersist_trusted = numpy.float64\n"
    )
    assert trusted_ini.status("test_reported_not_enforced[skops]") == "FAILED"
    assert "  - sklearn.tree._tree.Tree" in trusted_ini.text


def test_bad_option_values_are_usage_errors(run_suite):
    for ini, words in [
        ("persist_max_label_flips = many", "persist_max_label_flips must be a number"),
        ("persist_max_label_flips = 2", "max_label_flips is a fraction between 0 and 1"),
        ("persist_load_timeout = soon", "persist_load_timeout='soon': a positive, finite"),
    ]:
        run = run_suite(TRUST_SUITE, ini=f"[pytest]\n{ini}\n")
        assert run.result.ret == 4, run.text  # pytest.ExitCode.USAGE_ERROR
        assert words in run.result.stderr.str()


def test_call_keywords_that_choose_items_belong_on_the_marker(run_suite):
    run = run_suite(
        TRUST_SUITE.replace(
            "persist_roundtrip(*forest)", "persist_roundtrip(*forest, backends=['pickle'])"
        )
    )
    assert run.status("test_reported_not_enforced[skops]") == "FAILED"
    assert "backends choose the test's items, so they belong on @pytest.mark.persist_roundtrip" in (
        run.text
    )
