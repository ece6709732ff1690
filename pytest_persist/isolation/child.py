"""The child side of a stored entry's check, in a forked child of the warm server or a fresh
interpreter (``python -m pytest_persist.isolation.child DIR``).

It enters the sandbox and limits that ``request.json`` describes (``loader.enter_child``),
loads the artifact under ``capture_version_warnings``, computes the stored methods on the
stored X, and writes its outputs (``store.codec``) and a JSON result into the check's
directory, streaming its phase and version warnings to files as it goes, so that a crash or a
hang still says where it happened. The parent side is ``check``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..environments.version_warnings import VersionWarningRecord
from .loader import end_children, enter_child

__all__ = ["main", "run_child", "warm_up"]

#: The files of a check's directory: written by the parent (request) or the child (the rest).
REQUEST = "request.json"
RESULT = "result.json"
PHASE = "phase.txt"
WARNINGS = "warnings.jsonl"
OUTPUTS = "outputs.npz"
OUTPUTS_DESCRIPTION = "outputs.json"
STDERR = "stderr.txt"


def warm_up() -> None:
    """What every child would do first, done once in the fork server: fit and call every
    method of two tiny models, round-trip the outputs file format, and have narwhals find its
    plugins (scikit-learn >= 1.8 asks it whether X is a dataframe). A forked child then finds
    scikit-learn's caches and lazily built state filled: measured, it halves the time of the
    stored methods' calls (14 -> 7.5 ms median over 13 small models).

    Thread pools are limited to one thread meanwhile, so the server still starts no OpenMP
    pool before it forks; the models (a logistic regression, a decision tree) use none anyway.
    """
    import warnings

    import numpy as np
    from threadpoolctl import threadpool_limits

    from ..roundtrip.compare import available_methods, compute_outputs
    from ..store import codec

    with contextlib.suppress(Exception):
        from narwhals.plugins import _discover_entrypoints

        _discover_entrypoints()
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    X = np.random.default_rng(0).random((20, 3))
    y = np.arange(20) % 2
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in (LogisticRegression(), DecisionTreeClassifier(random_state=0)):
            model.fit(X, y)
            outputs, _ = compute_outputs(model, X, y, available_methods(model, with_y=True))
        with tempfile.TemporaryDirectory(prefix="pytest-persist-warm-up-") as directory:
            files = Path(directory) / "data.npz", Path(directory) / "data.json"
            codec.write(*files, {"inputs": {"X": X, "y": y}, "outputs": outputs})
            codec.read(*files)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a fresh loader interpreter: ``python -m pytest_persist.isolation.child
    DIR`` (the ``process`` isolation)."""
    argv = sys.argv[1:] if argv is None else argv
    return run_child(Path(argv[0]), replace_environ=False)


def run_child(workdir: Path, *, replace_environ: bool) -> int:
    """The child side, in a forked child or a fresh interpreter: enter the limits and
    environment of ``request.json``, load, compute the stored methods, write the results;
    then end whatever the loaded model started (this process adopts its orphans)."""
    try:
        return _check(workdir, replace_environ=replace_environ)
    finally:
        _end_what_it_started()


