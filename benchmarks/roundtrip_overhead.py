"""What the plugin's round trip costs over the same work written by hand with the libraries.

Two measurements per backend, each against a hand-written baseline that also computes the
original's outputs (once), dumps to a temp file, loads, calls the same methods on the loaded
model and checks them with ``np.testing`` at the same tolerances:

1. a ``RandomForestClassifier(n_estimators=300)`` fitted on ``make_classification`` (20,000 x 20):
   ``check_persistence(forest, X, y, backends=[name])``, split into its parts (original outputs,
   determinism, i.e. the original called again after a mismatch, dump, load, calls on the
   loaded model, comparison, state walk, other);
2. the sweep: every ``default_instances()`` estimator fitted on ``make_fit_data``;
3. the peer: scikit-learn's own ``check_estimators_pickle`` over the instances its test suite
   builds, against the plugin's ``persistence_checks`` (pickle + joblib-mmap) over the same
   instances, fits included on both sides.

After the forest's timings, the peak memory of one round trip (pickle, joblib) is measured as
a multiple of the forest's pickled size (Linux: ``/proc/self/clear_refs`` resets the peak).

Fits are done once, outside every timed region; everything runs under
``threadpool_limits(1)``. Plugin and hand runs alternate within each repetition and the
medians are reported (the machine is noisy: read the ratios, not the absolute seconds).

Run on demand, not part of the test suite:

    python benchmarks/roundtrip_overhead.py [--quick] [--reps 3] [--backends pickle,onnx]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import itertools
import pickle
import signal
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pytest_persist.roundtrip.compare import PREDICTION_METHODS

BACKENDS = ("pickle", "joblib", "joblib-mmap", "joblib-compressed", "cloudpickle", "skops", "onnx")
#: The plugin's time, split; ``other`` is the rest (validation, temp dirs, versions, ...).
PARTS = ("expected", "determinism", "dump", "load", "calls", "compare", "state", "other")
#: The methods both sides call, when the estimator has them: the plugin's own list.
METHODS = PREDICTION_METHODS
CAP_SECONDS = 300.0


class Capped(BaseException):
    """A backend ran past its time cap (a BaseException so the plugin does not catch it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``Capped`` in the main thread after ``seconds`` (SIGALRM)."""

    def expire(signum: int, frame: Any) -> None:
        raise Capped()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------- plugin side


class PluginParts:
    """Wraps ``pytest_persist.roundtrip.run``'s steps to split one ``check_persistence`` call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._phase = ""

    def reset(self) -> None:
        self.seconds = defaultdict(float)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from pytest_persist.roundtrip import run as roundtrip

        names = (
            "expected_outputs",
            "recall_original",
            "compute_outputs",
            "compute_outputs_once",
            "compare_loaded",
            "compare_state",
        )
        original = {name: getattr(roundtrip, name) for name in names}

        def timed(name: str, part: str) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original[name](*args, **kwargs)
                finally:
                    self.seconds[part] += time.perf_counter() - started

            return wrapper

        def computing(name: str) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original[name](*args, **kwargs)
                finally:
                    if self._phase == "loaded":
                        self.seconds["calls"] += time.perf_counter() - started

            return wrapper

        def compare_loaded(*args: Any, **kwargs: Any) -> Any:
            self._phase = "loaded"
            before = self.seconds["calls"] + self.seconds["determinism"]
            started = time.perf_counter()
            try:
                return original["compare_loaded"](*args, **kwargs)
            finally:
                total = time.perf_counter() - started
                inside = self.seconds["calls"] + self.seconds["determinism"] - before
                self.seconds["compare"] += total - inside
                self._phase = ""

        wrappers = {
            "expected_outputs": timed("expected_outputs", "expected"),
            # the lazy determinism check: the original called again, only after a mismatch
            "recall_original": timed("recall_original", "determinism"),
            "compute_outputs": computing("compute_outputs"),
            "compute_outputs_once": computing("compute_outputs_once"),
            "compare_loaded": compare_loaded,
            "compare_state": timed("compare_state", "state"),
        }
        for name, wrapper in wrappers.items():
            setattr(roundtrip, name, wrapper)
        try:
            yield
        finally:
            for name, function in original.items():
                setattr(roundtrip, name, function)


@dataclass
class Run:
    """One timed round trip: total seconds, its parts, and how it ended."""

    total: float
    parts: dict[str, float]
    status: str


def plugin_run(
    parts: PluginParts, estimator: Any, X: Any, y: Any, backend: str, **options: Any
) -> Run:
    """``check_persistence`` for one backend, timed and split into ``PARTS``."""
    from pytest_persist import check_persistence

    parts.reset()
    started = time.perf_counter()
    try:
        (outcome,) = check_persistence(estimator, X, y, backends=[backend], **options)
    except Exception as error:  # e.g. PersistUsageError: no method works on this X
        total = time.perf_counter() - started
        split = {name: parts.seconds.get(name, 0.0) for name in PARTS}
        split["other"] = total - sum(split.values())
        return Run(total, split, f"error ({type(error).__name__})")
    total = time.perf_counter() - started
    split = {name: parts.seconds.get(name, 0.0) for name in PARTS}
    split["dump"] = outcome.dump_seconds or 0.0
    split["load"] = outcome.load_seconds or 0.0
    split["other"] = total - sum(v for k, v in split.items() if k != "other")
    outcome.loaded = None
    return Run(total, split, outcome.kind.value)


# ------------------------------------------------------------------------------------ hand side


def _onnx_dump(estimator: Any, path: Path, X: Any) -> None:
    from skl2onnx import to_onnx
    from sklearn.base import is_classifier

    sample = np.asarray(X, dtype=np.float32)[:1]
    options = {id(estimator): {"zipmap": False}} if is_classifier(estimator) else None
    try:
        model = to_onnx(estimator, sample, options=options)
    except Exception:
        if options is None:
            raise
        model = to_onnx(estimator, sample)  # converters that do not know zipmap
    path.write_bytes(model.SerializeToString())


def _onnx_load(path: Path) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _skops_load(path: Path) -> Any:
    import skops.io

    return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))


