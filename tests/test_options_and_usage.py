"""Options, the fixture without the marker, the backend hook, and bad input."""

from __future__ import annotations

ESTIMATOR_SUITE = """
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


@pytest.fixture
def fitted():
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(X, y), X, y


@pytest.mark.persist_roundtrip
def test_marked(persist_roundtrip, fitted):
    model, X, y = fitted
    persist_roundtrip(model, X, y)
"""


def test_persist_backends_option_and_ini_choose_the_set(run_suite):
    run = run_suite(ESTIMATOR_SUITE, "--persist-backends", "pickle,cloudpickle")
    assert set(run.statuses) == {"test_marked[pickle]", "test_marked[cloudpickle]"}

    run = run_suite(ESTIMATOR_SUITE, ini="[pytest]\npersist_backends = joblib joblib-mmap\n")
    assert set(run.statuses) == {"test_marked[joblib]", "test_marked[joblib-mmap]"}

    # the command line wins over the ini
    run = run_suite(ESTIMATOR_SUITE, "--persist-backends=pickle")
    assert set(run.statuses) == {"test_marked[pickle]"}


def test_a_test_whose_backends_are_all_disabled_says_why(run_suite):
    run = run_suite(
        ESTIMATOR_SUITE.replace("persist_roundtrip\n", "persist_roundtrip(backends=['skops'])\n"),
        "--persist-backends=pickle,joblib",
    )
    assert run.status("test_marked[no-backend]") == "SKIPPED"
    assert "none of the backends this test asks for (skops) is enabled in this session" in (
        run.text
    )


def test_unknown_backend_option_is_a_usage_error(run_suite):
    run = run_suite(ESTIMATOR_SUITE, "--persist-backends", "pickle,hdf5")
    assert run.result.ret == 4  # pytest.ExitCode.USAGE_ERROR
    run.result.stderr.fnmatch_lines(["*persist_backends*unknown persistence backend(s) 'hdf5'*"])


def test_plugin_can_be_disabled(run_suite):
    run = run_suite(ESTIMATOR_SUITE, "-p", "no:persist")
    assert "fixture 'persist_roundtrip' not found" in run.text


def test_fixture_without_marker_runs_every_backend_as_subtests(run_suite):
    run = run_suite(
        """
        from sklearn.datasets import load_iris
        from sklearn.preprocessing import FunctionTransformer

        def test_unmarked(persist_roundtrip):
            X, _ = load_iris(return_X_y=True)
            loaded = persist_roundtrip(FunctionTransformer(lambda a: a - 1).fit(X), X)
            assert sorted(loaded) == ["cloudpickle"]
        """
    )
    assert run.result.ret == 1
    for backend in ["pickle", "joblib", "joblib-mmap", "joblib-compressed"]:
        assert f"SUBFAILED[persist[{backend}]] test_suite.py::test_unmarked" in run.text
    assert "FunctionTransformer via joblib-compressed: dump_error" in run.text


HOOK_CONFTEST = """
import pickle
from pytest_persist.backends import Backend, UnsupportedEstimator


class Protocol4(Backend):
    name = "pickle-4"
    suffix = ".p4"

    def dump(self, estimator, path, call):
        if type(estimator).__name__ == "LogisticRegression" and call.options.get("refuse"):
            raise UnsupportedEstimator("no")
        path.write_bytes(pickle.dumps(estimator, protocol=4))

    def load(self, path, call):
        return pickle.loads(path.read_bytes())


class RefusesLinearModels(Protocol4):
    name = "no-linear"

    def dump(self, estimator, path, call):
        raise UnsupportedEstimator(f"{type(estimator).__name__} has no converter here")


class NeedsMissingLibrary(Protocol4):
    name = "hdf5-store"
    modules = ("a_library_that_is_not_installed",)
    install_hint = "pip install a-library-that-is-not-installed"


def pytest_persist_add_backends(registry):
    registry.register(Protocol4())
    registry.register(RefusesLinearModels())
    registry.register(NeedsMissingLibrary())
"""


def test_backend_hook_unsupported_and_unavailable(run_suite, pytester):
    pytester.makeconftest(HOOK_CONFTEST)
    run = run_suite(ESTIMATOR_SUITE)
    assert run.status("test_marked[pickle-4]") == "PASSED"
    assert run.status("test_marked[no-linear]") == "SKIPPED"
    assert run.status("test_marked[hdf5-store]") == "SKIPPED"
    assert "no-linear cannot persist LogisticRegression: LogisticRegression has no converter" in (
        run.text
    )
    assert "a_library_that_is_not_installed not installed: pip install a-library" in run.text

    strict = run_suite(ESTIMATOR_SUITE, "--persist-strict", "--persist-backends=no-linear")
    assert strict.status("test_marked[no-linear]") == "FAILED"
    assert "LogisticRegression via no-linear: unsupported" in strict.text


