"""parametrize_with_persistence as estimator authors meet it (through pytester, in a
subprocess): the session's backends, reports and store, known failures, samplers, state-only
passes, the summary table, bad input and load-error hints."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from pytest_persist import PersistUsageError, check_persistence
from pytest_persist.store.entries import iter_entries

CONFTEST = """
import pickle
from pytest_persist.backends import Backend


class Protocol4(Backend):
    name = "pickle-4"

    def dump(self, estimator, path, call):
        path.write_bytes(pickle.dumps(estimator, protocol=4))

    def load(self, path, call):
        return pickle.loads(path.read_bytes())


def pytest_persist_add_backends(registry):
    registry.register(Protocol4())
"""

SUITE = """
import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted
from pytest_persist import parametrize_with_persistence


class MeanRegressor(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        check_is_fitted(self)
        return np.full(len(X), self.mean_)


class Memo(BaseEstimator):
    "Fits, and has nothing to call afterwards."

    def fit(self, X, y=None):
        self.seen_ = np.asarray(X).shape
        return self


@parametrize_with_persistence([Ridge(alpha=2.0)], exclude=["joblib-compressed"])
def test_ridge(estimator, check):
    outcome = check(estimator)
    assert outcome.compared_methods


@parametrize_with_persistence(
    [MeanRegressor()], backends=["pickle", "onnx"], expected_failed={"onnx": "no converter"}
)
def test_mean(estimator, check):
    check(estimator)


@parametrize_with_persistence([Memo()], backends=["pickle"])
def test_memo(estimator, check):
    check(estimator)
"""


def _ids(run, test: str) -> dict[str, str]:
    return {k: v for k, v in run.statuses.items() if k.startswith(test + "[")}


def test_session_backends_hooks_reports_store_and_known_failures(run_suite, pytester):
    pytester.makeconftest(CONFTEST)
    run = run_suite(
        SUITE,
        "--persist-backends=pickle,joblib-compressed,pickle-4,onnx",
        "--persist-report=report.json",
        "--persist-report-md=report.md",
        "--persist-save=store",
    )
    # the command line chose 4 backends; the hook added pickle-4; exclude= took one away
    assert _ids(run, "test_ridge") == {
        "test_ridge[Ridge(alpha=2.0)-pickle]": "PASSED",
        "test_ridge[Ridge(alpha=2.0)-pickle-4]": "PASSED",
        "test_ridge[Ridge(alpha=2.0)-onnx]": "PASSED",
    }, run.text
    # no converter, and expected: XFAIL, not SKIPPED
    assert run.status("test_mean[MeanRegressor()-onnx]") == "XFAIL", run.text
    assert "no converter (onnx cannot persist MeanRegressor" in run.text
    assert run.status("test_mean[MeanRegressor()-pickle]") == "PASSED"
    # a pass that compared nothing says so
    assert run.status("test_memo[Memo()-pickle]") == "PASSED"
    assert "PersistStateOnlyWarning: Memo via pickle: passed (state only)" in run.text
    assert "Memo (test_memo[Memo()])" in run.text and "passed (state only)" in run.text

    report = json.loads((pytester.path / "report.json").read_text())
    recorded = sorted((r["test_id"].split("::")[1], r["kind"]) for r in report["records"])
    assert recorded == [
        ("test_mean[MeanRegressor()-onnx]", "unsupported"),
        ("test_mean[MeanRegressor()-pickle]", "passed"),
        ("test_memo[Memo()-pickle]", "passed"),
        ("test_ridge[Ridge(alpha=2.0)-onnx]", "passed"),
        ("test_ridge[Ridge(alpha=2.0)-pickle-4]", "passed"),
        ("test_ridge[Ridge(alpha=2.0)-pickle]", "passed"),
    ]
    memo = next(r for r in report["records"] if r["estimator"] == "Memo")
    assert memo["details"]["state_only"].startswith("state only: no method compared")
    markdown = (pytester.path / "report.md").read_text()
    assert "| estimator (test) | pickle | onnx | pickle-4 |" in markdown  # registry order
    assert (
        "| Ridge (test_ridge[Ridge(alpha=2.0)]) | ✅ passed | ✅ passed | ✅ passed |" in markdown
    )
    saved = sorted(
        (e.test_id.split("::")[1], e.backend) for e in iter_entries(pytester.path / "store")
    )
    assert saved == [
        ("test_mean[MeanRegressor()-pickle]", "pickle"),
        ("test_memo[Memo()-pickle]", "pickle"),
        ("test_ridge[Ridge(alpha=2.0)-onnx]", "onnx"),
        ("test_ridge[Ridge(alpha=2.0)-pickle-4]", "pickle-4"),
        ("test_ridge[Ridge(alpha=2.0)-pickle]", "pickle"),
    ]


def test_ini_backends_strict_and_the_plugin_turned_off(run_suite):
    ini = "[pytest]\npersist_backends = joblib onnx\n"
    run = run_suite(SUITE, "--persist-strict", ini=ini)
    assert sorted(run.statuses) == [
        "test_mean[MeanRegressor()-onnx]",
        "test_memo[no-backend]",
        "test_ridge[Ridge(alpha=2.0)-joblib]",
        "test_ridge[Ridge(alpha=2.0)-onnx]",
    ], run.text  # test_memo asks for pickle only, which the ini does not enable
    assert run.status("test_mean[MeanRegressor()-onnx]") == "XFAIL"  # known, strict or not
    assert "test_memo[no-backend] SKIPPED" in run.text
    assert "none of the backends this test asks for (pickle) is enabled" in run.text

    strict = run_suite(SUITE, "--persist-strict", "--persist-backends=pickle", "-k", "memo")
    assert strict.status("test_memo[Memo()-pickle]") == "FAILED", strict.text
    assert "--persist-strict: a pass that compared no method fails" in strict.text

    off = run_suite(SUITE, "-p", "no:persist")
    off.result.assert_outcomes(skipped=3)
    assert "needs the pytest-persist plugin, which is disabled (-p no:persist)" in off.text


def test_usage_errors_fail_their_test_alone(run_suite):
    run = run_suite(
        """
        from sklearn.linear_model import Ridge
        from pytest_persist import parametrize_with_persistence

        @parametrize_with_persistence([Ridge()], backends=["pickle"], rtol="tight")
        def test_rtol(estimator, check):
            check(estimator)

        @parametrize_with_persistence([Ridge()], expected_failed=lambda e: {"onxx": "typo"})
        def test_typo(estimator, check):
            check(estimator)

        @parametrize_with_persistence([Ridge()], backends=["pickle"])
        def test_fine(estimator, check):
            check(estimator)
        """
    )
    assert run.status("test_rtol[usage-error]") == "FAILED"
    assert "rtol must be a non-negative number, got 'tight'" in run.text
    assert run.status("test_typo[usage-error]") == "FAILED"
    assert "unknown persistence backend(s) 'onxx'" in run.text
    assert run.status("test_fine[Ridge()-pickle]") == "PASSED"


SAMPLERS = """
import pytest
from imblearn.over_sampling import SMOTE
from imblearn.under_sampling import RandomUnderSampler
from pytest_persist import parametrize_with_persistence


@parametrize_with_persistence([SMOTE(random_state=0), RandomUnderSampler()], backends=["pickle"])
def test_sampler(estimator, check):
    outcome = check(estimator)
    print(f"{outcome.estimator}: compared {outcome.compared_methods}")
"""


def test_samplers_compare_fit_resample_or_say_state_only(run_suite):
    pytest.importorskip("imblearn")
    run = run_suite(SAMPLERS)
    assert run.status("test_sampler[SMOTE(random_state=0)-pickle]") == "PASSED", run.text
    assert "SMOTE: compared ['fit_resample']" in run.text
    # random_state=None: fit_resample differs between two calls of the original
    assert run.status("test_sampler[RandomUnderSampler()-pickle]") == "PASSED"
    assert "RandomUnderSampler: compared []" in run.text
    assert "RandomUnderSampler via pickle: passed (state only)" in run.text
    assert "fit_resample: nondeterministic" in run.text
    strict = run_suite(SAMPLERS, "--persist-strict")
    assert strict.status("test_sampler[SMOTE(random_state=0)-pickle]") == "PASSED"
    assert strict.status("test_sampler[RandomUnderSampler()-pickle]") == "FAILED"


def test_a_loaded_sampler_that_resamples_differently_is_a_mismatch(tmp_path):
    imblearn = pytest.importorskip("imblearn.over_sampling")
    from pytest_persist.backends import Backend, BackendRegistry

    class Forgetful(Backend):  # loses the random_state on the way: resampling changes
        name = "forgetful"

        def dump(self, estimator, path, call):
            import pickle

            path.write_bytes(pickle.dumps(estimator))

        def load(self, path, call):
            import pickle

            return pickle.loads(path.read_bytes()).set_params(random_state=1)

    X, y = load_iris(return_X_y=True)
    X, y = X[:120], y[:120]  # classes 0 and 1 balanced, 2 under-represented
    smote = imblearn.SMOTE(random_state=0).fit(X, y)
    [outcome] = check_persistence(
        smote, X, y, registry=BackendRegistry([Forgetful()]), state="ignore"
    )
    assert outcome.kind.value == "mismatch", outcome.message()
    assert outcome.differences[0].method == "fit_resample"


def test_y_that_does_not_match_x_is_a_usage_error(run_suite):
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with pytest.raises(PersistUsageError, match="y has 10 rows but X has 150 for LogisticRegr"):
        check_persistence(model, X, y[:10], backends=["pickle"])
    run = run_suite(
        """
        import pytest
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        @pytest.mark.persist_roundtrip(backends=["pickle"])
        def test_short_y(persist_roundtrip):
            X, y = load_iris(return_X_y=True)
            persist_roundtrip(LogisticRegression(max_iter=500).fit(X, y), X, y[:10])
        """
    )
    assert run.status("test_short_y[pickle]") == "FAILED"
    assert "usage error: y has 10 rows but X has 150 for LogisticRegression" in run.text


TWO_FILES = """
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier


@pytest.mark.persist_roundtrip(backends=["cloudpickle", "pickle", "joblib"])
def test_model(persist_roundtrip):
    X, y = load_iris(return_X_y=True)
    persist_roundtrip(MODEL, X, y)
"""


def _summary(run) -> list[str]:
    lines = run.text.splitlines()
    start = next(i for i, line in enumerate(lines) if "pytest-persist" in line and "==" in line)
    end = next(i for i, line in enumerate(lines[start:], start) if "short test summary" in line)
    return lines[start + 1 : end]


def test_summary_rows_are_per_file_and_columns_in_registry_order(run_suite, pytester):
    tree = "MODEL = DecisionTreeClassifier(random_state=0).fit(*load_iris(return_X_y=True))\n"
    lam = "MODEL = FunctionTransformer(func=lambda a: a + 1)\n"
    pytester.path.joinpath("test_b.py").write_text(textwrap.dedent(TWO_FILES) + tree)
    serial = run_suite(TWO_FILES + lam, name="test_a.py")
    parallel = run_suite(TWO_FILES + lam, "-n", "2", name="test_a.py")
    table = _summary(serial)
    assert table == _summary(parallel), parallel.text
    header = next(line for line in table if "estimator (test)" in line)
    assert re.search(r"pickle\s+joblib\s+cloudpickle$", header), table  # registry order
    rows = [line.split()[:2] for line in table if "(test_model)" in line]
    # sorted by file (test_a.py, test_b.py), whichever finished first
    assert rows == [
        ["FunctionTransformer", "(test_model)"],
        ["DecisionTreeClassifier", "(test_model)"],
    ]
    assert any("dump_error" in line and "FunctionTransformer" in line for line in table)
    assert any(line.count("passed") == 3 for line in table if "DecisionTree" in line)


def test_same_test_name_in_two_files_is_two_rows(run_suite, pytester):
    same = TWO_FILES + "MODEL = FunctionTransformer(func=lambda a: a + 1)\n"
    pytester.path.joinpath("test_b.py").write_text(textwrap.dedent(same))
    run = run_suite(same, name="test_a.py")
    table = _summary(run)
    rows = [line for line in table if "FunctionTransformer" in line]
    assert len(rows) == 2, table
    assert "FunctionTransformer (test_a.py::test_model)" in rows[0]
    assert "FunctionTransformer (test_b.py::test_model)" in rows[1]
    assert all(re.search(r"dump_error\s+dump_error\s+passed$", row) for row in rows), rows


def test_hints_for_a_test_module_class_and_a_skops_lambda(run_suite, pytester, monkeypatch):
    run = run_suite(
        SUITE
        + """

@pytest.mark.persist_roundtrip(backends=["skops"])
def test_lambda(persist_roundtrip):
    from sklearn.preprocessing import FunctionTransformer

    X = np.ones((4, 2))
    persist_roundtrip(FunctionTransformer(func=lambda a: a + 1).fit(X), X)
""",
        "--persist-backends=pickle,skops",
        "--persist-save=store",
        "-k",
        "mean or lambda",
    )
    assert run.status("test_lambda[skops]") == "FAILED"
    assert "module 'test_suite' has no attribute '<lambda>'" in run.text
    assert "hint: skops stores a function by module and name, so it cannot store the lambda" in (
        run.text
    )
    assert "the cloudpickle backend can" in run.text
    elsewhere = pytester.path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a session that cannot import test_suite
    check = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--persist-load={pytester.path / 'store'}"
    )
    text = check.stdout.str()
    assert "No module named 'test_suite'" in text, text
    assert "hint: MeanRegressor's class lives in the test module 'test_suite', which the " in text
    assert "cloudpickle.register_pickle_by_value(test_suite)" in text