def _pickle_dump(estimator: Any, path: Path, X: Any) -> None:
    with open(path, "wb") as file:
        pickle.dump(estimator, file, protocol=5)


def _pickle_load(path: Path) -> Any:
    with open(path, "rb") as file:
        return pickle.load(file)


def _cloudpickle_dump(estimator: Any, path: Path, X: Any) -> None:
    import cloudpickle

    with open(path, "wb") as file:
        cloudpickle.dump(estimator, file, protocol=5)


def _joblib_dump(compress: Any = 0) -> Callable[[Any, Path, Any], None]:
    def dump(estimator: Any, path: Path, X: Any) -> None:
        import joblib

        joblib.dump(estimator, path, compress=compress)

    return dump


def _joblib_load(mmap_mode: str | None = None) -> Callable[[Path], Any]:
    def load(path: Path) -> Any:
        import joblib

        return joblib.load(path, mmap_mode=mmap_mode)

    return load


def _skops_dump(estimator: Any, path: Path, X: Any) -> None:
    import skops.io

    skops.io.dump(estimator, path)


HAND: dict[str, tuple[Callable[[Any, Path, Any], None], Callable[[Path], Any]]] = {
    "pickle": (_pickle_dump, _pickle_load),
    "joblib": (_joblib_dump(), _joblib_load()),
    "joblib-mmap": (_joblib_dump(), _joblib_load("r")),
    "joblib-compressed": (_joblib_dump(("zlib", 3)), _joblib_load()),
    "cloudpickle": (_cloudpickle_dump, _pickle_load),
    "skops": (_skops_dump, _skops_load),
    "onnx": (_onnx_dump, _onnx_load),
}


def hand_outputs(estimator: Any, X: Any, y: Any, methods: list[str]) -> dict[str, Any]:
    """The methods' outputs, skipping those that raise (``inverse_transform`` of transform)."""
    outputs: dict[str, Any] = {}
    with np.errstate(all="ignore"):
        for method in methods:
            try:
                if method == "score":
                    outputs[method] = estimator.score(X, y)
                elif method == "inverse_transform":
                    if "transform" in outputs:
                        outputs[method] = estimator.inverse_transform(outputs["transform"])
                else:
                    outputs[method] = getattr(estimator, method)(X)
            except Exception:
                continue
    return outputs