USAGE_SUITE = """
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier


@pytest.fixture
def iris():
    return load_iris(return_X_y=True)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_not_fitted(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(RandomForestClassifier(), X, y)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_wrong_shape(persist_roundtrip, iris):
    X, y = iris
    model = RandomForestClassifier(n_estimators=3).fit(X, y)
    persist_roundtrip(model, X[:, :2], y)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_wrong_type(persist_roundtrip, iris):
    X, y = iris
    model = RandomForestClassifier(n_estimators=3).fit(X, y)
    persist_roundtrip(model, "not data")


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_not_an_estimator(persist_roundtrip, iris):
    X, _ = iris
    persist_roundtrip(np.linalg, X)


@pytest.mark.persist_roundtrip(backends=["pickle"], methods=["predict", "transform"])
def test_method_it_lacks(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(RandomForestClassifier(n_estimators=3).fit(X, y), X, y)


@pytest.mark.persist_roundtrip(rtol="tight")
def test_bad_tolerance(persist_roundtrip):
    pass


@pytest.mark.persist_roundtrip(backends=["pikle"])
def test_misspelt_backend(persist_roundtrip):
    pass


@pytest.mark.persist_roundtrip(tolerance=1e-3)
def test_unknown_keyword(persist_roundtrip):
    pass


@pytest.mark.persist_roundtrip
def test_forgot_fixture():
    pass


def test_healthy_neighbour():
    assert True
"""


def test_bad_input_gets_a_clear_message_naming_the_estimator(run_suite):
    run = run_suite(USAGE_SUITE)
    text = run.text
    assert run.status("test_healthy_neighbour") == "PASSED"
    assert run.status("test_not_fitted[pickle]") == "FAILED"
    assert "RandomForestClassifier is not fitted: call RandomForestClassifier.fit(...)" in text
    assert "X has 2 features but RandomForestClassifier was fitted on 4" in text
    assert "X for RandomForestClassifier must be array-like" in text
    assert "module is not a scikit-learn estimator" in text
    assert "RandomForestClassifier has no method transform" in text
    assert "rtol must be a non-negative number, got 'tight'" in text
    assert "unknown persistence backend(s) 'pikle'" in text
    assert "unknown keyword(s) tolerance" in text
    assert "the test must request the persist_roundtrip fixture" in text
    for test in ["test_bad_tolerance", "test_misspelt_backend", "test_unknown_keyword"]:
        assert run.status(f"{test}[usage-error]") == "ERROR"
    assert "Traceback" not in text


def test_state_warn_reports_without_failing(run_suite):
    run = run_suite(
        """
        import numpy as np
        import pytest
        from sklearn.base import BaseEstimator, TransformerMixin

        class Forgetful(TransformerMixin, BaseEstimator):
            def fit(self, X, y=None):
                self.scale_ = X.std(axis=0)
                self.cache_ = {"seen": len(X)}
                return self

            def transform(self, X):
                return X / self.scale_

            def __getstate__(self):
                state = dict(super().__getstate__())
                del state["cache_"]
                return state

        @pytest.mark.persist_roundtrip(backends=["pickle"], state="warn")
        def test_forgetful(persist_roundtrip):
            X = np.arange(20.0).reshape(10, 2)
            persist_roundtrip(Forgetful().fit(X), X)
        """
    )
    assert run.status("test_forgetful[pickle]") == "PASSED"
    assert "PersistStateWarning: Forgetful via pickle: fitted state differs after loading" in (
        run.text
    )
    assert "cache_: missing after loading" in run.text


def test_xfail_records_known_failures_per_backend_strictly(run_suite):
    run = run_suite(
        """
        import pytest
        from sklearn.datasets import load_iris
        from sklearn.svm import SVC

        pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

        @pytest.mark.persist_roundtrip(
            backends=["joblib", "joblib-mmap"],
            xfail={"joblib-mmap": "libsvm needs writable buffers"},
        )
        def test_svc(persist_roundtrip):
            X, y = load_iris(return_X_y=True)
            persist_roundtrip(SVC(probability=True, random_state=0).fit(X, y), X, y)

        @pytest.mark.persist_roundtrip(backends=["joblib"], xfail={"joblib": "thought broken"})
        def test_fixed_since(persist_roundtrip):
            X, y = load_iris(return_X_y=True)
            persist_roundtrip(SVC(random_state=0).fit(X, y), X, y)

        @pytest.mark.persist_roundtrip(xfail={"joblib-nmap": "typo"})
        def test_typo(persist_roundtrip):
            pass
        """
    )
    assert run.status("test_svc[joblib]") == "PASSED"
    assert run.status("test_svc[joblib-mmap]") == "XFAIL"
    assert "buffer source array is read-only" in run.text or "libsvm needs writable" in run.text
    assert run.status("test_fixed_since[joblib]") == "FAILED"
    assert "[XPASS(strict)] thought broken" in run.text
    assert run.status("test_typo[usage-error]") == "ERROR"
    assert "unknown persistence backend(s) 'joblib-nmap'" in run.text


def test_runs_the_same_under_xdist(run_suite):
    suite = """
        import pytest
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import FunctionTransformer
        from pytest_persist import parametrize_with_persistence

        @pytest.mark.persist_roundtrip(backends=["pickle", "joblib", "cloudpickle"])
        def test_marked(persist_roundtrip):
            X, y = load_iris(return_X_y=True)
            persist_roundtrip(LogisticRegression(max_iter=500).fit(X, y), X, y)

        @parametrize_with_persistence(
            [FunctionTransformer(func=lambda a: a * 3)], backends=["cloudpickle", "joblib"]
        )
        def test_checked(estimator, check):
            check(estimator)
        """
    serial = run_suite(suite)
    parallel = run_suite(suite, "-n", "2")
    assert parallel.result.ret == serial.result.ret == 1  # joblib cannot carry the lambda
    serial.result.assert_outcomes(passed=4, failed=1)
    parallel.result.assert_outcomes(passed=4, failed=1)
    assert "Different tests were collected" not in parallel.text
