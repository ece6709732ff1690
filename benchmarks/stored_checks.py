"""What ``pytest --persist-load`` costs over checking the same store by hand, and its faults.

Builds a store of 31 small models (9 estimators through pickle, joblib and cloudpickle, plus 4
logistic regressions through pickle; fits on ``make_classification``, 300 x 10), then measures,
in one run, each in a fresh process:

(a) a hand-written loop in one interpreter: import once, then for each entry load the artifact
    and call each stored method on the stored X (the time of each load + calls is kept);
(b) ``pytest --persist-load=STORE`` with the fork loader (the default), wall time;
(c) the same with ``--persist-load-isolation=process`` (one interpreter per artifact).

It prints the ratios (b)/(a) (of the medians, the median of the ratio within each
repetition, and of the fastest repetitions) and (c)/(a), and the per-artifact cost beyond the
load itself:
each stored check's time in pytest (junit XML: setup + call + teardown) minus the same
artifact's load + calls in (a), median over the artifacts. With the fork loader the next
artifact's child loads while an item waits for its own, so an item's time is what the run
waits for that artifact, not how long its child took. Then the four fault cases (abort,
segfault, a hang past the timeout, unbounded allocation) are mixed into a copy of the store and
checked with the fork loader: each must be a ``load_error`` within the timeout + 2 s of its
child's start (the JSON report's ``child_seconds``, from handing it to the loader to its end),
the others pass, pytest exits 1 and the JSON report has every record.

pytest runs as ``pytest_persist.nox.check_artifacts`` runs it: in an empty folder with an empty
``pytest.ini``. Run on demand, not part of the test suite:

    python benchmarks/stored_checks.py [--reps 2] [--skip-process] [--timeout 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HAND_LOOP = textwrap.dedent(
    """
    import json, pickle, sys, time
    started = time.perf_counter()
    import numpy, sklearn, joblib, cloudpickle
    from pytest_persist.store.entries import entry_dirs, read_entry
    from pytest_persist.roundtrip.compare import call_method
    imported = time.perf_counter()
    loaders = {"pickle": lambda p: pickle.load(open(p, "rb")), "joblib": joblib.load,
               "cloudpickle": lambda p: cloudpickle.load(open(p, "rb"))}
    times = {}
    for directory in entry_dirs(sys.argv[1]):
        entry = read_entry(directory)
        data = entry.load_data()
        begun = time.perf_counter()
        model = loaders[entry.backend](entry.artifact_path)
        for method in entry.methods:
            call_method(model, method, data.X, data.y, data.expected.get("transform"))
        name = entry.test_id.rpartition("::")[2]
        times[f"{name}[{entry.backend}]"] = time.perf_counter() - begun
    print(json.dumps({"import": imported - started, "times": times}))
    """
)

FAULTY = textwrap.dedent(
    """
    import ctypes, os, time
    import numpy as np

    class Faulty:
        def __init__(self, mode=""):
            self.mode = mode
        def fit(self, X, y=None):
            return self
        def get_params(self, deep=True):
            return {}
        def predict(self, X):
            return np.asarray(X).sum(axis=1)
        def __setstate__(self, state):
            self.__dict__.update(state)
            if self.mode == "abort":
                os.abort()
            if self.mode == "segfault":
                ctypes.string_at(0)
            if self.mode == "hang":
                time.sleep(3600)
            if self.mode == "hog":
                blocks = []
                while True:
                    blocks.append(np.ones(64 * 1024**2, dtype=np.uint8))
    """
)
FAULTS = ("abort", "segfault", "hang", "hog")


def build_store(root: Path) -> int:
    from sklearn.datasets import make_classification
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    X, y = make_classification(n_samples=300, n_features=10, random_state=0)
    estimators = {
        "logistic_regression": LogisticRegression(max_iter=500),
        "ridge": Ridge(),
        "tree": DecisionTreeClassifier(max_depth=5, random_state=0),
        "forest": RandomForestClassifier(n_estimators=20, random_state=0),
        "gradient_boosting": GradientBoostingClassifier(n_estimators=20, random_state=0),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=20, random_state=0),
        "svc": SVC(),
        "k_neighbours": KNeighborsClassifier(),
        "pipeline": make_pipeline(StandardScaler(), PCA(n_components=5), LogisticRegression()),
    }
    count = 0
    for name, estimator in estimators.items():
        estimator.fit(X, y)
        for backend in ("pickle", "joblib", "cloudpickle"):
            save(root, f"bench.py::test_{name}", backend, estimator, X, y)
            count += 1
    for C in (0.01, 0.1, 1.0, 10.0):
        model = LogisticRegression(C=C, max_iter=500).fit(X, y)
        save(root, f"bench.py::test_logistic_regression_C{C:g}", "pickle", model, X, y)
        count += 1
    return count


def save(root: Path, test_id: str, backend: str, estimator, X, y) -> None:
    from pytest_persist.backends import BackendCall, BackendRegistry
    from pytest_persist.environments.fingerprint import environment_fingerprint
    from pytest_persist.roundtrip.compare import compute_outputs
    from pytest_persist.store.entries import save_entry

    backend_obj = BackendRegistry()[backend]
    with tempfile.TemporaryDirectory() as work:
        artifact = Path(work) / f"artifact{backend_obj.suffix}"
        backend_obj.dump(estimator, artifact, BackendCall(X=X))
        outputs, errors = compute_outputs(estimator, X, y)
        save_entry(
            root,
            test_id=test_id,
            backend_name=backend,
            estimator=estimator,
            artifact_path=artifact,
            X=X,
            y=y,
            expected_outputs=outputs,
            not_compared=errors,
            environment=environment_fingerprint(),
        )


def add_faults(root: Path, modules: Path) -> None:
    (modules / "faulty_model.py").write_text(FAULTY)
    sys.path.insert(0, str(modules))
    import faulty_model
    import numpy as np

    X = np.random.default_rng(0).random((20, 4))
    for mode in FAULTS:
        save(root, f"faults.py::test_{mode}", "pickle", faulty_model.Faulty(mode), X, None)


def run_pytest(store: Path, workdir: Path, *args: str, env: dict | None = None):
    """Wall seconds, exit code, junit times by item name, JSON report records."""
    empty = Path(tempfile.mkdtemp(dir=workdir))
    (empty / "pytest.ini").write_text("[pytest]\n")
    junit, report = empty / "junit.xml", empty / "report.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(empty / "pytest.ini"),
        "--rootdir",
        str(empty),
        "-p",
        "no:cacheprovider",
        "-q",
        f"--persist-load={store}",
        f"--junitxml={junit}",
        f"--persist-report={report}",
        *args,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=empty, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    times = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        times[case.get("name")] = float(case.get("time"))
    records = json.loads(report.read_text())["records"] if report.exists() else []
    return wall, done.returncode, times, records, done.stdout


def hand_loop(store: Path, workdir: Path) -> tuple[float, dict]:
    script = workdir / "hand_loop.py"
    script.write_text(HAND_LOOP)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(script), str(store)], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - started
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="repetitions of (a) and (b)")
    parser.add_argument("--skip-process", action="store_true", help="do not measure (c)")
    parser.add_argument(
        "--process-sample",
        type=int,
        default=0,
        help="measure (c) on the first N entries only (a busy machine imports scikit-learn "
        "in up to a minute) and compare per-artifact medians; 0: the whole store",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="for the fault cases")
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="stored-checks-"))
    try:
        store = workdir / "store"
        count = build_store(store)
        print(f"store: {count} entries in {store} (cores: {os.cpu_count()})")
        hand_walls, fork_walls, per_artifact = [], [], []
        hand_times: dict = {}
        for rep in range(options.reps):
            wall_a, hand = hand_loop(store, workdir)
            wall_b, code, times, records, out = run_pytest(store, workdir)
            assert code == 0, out
            assert len(records) == count and {r["kind"] for r in records} == {"passed"}, out
            assert {r["details"]["isolation"] for r in records} == {"fork"}
            hand_walls.append(wall_a)
            fork_walls.append(wall_b)
            hand_times = hand["times"]
            overheads = [times[name] - hand["times"][name] for name in hand["times"]]
            per_artifact.append(statistics.median(overheads))
            print(
                f"rep {rep + 1}: (a) hand loop {wall_a:.2f} s (import {hand['import']:.2f} s), "
                f"(b) pytest, fork loader {wall_b:.2f} s; median per-artifact overhead "
                f"{statistics.median(overheads) * 1000:.0f} ms"
            )
        a, b = statistics.median(hand_walls), statistics.median(fork_walls)
        loads = sorted(hand_times.values())
        # (a) and (b) run back to back in each repetition: the ratio within a repetition is
        # the steadier figure when the machine's speed drifts between repetitions.
        paired = statistics.median(f / h for f, h in zip(fork_walls, hand_walls, strict=True))
        print(f"(a) hand loop, one interpreter:      {a:7.2f} s (median of {options.reps})")
        print(f"(b) pytest --persist-load, fork:     {b:7.2f} s  = {b / a:.2f}x (a)")
        print(f"    (b)/(a) within each repetition:  median {paired:.2f}x")
        fastest_a, fastest_b = min(hand_walls), min(fork_walls)
        print(
            f"    fastest repetition of each:      {fastest_b:.2f} s against {fastest_a:.2f} s "
            f"= {fastest_b / fastest_a:.2f}x (the figure a host slowing at times moves least)"
        )
        if not options.skip_process:
            sample, n = store, count
            if options.process_sample:
                sample = workdir / "sample"
                sample.mkdir()
                for directory in sorted(store.iterdir())[: options.process_sample]:
                    shutil.copytree(directory, sample / directory.name)
                n = options.process_sample
            wall_c, code, times_c, records, out = run_pytest(
                sample, workdir, "--persist-load-isolation=process"
            )
            assert code == 0 and len(records) == n, out
            if n == count:
                print(
                    f"(c) pytest --persist-load, process:  {wall_c:7.2f} s  = {wall_c / a:.2f}x (a)"
                )
            else:
                fork_item = statistics.median(times[name] for name in times_c)
                process_item = statistics.median(times_c.values())
                print(
                    f"(c) process isolation on {n} entries: {wall_c:.2f} s; median per artifact "
                    f"{process_item:.2f} s against {fork_item:.3f} s forked "
                    f"({process_item / fork_item:.0f}x)"
                )
        print(
            f"per-artifact cost beyond load + calls (b): median "
            f"{statistics.median(per_artifact) * 1000:.0f} ms; load + calls themselves: median "
            f"{statistics.median(loads) * 1000:.1f} ms"
        )

        faulty = workdir / "faulty-store"
        shutil.copytree(store, faulty)
        modules = workdir / "modules"
        modules.mkdir()
        add_faults(faulty, modules)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(modules), *sys.path]))
        wall, code, times, records, out = run_pytest(
            faulty,
            workdir,
            f"--persist-load-timeout={options.timeout:g}",
            "--persist-load-max-memory=1GiB",
            env=env,
        )
        kinds = {(r["test_id"], r["backend"]): (r["kind"], r["error"]) for r in records}
        child_seconds = {r["test_id"]: r["details"].get("child_seconds") for r in records}
        print(
            f"faults mixed in: exit code {code}, {len(records)}/{count + 4} records, {wall:.2f} s"
        )
        for mode in FAULTS:
            test_id = f"faults.py::test_{mode}"
            kind, error = kinds.get((test_id, "pickle"), ("missing", ""))
            seconds = child_seconds.get(test_id) or float("nan")
            within = seconds <= options.timeout + 2
            print(
                f"  {mode:9} {kind:11} {seconds:6.2f} s (within timeout + 2 s: {within}): {error}"
            )
        others = [k for (t, _), (k, _) in kinds.items() if not t.startswith("faults.py")]
        print(f"  the other {len(others)}: {sorted(set(others))}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