def onnx_outputs(estimator: Any, session: Any, X: Any) -> dict[str, Any]:
    """One ``session.run`` for every output, named after the method it answers."""
    from sklearn.base import is_regressor

    names = [output.name for output in session.get_outputs()]
    feed = {session.get_inputs()[0].name: np.asarray(X, dtype=np.float32)}
    outputs: dict[str, Any] = {}
    for name, value in zip(names, session.run(None, feed), strict=True):
        if name == "label":
            method = "predict"
        elif name == "probabilities":
            method = "predict_proba" if hasattr(estimator, "predict_proba") else "decision_function"
        elif name == "scores":
            method = "decision_function" if hasattr(estimator, "decision_function") else "transform"
        elif is_regressor(estimator) or not hasattr(estimator, "transform"):
            method = "predict"
        else:
            method = "transform"
        outputs.setdefault(method, value)
    return outputs


def hand_check(want: Any, got: Any, rtol: float, atol: float) -> None:
    """``np.testing``: labels exactly, floats with ``rtol``/``atol``; sparse never densified
    (FeatureHasher's 2**20 columns would take seconds)."""
    if isinstance(want, (list, tuple)) and not all(np.isscalar(w) for w in want):
        assert len(want) == len(got)
        for w, g in zip(want, got, strict=True):
            hand_check(w, g, rtol, atol)
        return
    if hasattr(want, "tocsr") and hasattr(got, "tocsr"):  # sparse: structure, then values
        want, got = want.tocsr(), got.tocsr()
        assert want.shape == got.shape
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        want, got = want.data, got.data
    want = want.toarray() if hasattr(want, "toarray") else np.asarray(want)
    got = got.toarray() if hasattr(got, "toarray") else np.asarray(got)
    if got.shape != want.shape and got.size == want.size:
        got = got.reshape(want.shape)  # ONNX: (n, 1) for (n,)
    if want.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(got, want)


def hand_run(estimator: Any, X: Any, y: Any, backend: str) -> Run:
    """The same round trip written directly with the library, timed in the same parts.

    The file goes to its own temporary directory, removed afterwards (``other``), as the
    plugin does; the original's outputs are computed once, with no determinism re-run.
    """
    dump, load = HAND[backend]
    onnx = backend == "onnx"
    rtol, atol = (1e-4, 1e-5) if onnx else (1e-7, 1e-9)
    split = dict.fromkeys(PARTS, 0.0)
    status = "passed"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hand-") as folder:
        marks = [time.perf_counter()]
        try:
            methods = [
                m for m in METHODS if hasattr(estimator, m) and (m != "score" or y is not None)
            ]
            expected = hand_outputs(estimator, X, y, methods)
            marks.append(time.perf_counter())
            path = Path(folder) / f"model-{backend}"
            dump(estimator, path, X)
            marks.append(time.perf_counter())
            loaded = load(path)
            marks.append(time.perf_counter())
            if onnx:
                actual = onnx_outputs(estimator, loaded, X)
            else:
                actual = hand_outputs(loaded, X, y, list(expected))
            marks.append(time.perf_counter())
            try:
                for method in expected:
                    if method in actual:
                        hand_check(expected[method], actual[method], rtol, atol)
            except AssertionError:
                status = "mismatch"
            marks.append(time.perf_counter())
        except Exception as error:
            status = f"error ({type(error).__name__})"
            marks.append(time.perf_counter())
        loaded = actual = None
    total = time.perf_counter() - started
    steps = ("expected", "dump", "load", "calls", "compare")
    for name, (start, end) in zip(steps, itertools.pairwise(marks), strict=False):
        split[name] = end - start
    split["other"] = total - sum(split.values())
    return Run(total, split, status)


# ------------------------------------------------------------------------------------- measuring


@dataclass
class Pair:
    """Plugin and hand runs of one (estimator, backend), over repetitions."""

    plugin: list[Run] = field(default_factory=list)
    hand: list[Run] = field(default_factory=list)
    capped: bool = False

    @staticmethod
    def _median(runs: list[Run], part: str | None = None) -> float:
        if not runs:
            return float("nan")
        return statistics.median(r.total if part is None else r.parts[part] for r in runs)

    def plugin_s(self, part: str | None = None) -> float:
        return self._median(self.plugin, part)

    def hand_s(self, part: str | None = None) -> float:
        return self._median(self.hand, part)

    def best_s(self, side: str) -> float:
        """The fastest repetition: the figure least moved by a machine that slows at times."""
        runs = self.plugin if side == "plugin" else self.hand
        return min((r.total for r in runs), default=float("nan"))

    def status(self, side: str) -> str:
        runs = self.plugin if side == "plugin" else self.hand
        return runs[-1].status if runs else "-"