def _end_what_it_started() -> None:
    """Kill the processes the artifact started, detached or not (cheap when there are none:
    ``waitpid`` says so without reading ``/proc``)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return
    end_children(os.getpid())


def _check(workdir: Path, *, replace_environ: bool) -> int:
    request = json.loads((workdir / REQUEST).read_text(encoding="utf-8"))
    sandboxed = enter_child(request.get("child", {}), replace_environ=replace_environ)
    phase_fd = os.open(workdir / PHASE, os.O_WRONLY | os.O_CREAT, 0o600)

    def phase(name: str) -> None:  # one descriptor, rewritten in place: cheap per method
        data = name.encode()
        os.pwrite(phase_fd, data, 0)
        os.ftruncate(phase_fd, len(data))

    phase("start")
    result: dict[str, Any] = {
        "load_error": None,
        "method_errors": {},
        "methods": [],
        "sandbox": sandboxed,
    }
    from ..backends.base import BackendCall
    from ..environments.version_warnings import capture_version_warnings
    from ..store import codec
    from ..store.entries import StoreError, read_entry

    entry = read_entry(request["entry"])
    try:
        data = entry.load_data()
    except StoreError as exc:  # the stored inputs themselves are bad: say so, as a result
        error = {"type": "StoreError", "message": str(exc), "traceback": ""}
        _write_result(workdir, {**result, "load_error": error})
        return 0
    module_name, _, qualname = request["backend_class"].partition(":")
    backend_class: Any = __import__(module_name, fromlist=["_"])
    for part in qualname.split("."):
        backend_class = getattr(backend_class, part)
    backend = backend_class()

    with open(workdir / WARNINGS, "a", encoding="utf-8") as warnings_file:

        def on_record(record: VersionWarningRecord) -> None:
            warnings_file.write(json.dumps(asdict(record)) + "\n")
            warnings_file.flush()

        phase("load")
        started = imported = time.perf_counter()
        call = BackendCall(X=data.X, options=dict(request["options"]))
        try:
            with capture_version_warnings(request["mode"], on_record=on_record):
                # Import the estimator's module first, so that load_seconds is the load alone
                # (a fresh interpreter spends seconds importing scikit-learn); only for an
                # entry a trusted key signed (the parent decides), and never from the store.
                if request.get("preimport"):
                    with contextlib.suppress(Exception):
                        importlib.import_module(request["preimport"])
                imported = time.perf_counter()
                result["import_seconds"] = round(imported - started, 6)
                loaded = backend.load(entry.artifact_path, call)
        except BaseException as exc:  # anything the unpickling raises is the result
            if isinstance(exc, KeyboardInterrupt):
                raise
            result["load_error"] = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(),
            }
            result["backend_details"] = call.details  # e.g. the untrusted types skops saw
            _write_result(workdir, result)
            return 0
        result["load_seconds"] = round(time.perf_counter() - imported, 6)
        result["backend_details"] = call.details

    from ..roundtrip.compare import available_methods, compute_outputs

    outputs: dict[str, Any] = {}
    y = data.y if entry.has_y else None
    methods = list(entry.methods)
    if not request["absent_is_error"]:
        offered = available_methods(loaded, with_y=y is not None)
        result["absent"] = [m for m in methods if m not in offered]
        methods = [m for m in methods if m in offered]

    transformed = data.expected.get("transform")
    for method in methods:
        phase(f"method:{method}")
        kwargs = {"transformed": transformed} if method == "inverse_transform" else {}
        got, errors = compute_outputs(loaded, data.X, y, [method], **kwargs)
        result["method_errors"].update(errors)
        if method not in got:
            continue
        try:
            codec.encode({"outputs": {method: got[method]}})
        except codec.UnsupportedValueError as exc:
            result["method_errors"][method] = f"output cannot be stored: {exc}"
            continue
        outputs[method] = got[method]
    phase("write")
    _write_outputs(workdir, outputs)
    result["methods"] = list(outputs)
    _write_result(workdir, result)
    phase("done")
    return 0


def _write_outputs(workdir: Path, outputs: dict[str, Any]) -> None:
    """What ``codec.write`` writes, without its fsync: the parent reads these files
    before the temporary directory goes, durability is not needed."""
    import numpy as np

    from ..store import codec

    arrays, description = codec.encode({"outputs": outputs})
    with open(workdir / OUTPUTS, "wb") as handle:
        np.savez(handle, **arrays)
    (workdir / OUTPUTS_DESCRIPTION).write_text(
        json.dumps(description, allow_nan=False), encoding="utf-8"
    )


def _write_result(workdir: Path, result: dict[str, Any]) -> None:
    temp = workdir / (RESULT + ".tmp")
    temp.write_text(json.dumps(result, default=str), encoding="utf-8")
    os.replace(temp, workdir / RESULT)


if __name__ == "__main__":
    sys.exit(main())
