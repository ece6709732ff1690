"""The loaders behind ``--persist-load``, as users meet them: pytester runs over real stores of
real models, with artifacts that crash, hang, allocate without bound, leak globals or read the
environment (each one's misbehaviour is part of its pickled state)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from store_helpers import store_model

from pytest_persist.backends import BackendRegistry
from pytest_persist.isolation.check import store_preload
from pytest_persist.isolation.loader import (
    BASE_PRELOAD,
    CORE_PRELOAD,
    DEFAULT_MAX_MEMORY,
    SKLEARN_SUBPACKAGES,
    ForkLoader,
    clean_environment,
    format_size,
    parse_size,
)

FAULTY = textwrap.dedent(
    """
    import ctypes, gc, json, os, resource, sys, time, warnings
    import numpy as np


    def wait_for(path, seconds=120):
        '''Until ``path`` exists (another child wrote it), or ``seconds`` have passed.'''
        deadline = time.monotonic() + seconds
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)


    class Faulty:
        '''A model whose loading (or predict) does what its ``mode`` says.'''

        def __init__(self, mode="", path="", after=""):
            self.mode, self.path, self.after = mode, path, after

        def fit(self, X, y=None):
            return self

        def get_params(self, deep=True):
            return {}

        def predict(self, X):
            if self.mode == "predict-abort" and getattr(self, "loaded_", False):
                os.abort()
            if self.mode == "drift" and self.path and getattr(self, "loaded_", False):
                wait_for(self.path)  # until the check after this one is loading
            if self.mode == "drift" and getattr(self, "loaded_", False):
                return np.asarray(X).sum(axis=1) + 1
            return np.asarray(X).sum(axis=1)

        def __setstate__(self, state):
            self.__dict__.update(state)
            self.loaded_ = True
            mode = self.mode
            if mode == "abort":
                os.abort()
            if mode == "segfault":
                ctypes.string_at(0)
            if mode == "hang":
                time.sleep(3600)
            if mode == "hog":
                blocks = []
                while True:
                    blocks.append(np.ones(64 * 1024**2, dtype=np.uint8))
            if mode == "leak":
                import sklearn
                sklearn.LEAKED_BY_AN_ARTIFACT = True
                warnings.simplefilter("error")
                np.set_printoptions(precision=2)
                os.environ["LEAKED_VARIABLE"] = "1"
                gc.disable()
            if mode in ("leak", "record"):
                import sklearn
                if self.after:
                    wait_for(self.after)  # until the artifact it is to follow wrote
                seen = {
                    "module_attribute": hasattr(sklearn, "LEAKED_BY_AN_ARTIFACT"),
                    "first_warning_filter": str(warnings.filters[0][0]) if warnings.filters else "",
                    "n_warning_filters": len(warnings.filters),
                    "numpy_precision": np.get_printoptions()["precision"],
                    "environment_variable": os.environ.get("LEAKED_VARIABLE"),
                    "garbage_collector": gc.isenabled(),
                    "server_pid": os.getppid(),
                }
                with open(self.path, "a") as handle:
                    handle.write(json.dumps(seen) + "\\n")
            if mode == "interval":  # when this child ran, to see two checks overlap
                with open(self.path, "a") as handle:
                    handle.write(json.dumps({"start": time.time()}) + "\\n")
                time.sleep(3)
                with open(self.path, "a") as handle:
                    handle.write(json.dumps({"end": time.time()}) + "\\n")
            if mode == "modules":  # which backend libraries the server had imported
                with open(self.path, "w") as handle:
                    names = ("skops.io", "onnxruntime")
                    json.dump({name: name in sys.modules for name in names}, handle)
            if mode == "linger":  # says who it is, then takes its time
                with open(self.path, "w") as handle:
                    handle.write(str(os.getpid()))
                time.sleep(3600)
            if mode == "environ":
                with open("/proc/self/environ", "rb") as handle:
                    initial = handle.read().decode(errors="replace").split("\\0")
                report = {
                    "environ": dict(os.environ),
                    "initial_environ": [item.split("=", 1)[0] for item in initial if item],
                    "cwd": os.getcwd(),
                    "data_limit": resource.getrlimit(resource.RLIMIT_DATA)[0],
                    "cpu_limit": resource.getrlimit(resource.RLIMIT_CPU)[0],
                    "fsize_limit": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
                }
                with open(self.path, "w") as handle:
                    json.dump(report, handle)
    """
)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture
def faulty(pytester, monkeypatch):
    """``make(name, mode, path="", after="")``: store a Faulty artifact as ``t.py::test_<name>``
    (``after``: a file its recording waits for)."""
    (pytester.path / "faulty_model.py").write_text(FAULTY)
    monkeypatch.syspath_prepend(str(pytester.path))
    import faulty_model

    X = load_iris(return_X_y=True)[0][:20]

    def make(name: str, mode: str, path: str = "", after: str = "") -> None:
        store_model(
            pytester.path / "store",
            faulty_model.Faulty(mode, path, after).fit(X),
            X,
            None,
            test_id=f"t.py::test_{name}",
        )

    yield make
    import sys

    sys.modules.pop("faulty_model", None)


def _good(pytester, iris, name: str) -> None:
    X, y = iris
    model = LogisticRegression(max_iter=300).fit(X, y)
    store_model(pytester.path / "store", model, X, y, test_id=f"t.py::test_{name}")


def _records(pytester, name: str = "r.json") -> dict[str, dict]:
    report = json.loads((pytester.path / name).read_text())
    return {r["test_id"]: r for r in report["records"]}


@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_faults_are_contained_each_to_its_artifact(run_suite, pytester, faulty, iris, isolation):
    _good(pytester, iris, "a_good")
    faulty("b_abort", "abort")
    faulty("c_segfault", "segfault")
    faulty("d_hang", "hang")
    faulty("e_hog", "hog")
    faulty("f_predict_abort", "predict-abort")
    _good(pytester, iris, "g_good")
    # A fresh interpreter needs its timeout to import scikit-learn (10-30 s on a busy machine).
    timeout = 6 if isolation == "fork" else 60
    started = time.monotonic()
    run = run_suite(
        "",
        "--persist-load=store",
        f"--persist-load-isolation={isolation}",
        f"--persist-load-timeout={timeout}",
        "--persist-load-max-memory=1GiB",
        "--persist-report=r.json",
    )
    elapsed = time.monotonic() - started
    assert run.result.ret == 1, run.text
    assert run.status("t.py::test_a_good[pickle]") == "PASSED"
    assert run.status("t.py::test_g_good[pickle]") == "PASSED"  # checked after every fault
    records = _records(pytester)
    assert len(records) == 7
    errors = {test_id.split("test_", 1)[1]: r["error"] for test_id, r in records.items()}
    kinds = {test_id.split("test_", 1)[1]: r["kind"] for test_id, r in records.items()}
    assert kinds == {
        "a_good": "passed",
        "b_abort": "load_error",
        "c_segfault": "load_error",
        "d_hang": "load_error",
        "e_hog": "load_error",
        "f_predict_abort": "method_error",
        "g_good": "passed",
    }
    assert "crashed with SIGABRT while loading" in errors["b_abort"]
    assert "crashed with SIGSEGV while loading" in errors["c_segfault"]
    assert f"timed out after {timeout} s while loading" in errors["d_hang"]
    assert "exceeded the memory limit of 1 GiB" in errors["e_hog"]
    assert "predict" in errors["f_predict_abort"] and "SIGABRT" in errors["f_predict_abort"]
    segfault = records["t.py::test_c_segfault"]["details"]
    assert "Fatal Python error: Segmentation fault" in segfault["stderr"]  # faulthandler
    assert "__setstate__" in segfault["stderr"]  # ...with the Python stack
    assert {r["details"]["isolation"] for r in records.values()} == {isolation}
    # the hog's child was started while the hang's ran; its time is its own, not their sum
    assert records["t.py::test_e_hog"]["details"]["child_seconds"] < timeout
    assert elapsed < timeout + 300  # the hang cost its timeout, not an hour
    if isolation == "process":
        assert "isolation: 7 in one interpreter each (--persist-load-isolation=process)" in run.text
    else:
        assert "isolation: 7 in forked children of a warm loader" in run.text


def test_nothing_leaks_from_one_artifact_into_the_next(run_suite, pytester, faulty, child_writable):
    # one file each: the next check's child starts while this one's runs, so c waits for b
    seen = {name: child_writable / f"{name}.json" for name in ("a", "b", "c")}
    faulty("a_record", "record", str(seen["a"]))
    faulty("b_leak", "leak", str(seen["b"]), after=str(seen["a"]))
    faulty("c_record", "record", str(seen["c"]), after=str(seen["b"]))
    run = run_suite("", "--persist-load=store")
    assert run.result.ret == 0, run.text
    before, leaking, after = [json.loads(seen[name].read_text()) for name in ("a", "b", "c")]
    for key in ("server_pid",):
        before.pop(key), leaking.pop(key), after.pop(key)
    assert leaking == {  # the changes took effect where they were made...
        "module_attribute": True,
        "first_warning_filter": "error",
        "n_warning_filters": before["n_warning_filters"] + 1,
        "numpy_precision": 2,
        "environment_variable": "1",
        "garbage_collector": False,
    }
    assert after == before  # ...and the next artifact sees none of them
    assert before["module_attribute"] is False and before["environment_variable"] is None
    assert before["garbage_collector"] is True  # as in a fresh interpreter (the server has none)
    assert before["numpy_precision"] == 8


@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_children_get_a_clean_environment_limits_and_their_own_cwd(
    run_suite, pytester, faulty, monkeypatch, isolation, child_writable
):
    seen = child_writable / "environ.json"
    # the signing key is a secret the child must not see; the store is signed with it
    monkeypatch.setenv("PYTEST_PERSIST_KEY", "ab" * 32)
    faulty("environ", "environ", str(seen))
    monkeypatch.setenv("MY_API_TOKEN", "hunter2")
    monkeypatch.setenv("SOME_PROJECT_SETTING", "x")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    run = run_suite(
        "",
        "--persist-load=store",
        f"--persist-load-isolation={isolation}",
        "--persist-load-timeout=30",
        "--persist-load-max-memory=3GiB",
    )
    assert run.result.ret == 0, run.text
    report = json.loads(seen.read_text())
    for name in ("MY_API_TOKEN", "PYTEST_PERSIST_KEY", "SOME_PROJECT_SETTING"):
        assert name not in report["environ"]
        assert name not in report["initial_environ"]  # not even in /proc/self/environ
    assert report["environ"]["OMP_NUM_THREADS"] == "2"
    assert report["environ"]["LC_ALL"] == "C.UTF-8"
    assert "PATH" in report["environ"] and "HOME" in report["environ"]
    assert "pytest-persist-check-" in report["cwd"] and str(pytester.path) not in report["cwd"]
    assert report["data_limit"] == 3 * 1024**3
    assert 30 <= report["cpu_limit"] < 10_000
    assert report["fsize_limit"] > 0


def test_thread_pools_work_in_forked_children(run_suite, pytester):
    X, y = make_classification(n_samples=400, n_features=12, random_state=0)
    root = pytester.path / "store"
    for name, model in {
        "forest": RandomForestClassifier(n_estimators=30, n_jobs=2, random_state=0),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=30, random_state=0),
        "svc": SVC(),
    }.items():
        store_model(root, model.fit(X, y), X, y, backend="joblib", test_id=f"t.py::test_{name}")
    run = run_suite("", "--persist-load=store", "--persist-report=r.json")
    assert run.result.ret == 0, run.text
    records = _records(pytester)
    assert [r["kind"] for r in records.values()] == ["passed"] * 3
    assert all(r["details"]["isolation"] == "fork" for r in records.values())
    assert "decision_function" in records["t.py::test_svc"]["compared_methods"]


def test_under_xdist_each_worker_has_its_own_loader(
    run_suite, pytester, faulty, iris, child_writable
):
    seen = child_writable / "seen.jsonl"
    for index in range(6):  # xdist sends each worker two of them first
        faulty(f"record_{index}", "record", str(seen))
    _good(pytester, iris, "y_good")
    faulty("z_abort", "abort")
    run = run_suite("", "--persist-load=store", "-n", "2", "--persist-report=r.json")
    assert run.result.ret == 1, run.text
    records = _records(pytester)
    assert len(records) == 8
    kinds = sorted(r["kind"] for r in records.values())
    assert kinds == ["load_error"] + ["passed"] * 7
    assert "crashed with SIGABRT" in records["t.py::test_z_abort"]["error"]
    servers = [json.loads(line)["server_pid"] for line in seen.read_text().splitlines()]
    assert len(servers) == 6 and len(set(servers)) == 2  # two workers, two loaders


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--persist-load-max-memory=lots"], "", "--persist-load-max-memory: 'lots' is not a size"),
        ([], "[pytest]\npersist_load_max_memory = 12 parsecs\n", "persist_load_max_memory: '12"),
        (["--persist-load-max-memory=1MB"], "", "below 64 MiB"),
        ([], "[pytest]\npersist_load_isolation = thread\n", "persist_load_isolation = 'thread'"),
    ],
)
def test_bad_loader_options_are_usage_errors(pytester, args, ini, message):
    (pytester.path / "store").mkdir()
    if ini:
        pytester.makeini(ini)
    result = pytester.runpytest_subprocess("--persist-load=store", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_sizes():
    assert parse_size("2GiB") == 2 * 1024**3 == parse_size("2G") == parse_size("2 gib")
    assert parse_size("512MB") == 512 * 1000**2
    assert parse_size("1.5GiB") == 3 * 1024**3 // 2
    assert parse_size("none") is parse_size("0") is None
    assert format_size(DEFAULT_MAX_MEMORY) == "4 GiB"
    assert format_size(512 * 1000**2) == "512 MB" and format_size(3 * 1024**3 // 2) == "1.5 GiB"
    with pytest.raises(ValueError, match="not a size"):
        parse_size("4 gigs")


def test_clean_environment_keeps_what_libraries_need():
    env = clean_environment(
        {
            "PATH": "/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONPATH": "/src",
            "GITHUB_TOKEN": "t",
            "AWS_SECRET_ACCESS_KEY": "s",
            "PYTHON_KEYRING_PASSWORD": "p",
            "DB_CREDENTIALS": "c",
            "PYTEST_PERSIST_KEY": "k",
            "UNRELATED": "u",
        }
    )
    assert env == {
        "PATH": "/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": "/src",
    }
    assert clean_environment({"UNRELATED": "u", "MY_TOKEN": "t"}, keep_all=True) == {
        "UNRELATED": "u"
    }


def test_a_server_for_a_store_imports_what_its_entries_use(tmp_path, iris):
    X, y = iris
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    entries = [
        store_model(tmp_path / "store", model, X, y, backend=name, test_id=f"t.py::test_{name}")
        for name in ("pickle", "skops")
    ]
    assert entries[0].estimator_modules == [
        "sklearn.linear_model._logistic",
        "sklearn.pipeline",
        "sklearn.preprocessing._data",
    ]
    preload = store_preload(entries, BackendRegistry())
    assert set(CORE_PRELOAD) <= set(preload)
    # the subpackages of the pipeline and of its steps, and no other
    assert {"sklearn.pipeline", "sklearn.preprocessing", "sklearn.linear_model"} <= set(preload)
    assert not {"sklearn.ensemble", "sklearn.svm", "sklearn.manifold"} & set(preload)
    assert "skops.io" in preload and "pytest_persist.backends.skops_io" in preload
    assert not {"joblib", "cloudpickle", "onnxruntime"} & set(preload)
    # nothing the entries name is imported before their signatures are checked
    assert "sklearn.linear_model._logistic" not in preload
    # an entry saved before the modules were recorded: every subpackage
    entries[0].manifest["estimator"].pop("modules")
    assert set(SKLEARN_SUBPACKAGES) <= set(store_preload(entries, BackendRegistry()))


@pytest.mark.parametrize("with_skops", [True, False])
def test_the_server_imports_the_backends_the_store_uses(
    run_suite, pytester, faulty, iris, with_skops, child_writable
):
    """The server starts at configure with numpy, scipy and scikit-learn, then imports what the
    store's backends load with; a pickled artifact sees in ``sys.modules`` what it had."""
    seen = child_writable / "modules.json"
    faulty("a_modules", "modules", str(seen))
    if with_skops:
        X, y = iris
        model = LogisticRegression(max_iter=300).fit(X, y)
        store_model(pytester.path / "store", model, X, y, backend="skops", test_id="t.py::test_b")
    run = run_suite("", "--persist-load=store", "--persist-trusted=numpy.dtype")
    assert run.result.ret == 0, run.text
    assert json.loads(seen.read_text()) == {"skops.io": with_skops, "onnxruntime": False}