def measure(
    parts: PluginParts,
    estimator: Any,
    X: Any,
    y: Any,
    backend: str,
    reps: int,
    cap: float | None = None,
    **options: Any,
) -> Pair:
    """``reps`` alternating plugin/hand runs (order flipped every other rep); capped."""
    pair = Pair()
    deadline = None if cap is None else time.perf_counter() + cap
    for rep in range(reps):
        order = ("plugin", "hand") if rep % 2 == 0 else ("hand", "plugin")
        runs: dict[str, Run] = {}
        try:
            for side in order:
                gc.collect()
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    raise Capped()
                with time_limit(remaining) if remaining else contextlib.nullcontext():
                    if side == "plugin":
                        runs[side] = plugin_run(parts, estimator, X, y, backend, **options)
                    else:
                        runs[side] = hand_run(estimator, X, y, backend)
        except Capped:
            pair.capped = True
            break
        pair.plugin.append(runs["plugin"])
        pair.hand.append(runs["hand"])
    return pair


def quiet() -> contextlib.ExitStack:
    """Under one BLAS/OpenMP thread, with fit and convergence chatter silenced.

    threadpoolctl limits only the libraries already loaded, so every estimator module (and
    with it scikit-learn's OpenMP runtime) and the backends' libraries are imported first.
    """
    from sklearn.utils import all_estimators
    from threadpoolctl import threadpool_limits

    all_estimators()
    for module in ("skops.io", "skl2onnx", "onnxruntime", "cloudpickle"):
        if importlib.util.find_spec(module.partition(".")[0]) is not None:
            importlib.import_module(module)
    stack = contextlib.ExitStack()
    stack.enter_context(threadpool_limits(1))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(np.errstate(all="ignore"))
    return stack


def warm_up(parts: PluginParts, backends: list[str]) -> None:
    """Import every library and fill caches once, outside the timings."""
    from sklearn.linear_model import LogisticRegression

    X = np.random.RandomState(0).normal(size=(30, 4))
    y = np.arange(30) % 2
    model = LogisticRegression().fit(X, y)
    for backend in backends:
        plugin_run(parts, model, X, y, backend)
        hand_run(model, X, y, backend)


# --------------------------------------------------------------------------------------- forest


def forest_benchmark(
    parts: PluginParts,
    backends: list[str],
    n_trees: int,
    n_rows: int,
    reps: int,
    option_reps: int,
    all_options: bool,
) -> dict[str, Pair]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=n_rows, n_features=20, random_state=0)
    forest = RandomForestClassifier(n_estimators=n_trees, random_state=0, n_jobs=1)
    started = time.perf_counter()
    forest.fit(X, y)
    gc.freeze()  # keep the gc.collect() between runs cheap
    print(
        f"\n== 1. RandomForestClassifier(n_estimators={n_trees}) on {n_rows} x 20 "
        f"(fit {time.perf_counter() - started:.1f} s, not timed); median of {reps} rep(s), "
        f"seconds; cap {CAP_SECONDS:.0f} s per backend",
        flush=True,
    )
    results: dict[str, Pair] = {}
    for backend in backends:
        results[backend] = measure(parts, forest, X, y, backend, reps, cap=CAP_SECONDS)
        print(f"   {backend}: done", file=sys.stderr, flush=True)
    print_parts_table(results)

    savings = forest_option_savings(
        parts, forest, X, y, backends, results, option_reps, all_options
    )
    if savings:
        print_savings(savings)
    print_memory(forest, X, y, [b for b in ("pickle", "joblib") if b in backends])
    return results


# --------------------------------------------------------------------------------------- memory


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def peak_extra_bytes(run: Callable[[], Any]) -> int | None:
    """Peak resident memory while ``run()`` runs, above what the process held before it.

    Linux only: writing 5 to ``/proc/self/clear_refs`` resets the peak (``VmHWM``) to the
    current resident size. None where that is not possible.
    """
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before = _status_kib("VmRSS")
    except OSError:
        return None
    result = run()
    peak = _status_kib("VmHWM")
    del result
    return (peak - before) * 1024


def memory_child(path: str, backend: str, side: str) -> None:
    """In a fresh process: load (forest, X, y), then print the peak extra bytes of one round
    trip (a process that already ran round trips reuses their freed memory: it would show 0)."""
    with open(path, "rb") as file:
        forest, X, y = pickle.load(file)
    if side == "plugin":
        from pytest_persist import check_persistence

        run = partial(check_persistence, forest, X, y, backends=[backend])
    else:
        run = partial(hand_run, forest, X, y, backend)
    with quiet():
        print(peak_extra_bytes(run))


