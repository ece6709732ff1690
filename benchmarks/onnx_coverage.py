"""How much of scikit-learn the ONNX backend covers: convert, load, compare, for every estimator.

Every class from ``sklearn.utils.all_estimators()`` that builds with default arguments is fitted
on small data (iris for classifiers, clusterers, transformers and outlier detectors; diabetes
for regressors; a few sentences for text vectorizers), cast to float32 first so that both sides
see identical inputs and only the conversion is measured. Each is then dumped and loaded by
``OnnxBackend`` and every method the graph answers is compared with the estimator's own:
labels may flip on at most ``--flip-cap`` of the rows, everything else at the backend's
default tolerances (rtol 1e-4, atol 1e-5).

Run on demand (each estimator in a worker process, so a crash or a hang costs one row):

    python benchmarks/onnx_coverage.py [--jobs 2] [--timeout 120] [--show agree|...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import traceback
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, TimeoutError
from pathlib import Path
from typing import Any

import numpy as np

TEXT = [
    "The cat sat on the mat",
    "the dog barked at the cat",
    "A bird sang; the dog slept",
    "cats and dogs and birds",
    "a quiet evening with the dog",
]
NEEDS_SPECIAL_INPUT = {"DictVectorizer", "FeatureHasher", "PatchExtractor", "IsotonicRegression"}
TEXT_VECTORIZERS = {"CountVectorizer", "TfidfVectorizer", "HashingVectorizer"}


def _data(name: str, estimator: Any) -> tuple[Any, Any]:
    from sklearn.base import is_regressor
    from sklearn.datasets import load_diabetes, load_iris

    if name in TEXT_VECTORIZERS:
        return list(TEXT), None
    if is_regressor(estimator):
        X, y = load_diabetes(return_X_y=True)
        return X.astype(np.float32), y
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


def _fit(estimator: Any, X: Any, y: Any) -> Any:
    try:
        return estimator.fit(X, y)
    except TypeError:
        return estimator.fit(X)


def _compare(estimator: Any, loaded: Any, X: Any, flip_cap: float) -> tuple[bool, float, str]:
    """(agree, largest float difference, first disagreement)."""
    from pytest_persist.backends.onnx_runtime import OnnxBackend

    backend = OnnxBackend()
    worst = 0.0
    for method in loaded.methods:
        expected = getattr(estimator, method)(X)
        if hasattr(expected, "toarray"):
            expected = expected.toarray()
        expected = np.asarray(expected)
        actual = np.asarray(getattr(loaded, method)(X))
        if expected.shape != actual.shape:
            return False, worst, f"{method}: shape {actual.shape} != {expected.shape}"
        if method == "predict" and expected.dtype.kind not in "f":
            flipped = float(np.mean(expected != actual))
            if flipped > flip_cap:
                return False, worst, f"predict: {flipped:.1%} of labels differ"
            continue
        expected, actual = expected.astype(np.float64), actual.astype(np.float64)
        finite = np.isfinite(expected) & np.isfinite(actual)
        if method != "predict_log_proba" and finite.any():
            worst = max(worst, float(np.max(np.abs(expected[finite] - actual[finite]))))
        try:
            np.testing.assert_allclose(
                actual, expected, rtol=backend.default_rtol, atol=backend.default_atol
            )
        except AssertionError as error:
            lines = [line for line in str(error).splitlines() if "Max absolute" in line]
            return False, worst, f"{method}: {lines[0].strip() if lines else 'differs'}"
    return True, worst, ""


def run_one(name: str, flip_cap: float) -> dict[str, Any]:
    """Build, fit, convert, load and compare one estimator class; never raises."""
    warnings.simplefilter("ignore")
    from sklearn.utils import all_estimators

    from pytest_persist.backends.base import BackendCall, UnsupportedEstimator
    from pytest_persist.backends.onnx_runtime import OnnxBackend

    row: dict[str, Any] = {"name": name}
    cls = dict(all_estimators())[name]
    if name in NEEDS_SPECIAL_INPUT:
        return {**row, "status": "skipped", "message": "needs special input"}
    try:
        estimator = cls()
    except TypeError as error:
        return {**row, "status": "skipped", "message": f"needs arguments: {error}"}
    try:
        X, y = _data(name, estimator)
        _fit(estimator, X, y)
    except Exception as error:
        return {**row, "status": "skipped", "message": f"fit failed: {error}"[:200]}

    backend = OnnxBackend()
    call = BackendCall(X=X)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        start = time.perf_counter()
        try:
            backend.dump(estimator, path, call)
        except UnsupportedEstimator as error:
            return {**row, "status": "unsupported", "message": str(error)}
        except Exception as error:
            return {**row, "status": "dump_error", "message": repr(error)[:300]}
        finally:
            row["convert_seconds"] = time.perf_counter() - start
        row["retries"] = call.details.get("onnx_retries", [])
        try:
            loaded = backend.load(path, BackendCall())
        except Exception as error:
            return {**row, "status": "load_error", "message": repr(error)[:300]}
        row["methods"] = list(loaded.methods)
        try:
            agree, worst, message = _compare(estimator, loaded, X, flip_cap)
        except Exception as error:
            tail = traceback.format_exception_only(type(error), error)[-1].strip()
            return {**row, "status": "method_error", "message": tail[:300]}
    if not row["methods"]:
        return {**row, "status": "mismatch", "message": "no output mapped to a method"}
    return {
        **row,
        "status": "agree" if agree else "mismatch",
        "max_abs_diff": worst,
        "message": message,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per estimator")
    parser.add_argument("--flip-cap", type=float, default=0.02)
    parser.add_argument(
        "--show",
        nargs="*",
        default=["mismatch", "dump_error", "load_error", "method_error", "timeout"],
        help="statuses whose rows are listed",
    )
    args = parser.parse_args()

    from sklearn.utils import all_estimators

    names = [name for name, _ in all_estimators()]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {name: pool.submit(run_one, name, args.flip_cap) for name in names}
        for name, future in futures.items():
            try:
                rows.append(future.result(timeout=args.timeout))
            except TimeoutError:
                rows.append({"name": name, "status": "timeout", "message": ""})
            except Exception as error:  # a crashed worker
                rows.append({"name": name, "status": "crash", "message": repr(error)[:200]})
    elapsed = time.perf_counter() - started

    counts = Counter(row["status"] for row in rows)
    tried = len(rows) - counts["skipped"]
    print(
        f"{len(rows)} estimators in all_estimators(); {counts['skipped']} skipped "
        f"(need arguments or special input); {tried} tried, in {elapsed:.0f} s"
    )
    for status in (
        "agree",
        "unsupported",
        "mismatch",
        "dump_error",
        "load_error",
        "method_error",
        "timeout",
        "crash",
    ):
        if counts[status]:
            print(f"  {status:<13} {counts[status]:>4}")
    diffs = [row["max_abs_diff"] for row in rows if row["status"] == "agree"]
    if diffs:
        largest = max(
            (row for row in rows if row["status"] == "agree"), key=lambda row: row["max_abs_diff"]
        )
        print(
            f"max abs difference among agreeing: median {statistics.median(diffs):.1e}, "
            f"largest {largest['max_abs_diff']:.1e} ({largest['name']})"
        )
    retried = [row for row in rows if row.get("retries")]
    print(f"retried: {len(retried)}")
    for row in retried:
        print(f"  {row['name']}: {'; '.join(row['retries'])}")
    timed = sorted(
        (row for row in rows if "convert_seconds" in row), key=lambda row: -row["convert_seconds"]
    )
    print("slowest conversions:")
    for row in timed[:8]:
        print(f"  {row['convert_seconds']:7.2f} s  {row['name']} ({row['status']})")
    for status in args.show:
        listed = [row for row in rows if row["status"] == status]
        if listed:
            print(f"{status}:")
            for row in listed:
                print(f"  {row['name']}: {row.get('message', '')}")


if __name__ == "__main__":
    main()