@pytest.mark.parametrize("no_run", [None, "--collect-only", "--help"])
def test_the_server_starts_before_the_conftests_load(run_suite, pytester, iris, no_run):
    """The loader starts at ``pytest_load_initial_conftests``, the earliest hook with the
    command line parsed, so scikit-learn imports while conftests load; not when nothing runs."""
    _good(pytester, iris, "good")
    pytester.makeconftest(
        """
        import json
        from pytest_persist.isolation.loader import default_loader

        with open("started.json", "w") as handle:
            json.dump(default_loader().started_at is not None, handle)
        """
    )
    run = run_suite("", "--persist-load=store", *([no_run] if no_run else []))
    assert run.result.ret == 0, run.text
    assert json.loads((pytester.path / "started.json").read_text()) is (no_run is None)


def test_the_servers_warm_up_starts_no_thread(tmp_path):
    """The warm-up fits and calls models in the server; forking is safe only if that left no
    thread behind (an OpenMP pool would be copied into every child broken)."""
    code = (
        "import importlib, os\n"
        "from pytest_persist.isolation.loader import BASE_PRELOAD\n"
        "for name in BASE_PRELOAD: importlib.import_module(name)\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loader = ForkLoader(preload=BASE_PRELOAD)
    try:
        ready = loader.wait_ready()
    finally:
        loader.stop()
    assert ready["not_preloaded"] == {}
    assert ready["threads"] == int(cold.stdout.split()[-1])


@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_the_next_check_runs_while_this_one_is_waited_for(
    run_suite, pytester, faulty, isolation, child_writable
):
    """Each item hands the next item's artifact to the loader before it waits for its own, so
    two children load at once (each forked from the untouched server, as the leak test shows,
    or two fresh interpreters)."""
    seen = child_writable / "intervals.jsonl"
    faulty("a_first", "interval", str(seen))
    faulty("b_second", "interval", str(seen))
    run = run_suite("", "--persist-load=store", f"--persist-load-isolation={isolation}")
    assert run.result.ret == 0, run.text
    events = [json.loads(line) for line in seen.read_text().splitlines()]
    starts = sorted(e["start"] for e in events if "start" in e)
    ends = sorted(e["end"] for e in events if "end" in e)
    assert len(starts) == len(ends) == 2
    assert starts[1] < ends[0]  # the second child started before the first one ended


@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_a_check_started_ahead_in_vain_leaves_nothing_behind(
    run_suite, pytester, faulty, monkeypatch, isolation, child_writable
):
    """``-x`` stops after the first failure; the next artifact's child, already loading, is
    killed with the loader and its working directory removed."""
    pid_file = child_writable / "lingering.pid"
    faulty("a_drift", "drift", str(pid_file))  # fails once the next one is loading
    faulty("b_linger", "linger", str(pid_file))
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    run = run_suite(
        "",
        "--persist-load=store",
        "-x",
        "--persist-load-timeout=600",
        f"--persist-load-isolation={isolation}",
    )
    assert run.result.ret == 1, run.text
    assert run.status("t.py::test_a_drift[pickle]") == "FAILED"
    assert "t.py::test_b_linger[pickle]" not in run.statuses
    pid = int(pid_file.read_text())  # it did start ahead...
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)  # ...and did not outlive the session
    assert not list(tmp.glob("pytest-persist-check-*"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_checks_in_flight_when_the_server_dies_end_and_the_next_one_passes(tmp_path, iris):
    import os
    import signal

    from pytest_persist.isolation.check import start_check
    from pytest_persist.results.outcome import OutcomeKind

    X, y = iris
    entry = store_model(tmp_path / "store", LogisticRegression(max_iter=300).fit(X, y), X, y)
    loader = ForkLoader()
    registry = BackendRegistry()
    try:
        first, second = (start_check(entry, registry=registry, loader=loader) for _ in "12")
        os.kill(loader.wait_ready()["pid"], signal.SIGKILL)
        for outcome in (first.result(), second.result()):
            assert outcome.kind is OutcomeKind.PASSED or "the fork loader died" in outcome.error
        again = start_check(entry, registry=registry, loader=loader).result()
        assert again.kind is OutcomeKind.PASSED, again.message()
    finally:
        loader.stop()