def print_memory(forest: Any, X: Any, y: Any, backends: list[str]) -> None:
    """Peak memory of one forest round trip, as a multiple of the forest's pickled size."""
    import subprocess

    size = len(pickle.dumps(forest, protocol=5))
    print(
        f"\nPeak memory of one round trip (each in a fresh process, above its resident size "
        f"before the round trip), as a multiple of the forest's pickled size "
        f"({size / 2**20:.1f} MiB):"
    )
    with tempfile.TemporaryDirectory(prefix="memory-") as folder:
        path = Path(folder) / "forest.pkl"
        with open(path, "wb") as file:
            pickle.dump((forest, X, y), file, protocol=5)
        for backend in backends:
            peaks = {}
            for side in ("plugin", "hand"):
                command = [sys.executable, __file__, "--memory-child", str(path), backend, side]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                lines = done.stdout.strip().splitlines()
                peaks[side] = int(lines[-1]) if lines and lines[-1].isdigit() else None
            if None in peaks.values():
                print(f"{backend:<18}not measurable here (needs Linux /proc/self/clear_refs)")
                continue
            plugin, hand = peaks["plugin"], peaks["hand"]
            print(
                f"{backend:<18}plugin {plugin / 2**20:7.1f} MiB = {plugin / size:.2f}x pickled; "
                f"hand {hand / 2**20:7.1f} MiB = {hand / size:.2f}x pickled"
            )


def dominant_overhead(pair: Pair) -> tuple[str, float]:
    """The part where the plugin spends most beyond the hand-written code, and its seconds."""
    extra = {part: pair.plugin_s(part) - pair.hand_s(part) for part in PARTS}
    part = max(extra, key=lambda k: extra[k])
    return part, extra[part]


def forest_option_savings(
    parts: PluginParts,
    forest: Any,
    X: Any,
    y: Any,
    backends: list[str],
    results: dict[str, Pair],
    reps: int,
    all_backends: bool,
) -> dict[str, dict[str, float]]:
    """When the determinism re-run or the state walk dominates the overhead, time without it.

    Both are work on the original estimator (or the two objects in memory), the same for every
    backend, so one backend (the first where they dominate) shows the saving unless
    ``all_backends``.
    """
    variants = {
        "check_determinism=False": {"check_determinism": False},
        'state="ignore"': {"state": "ignore"},
        "both": {"check_determinism": False, "state": "ignore"},
    }
    savings: dict[str, dict[str, float]] = {}
    for backend in backends:
        pair = results[backend]
        if not pair.plugin or dominant_overhead(pair)[0] not in ("determinism", "state"):
            continue
        runs: dict[str, list[float]] = defaultdict(list)
        labels = ["default", *variants, "hand"]
        for rep in range(reps):
            for label in labels[rep % len(labels) :] + labels[: rep % len(labels)]:
                gc.collect()
                if label == "hand":
                    runs[label].append(hand_run(forest, X, y, backend).total)
                else:
                    options = variants.get(label, {})
                    runs[label].append(plugin_run(parts, forest, X, y, backend, **options).total)
        savings[backend] = {label: statistics.median(times) for label, times in runs.items()}
        if not all_backends:
            break
    return savings


def print_parts_table(results: dict[str, Pair]) -> None:
    header = f"{'backend':<18}{'side':<7}{'total':>8}{'ratio':>8}  " + "".join(
        f"{part:>12}" for part in PARTS
    )
    print(header + f"  {'outcome'}")
    print("-" * (len(header) + 10))
    for backend, pair in results.items():
        if not pair.plugin:
            print(f"{backend:<18}capped at {CAP_SECONDS:.0f} s before one repetition finished")
            continue
        ratio = pair.plugin_s() / pair.hand_s()
        for side, total in (("plugin", pair.plugin_s()), ("hand", pair.hand_s())):
            median = pair.plugin_s if side == "plugin" else pair.hand_s
            cells = "".join(
                f"{median(part):>12.3f}" if median(part) or side == "plugin" else f"{'-':>12}"
                for part in PARTS
            )
            shown_ratio = f"{ratio:>7.2f}x" if side == "plugin" else " " * 8
            name = backend if side == "plugin" else ""
            note = " (capped: fewer reps)" if pair.capped and side == "plugin" else ""
            print(
                f"{name:<18}{side:<7}{total:>8.2f}{shown_ratio}  {cells}  {pair.status(side)}{note}"
            )
    print("(parts are medians of each part, so they need not add up exactly to the total)")


def print_savings(savings: dict[str, dict[str, float]]) -> None:
    print(
        "\nBackends whose largest overhead is the determinism re-run or the state walk: "
        "check_persistence with options, re-timed together (median seconds, ratio to hand):"
    )
    labels = ["default", "check_determinism=False", 'state="ignore"', "both", "hand"]
    print(f"{'backend':<18}" + "".join(f"{label:>26}" for label in labels))
    for backend, row in savings.items():
        texts = [f"{row[label]:.2f} ({row[label] / row['hand']:.2f}x)" for label in labels]
        cells = "".join(f"{text:>26}" for text in texts)
        print(f"{backend:<18}{cells}")


# ---------------------------------------------------------------------------------------- sweep


@dataclass
class SweepTotals:
    """Per backend: the sweep's pairs by estimator name."""

    pairs: dict[str, Pair] = field(default_factory=dict)


def fitted_instances(every: int) -> tuple[list[tuple[str, Any, Any, Any]], dict[str, str]]:
    """``default_instances()[::every]`` fitted on ``make_fit_data`` (not timed)."""
    from pytest_persist.estimators.fit_data import default_instances, make_fit_data

    fitted, failed = [], {}
    for name, estimator in default_instances()[::every]:
        X, y = make_fit_data(estimator)
        try:
            estimator.fit(X) if y is None else estimator.fit(X, y)
        except Exception as error:
            failed[name] = f"{type(error).__name__}: {error}"[:120]
            continue
        fitted.append((name, estimator, X, y))
    return fitted, failed


def sweep_benchmark(
    parts: PluginParts, backends: list[str], every: int, reps: int
) -> dict[str, SweepTotals]:
    started = time.perf_counter()
    fitted, failed = fitted_instances(every)
    gc.freeze()
    subset = "every estimator" if every == 1 else f"every {every}th estimator"
    print(
        f"\n== 2. Sweep: {subset} of default_instances(), {len(fitted)} fitted "
        f"({time.perf_counter() - started:.1f} s, not timed); sum over estimators of the "
        f"median of {reps} rep(s), seconds",
        flush=True,
    )
    if failed:
        print(f"   not fitted: {failed}")
    totals = {backend: SweepTotals() for backend in backends}
    for index, (name, estimator, X, y) in enumerate(fitted):
        for backend in backends:
            totals[backend].pairs[name] = measure(
                parts, estimator, X, y, backend, reps, cap=CAP_SECONDS
            )
        if index % 20 == 19:
            print(f"   {index + 1}/{len(fitted)} estimators", file=sys.stderr, flush=True)
    print_sweep(totals)
    return totals


def _sums(pairs: list[Pair]) -> tuple[float, float]:
    return sum(p.plugin_s() for p in pairs), sum(p.hand_s() for p in pairs)


def print_sweep(totals: dict[str, SweepTotals]) -> None:
    print(
        f"{'backend':<18}{'n':>4}{'plugin':>9}{'hand':>8}{'ratio':>8}  "
        f"{'both pass':>9}{'plugin':>9}{'hand':>8}{'ratio':>8}  plugin outcomes / hand failures"
    )
    print("-" * 120)
    for backend, total in totals.items():
        pairs = [p for p in total.pairs.values() if p.plugin]
        plugin, hand = _sums(pairs)
        both = [p for p in pairs if p.status("plugin") == "passed" == p.status("hand")]
        both_plugin, both_hand = _sums(both)
        kinds = Counter(p.status("plugin") for p in pairs)
        hand_failed = Counter(p.status("hand") for p in pairs if p.status("hand") != "passed")
        print(
            f"{backend:<18}{len(pairs):>4}{plugin:>9.2f}{hand:>8.2f}{plugin / hand:>7.2f}x  "
            f"{len(both):>9}{both_plugin:>9.2f}{both_hand:>8.2f}"
            f"{both_plugin / max(both_hand, 1e-12):>7.2f}x  "
            f"{dict(kinds)} / {dict(hand_failed) or 'none'}"
        )
    print(
        "\nSweep, best repetition of each estimator (one slow conversion, e.g. "
        "QuantileTransformer's 3-4 s through ONNX, moves a median by up to 1 s):"
    )
    for backend, total in totals.items():
        pairs = [p for p in total.pairs.values() if p.plugin]
        both = [p for p in pairs if p.status("plugin") == "passed" == p.status("hand")]
        figures = []
        for label, chosen in (("all", pairs), ("both pass", both)):
            plugin = sum(p.best_s("plugin") for p in chosen)
            hand = sum(p.best_s("hand") for p in chosen)
            figures.append(f"{label}: {plugin:.2f} s vs {hand:.2f} s = {plugin / hand:.2f}x")
        print(f"{backend:<18}" + "; ".join(figures))
    print("\nSweep: the plugin's seconds by part (sum of per-estimator medians)")
    print(f"{'backend':<18}" + "".join(f"{part:>12}" for part in PARTS) + "  largest overheads")
    for backend, total in totals.items():
        pairs = {name: p for name, p in total.pairs.items() if p.plugin}
        sums = {part: sum(p.plugin_s(part) for p in pairs.values()) for part in PARTS}
        worst = sorted(pairs, key=lambda n: pairs[n].hand_s() - pairs[n].plugin_s())[:3]
        named = ", ".join(f"{n} +{pairs[n].plugin_s() - pairs[n].hand_s():.2f}s" for n in worst)
        print(f"{backend:<18}" + "".join(f"{sums[part]:>12.3f}" for part in PARTS) + f"  {named}")


# ----------------------------------------------------------------------------------------- peer


@dataclass
class PeerCounts:
    """One pass over the instances: seconds, and how each check ended."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    kinds: Counter = field(default_factory=Counter)
    methods: int = 0
    raised: dict[str, str] = field(default_factory=dict)


def sklearn_peer(instances: list[Any], variants: tuple[bool, ...] = (False, True)) -> PeerCounts:
    """scikit-learn's own ``check_estimators_pickle`` on every instance (fit included), once
    per ``readonly_memmap`` of ``variants``. Its test suite runs both (``_yield_checks``:
    ``pickle.dumps``/``loads`` in memory, then ``joblib.dump`` to a file and a read-only
    memory-mapped ``joblib.load``), which is what the plugin's pickle + joblib-mmap mirror."""
    from sklearn.utils.estimator_checks import check_estimators_pickle

    counts = PeerCounts()
    started, cpu_started = time.perf_counter(), time.process_time()
    for estimator in instances:
        for readonly_memmap in variants:
            try:
                check_estimators_pickle(
                    type(estimator).__name__, estimator, readonly_memmap=readonly_memmap
                )
            except Exception as error:  # AssertionError, SkipTest, or the fit failing
                counts.kinds["raised"] += 1
                counts.raised[type(estimator).__name__] = type(error).__name__
            else:
                counts.kinds["passed"] += 1
                # the four methods it compares, when the estimator has them (hasattr before fit)
                methods = ("predict", "transform", "decision_function", "predict_proba")
                counts.methods += sum(hasattr(estimator, m) for m in methods)
    counts.seconds = time.perf_counter() - started
    counts.cpu_seconds = time.process_time() - cpu_started
    return counts


def plugin_peer(instances: list[Any], backends: list[str]) -> PeerCounts:
    """The plugin's ``persistence_checks`` on the same instances (fit included, once each)."""
    from pytest_persist import persistence_checks

    counts = PeerCounts()
    started, cpu_started = time.perf_counter(), time.process_time()
    for estimator, check in persistence_checks(instances, backends=backends):
        try:
            outcome = check(estimator)
        except Exception as error:  # PersistUsageError: the tag-driven data cannot fit it
            counts.kinds["raised"] += 1
            counts.raised[type(estimator).__name__] = type(error).__name__
            continue
        counts.kinds[outcome.kind.value] += 1
        counts.methods += len(outcome.compared_methods)
        outcome.loaded = None
    counts.seconds = time.perf_counter() - started
    counts.cpu_seconds = time.process_time() - cpu_started
    return counts


def peer_benchmark(reps: int, backends: list[str]) -> None:
    """scikit-learn's ``check_estimators_pickle`` vs the plugin, over the instances
    scikit-learn's own test suite builds (``_tested_estimators()``): against both variants
    its suite runs per estimator (the like-for-like of pickle + joblib-mmap), and against the
    first one alone."""
    from sklearn.utils._test_common.instance_generator import _tested_estimators

    instances = list(_tested_estimators())
    print(
        f"\n== 3. Peer: scikit-learn's check_estimators_pickle vs the plugin's "
        f"persistence_checks ({' + '.join(backends)}) over the {len(instances)} instances of "
        f"sklearn.utils._test_common.instance_generator._tested_estimators(); fits included; "
        f"median of {reps} rep(s)",
        flush=True,
    )
    sides: dict[str, Callable[[], PeerCounts]] = {
        "plugin": lambda: plugin_peer(instances, backends),
        "scikit-learn, both": lambda: sklearn_peer(instances),
        "scikit-learn, plain": lambda: sklearn_peer(instances, (False,)),
    }
    runs: dict[str, list[PeerCounts]] = {side: [] for side in sides}
    for rep in range(reps):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for side in order:
            gc.collect()
            runs[side].append(sides[side]())
    wall = {side: statistics.median(r.seconds for r in rs) for side, rs in runs.items()}
    cpu = {side: statistics.median(r.cpu_seconds for r in rs) for side, rs in runs.items()}
    for side, side_runs in runs.items():
        last = side_runs[-1]
        checks = sum(last.kinds.values())
        print(
            f"{side:<20}{wall[side]:7.2f} s wall, {cpu[side]:7.2f} s CPU  {checks} checks: "
            f"{dict(last.kinds)}; methods compared {last.methods}; raised: {last.raised or 'none'}"
        )
    for side, what in (
        ("scikit-learn, both", "both variants its suite runs (readonly_memmap False and True)"),
        ("scikit-learn, plain", "the in-memory pickle variant alone"),
    ):
        print(
            f"ratio plugin / scikit-learn, {what}: {wall['plugin'] / wall[side]:.2f}x wall, "
            f"{cpu['plugin'] / cpu[side]:.2f}x CPU"
        )
    print("(CPU time is the steadier figure on a shared machine)")


# ------------------------------------------------------------------------------------------ main


def summary(forest: dict[str, Pair], sweep: dict[str, SweepTotals]) -> None:
    print("\n== Summary: plugin time / hand-written time (the plugin's overhead ratio)")
    for backend in forest or sweep:
        pair = forest.get(backend, Pair())
        if backend not in forest:
            forest_text = "forest not run"
        elif pair.plugin:
            part, extra = dominant_overhead(pair)
            forest_text = (
                f"forest {pair.plugin_s() / pair.hand_s():.2f}x "
                f"({pair.plugin_s():.2f} s vs {pair.hand_s():.2f} s; largest extra: "
                f"{part} +{extra:.2f} s)"
            )
        else:
            forest_text = f"forest capped at {CAP_SECONDS:.0f} s"
        sweep_text = ""
        if backend in sweep:
            plugin, hand = _sums([p for p in sweep[backend].pairs.values() if p.plugin])
            sweep_text = f"; sweep {plugin / hand:.2f}x ({plugin:.1f} s vs {hand:.1f} s)"
        print(f"{backend:<18}{forest_text}{sweep_text}")


def main() -> None:
    global CAP_SECONDS
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="50 trees, 5k rows, every 6th sweep estimator"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (medians)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--all-options", action="store_true", help="time the options on every backend"
    )
    parser.add_argument("--skip-forest", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--cap", type=float, default=300.0, help="seconds per backend before giving up"
    )
    parser.add_argument(
        "--peer-backends", default="pickle,joblib-mmap", help="the plugin's side of the peer run"
    )
    args = parser.parse_args()
    CAP_SECONDS = args.cap

    from pytest_persist.backends import BackendRegistry

    registry = BackendRegistry()
    backends = [b for b in args.backends.split(",") if registry[b].is_available()]
    n_trees, n_rows, every = (50, 5_000, 6) if args.quick else (300, 20_000, 1)
    option_reps = 1 if args.quick else args.reps

    parts = PluginParts()
    started = time.perf_counter()
    with quiet(), parts.installed():
        warm_up(parts, backends)
        gc.freeze()
        forest = {}
        if not args.skip_forest:
            forest = forest_benchmark(
                parts, backends, n_trees, n_rows, args.reps, option_reps, args.all_options
            )
        sweep = {}
        if not args.skip_sweep:
            sweep = sweep_benchmark(parts, backends, every, args.reps)
    with quiet():  # the peer run, unwrapped: nothing splits it into parts
        if not args.skip_peer:
            peer_benchmark(args.reps, args.peer_backends.split(","))
    summary(forest, sweep)
    print(f"\n(total wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
