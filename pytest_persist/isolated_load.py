"""Check a stored artifact in this environment, loading it in a subprocess.

An artifact from another environment can crash or hang the interpreter that unpickles it, so
the parent verifies its checksums, then runs ``python -m pytest_persist.isolated_load
REQUEST.json`` with a timeout. The child loads the artifact under
``capture_version_warnings``, computes the stored methods on the stored X, and writes its
outputs (``outputs_codec``) and a JSON result; the parent compares and builds the ``Outcome``.
The child streams its progress (phase, version warnings) to files, so a crash or a hang still
says where it happened and which warnings came first.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .hints import load_error_hint
from .outcome import Outcome, OutcomeKind, VersionWarningRecord
from .store import StoredEntry, TamperedArtifactError
from .versions import environment_fingerprint

__all__ = ["DEFAULT_TIMEOUT", "check_entry", "main"]

DEFAULT_TIMEOUT = 120.0
_REQUEST = "request.json"
_RESULT = "result.json"
_PHASE = "phase.txt"
_WARNINGS = "warnings.jsonl"
_OUTPUTS = "outputs.npz"
_OUTPUTS_DESCRIPTION = "outputs.json"
_STDERR = "stderr.txt"
_STDERR_TAIL = 4000
#: Environment keys shown in ``Outcome.versions`` (plus the backend's libraries).
_VERSION_KEYS = ("python", "scikit-learn", "numpy", "scipy")


def check_entry(
    entry: StoredEntry,
    *,
    registry: Any,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float | None = None,
    atol: float | None = None,
    exact: bool | None = None,
    check_dtype: bool | None = None,
    max_label_flips: float | None = None,
    version_warning: str = "record",
    options: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    python: str | None = None,
) -> Outcome:
    """Load ``entry`` in a subprocess and compare its outputs with the stored ones.

    ``rtol``, ``atol``, ``exact`` and ``max_label_flips`` default to what the saving test
    applied (stored with the entry), else to the backend's defaults; ``check_dtype`` to
    whether the backend gives back the very objects (not for ONNX); ``env`` is the child's
    environment (default: this one, with this interpreter's import paths);
    ``version_warning`` is ``record`` or ``error`` (fail at the first version warning, as a
    ``load_error``); ``options`` override the backend options stored with the entry (e.g.
    this environment's skops ``trusted``).
    """
    loaded_environment = environment_fingerprint()
    outcome = Outcome(
        kind=OutcomeKind.PASSED,
        estimator=entry.estimator_name,
        backend=entry.backend,
        test_id=entry.test_id,
        artifact_bytes=entry.artifact_bytes,
        versions=_versions(entry.environment, loaded_environment, entry.backend),
        details={
            "entry": str(entry.path),
            "estimator_class": entry.estimator_class,
            "saved_environment": dict(entry.environment),
            "loaded_environment": loaded_environment,
            "created": entry.created,
        },
    )
    if entry.extra is not None:
        outcome.details["extra"] = entry.extra
    outcome.not_compared.update(entry.not_compared)

    if entry.backend not in registry:
        return _finish(
            outcome,
            OutcomeKind.UNAVAILABLE,
            f"backend {entry.backend!r} is not registered here "
            f"(known: {', '.join(registry.names)})",
        )
    backend = registry[entry.backend]
    if not backend.is_available():
        return _finish(outcome, OutcomeKind.UNAVAILABLE, backend.unavailable_reason())

    try:
        entry.verify()  # before anything is unpickled
    except TamperedArtifactError as exc:
        outcome.details["refused"] = True
        return _finish(outcome, OutcomeKind.LOAD_ERROR, str(exc))

    stored = entry.comparison
    rtol = _first_set(rtol, stored.get("rtol"), backend.default_rtol)
    atol = _first_set(atol, stored.get("atol"), backend.default_atol)
    exact = bool(_first_set(exact, stored.get("exact"), False))
    max_label_flips = _first_set(max_label_flips, stored.get("max_label_flips"), 0.0)
    outcome.comparison = {
        "rtol": rtol,
        "atol": atol,
        "exact": exact,
        "max_label_flips": max_label_flips,
    }
    check_dtype = backend.preserves_objects if check_dtype is None else check_dtype
    with tempfile.TemporaryDirectory(prefix="pytest-persist-check-") as workdir_name:
        workdir = Path(workdir_name)
        request = {
            "entry": str(entry.path),
            "backend": entry.backend,
            "backend_class": f"{type(backend).__module__}:{type(backend).__qualname__}",
            "mode": version_warning,
            # A converted model (ONNX) may not offer every method: not compared, not an error.
            # An unpickled one that lost a method is an error (as across scikit-learn versions).
            "absent_is_error": backend.preserves_objects,
            "options": {**entry.backend_options, **(options or {})},
        }
        (workdir / _REQUEST).write_text(json.dumps(request), encoding="utf-8")
        started = time.perf_counter()
        returncode, timed_out = _run_child(workdir, timeout, env, python)
        outcome.details["subprocess_seconds"] = round(time.perf_counter() - started, 4)
        outcome.version_warnings = _read_warnings(workdir / _WARNINGS)
        phase = _read_text(workdir / _PHASE).strip() or "start"
        result_path = workdir / _RESULT

        if timed_out or not result_path.exists():
            outcome.details["stderr"] = _read_text(workdir / _STDERR)[-_STDERR_TAIL:]
            if timed_out:
                what = f"timed out after {timeout:g} s"
            elif returncode is not None and returncode < 0:
                what = f"crashed with {_signal_name(-returncode)}"
            else:
                what = f"exited with code {returncode} and no result"
            return _died(outcome, phase, what)

        result = json.loads(result_path.read_text(encoding="utf-8"))
        outcome.load_seconds = result.get("load_seconds")
        outcome.details.update(result.get("backend_details", {}))
        for method in result.get("absent", []):
            outcome.not_compared[method] = f"the {entry.backend} model does not provide it"
        if "import_seconds" in result:
            outcome.details["import_seconds"] = result["import_seconds"]
        if result.get("load_error"):
            error = result["load_error"]
            outcome.details["traceback"] = error.get("traceback", "")
            outcome.details["warning_before_error"] = bool(outcome.version_warnings)
            message = f"{error['type']}: {error['message']}"
            hint = load_error_hint(
                message,
                estimator_class=entry.estimator_class,
                backend=entry.backend,
                test_id=entry.test_id,
            )
            if hint:
                message += f"\n  hint: {hint}"
            return _finish(outcome, OutcomeKind.LOAD_ERROR, message)

        method_errors: dict[str, str] = result.get("method_errors", {})
        actual: dict[str, Any] = {}
        if result.get("methods"):
            from . import outputs_codec

            actual = outputs_codec.read(workdir / _OUTPUTS, workdir / _OUTPUTS_DESCRIPTION)[
                "outputs"
            ]

    from .compare import compare_outputs

    expected = entry.load_data().expected
    outcome.compared_methods = [m for m in entry.methods if m in actual]
    outcome.differences = compare_outputs(
        {m: expected[m] for m in outcome.compared_methods},
        actual,
        rtol=rtol,
        atol=atol,
        exact=exact,
        check_dtype=check_dtype,
        max_label_flips=max_label_flips,
    )
    if method_errors:
        outcome.details["method_errors"] = method_errors
        shown = "; ".join(f"{m}: {reason}" for m, reason in method_errors.items())
        return _finish(outcome, OutcomeKind.METHOD_ERROR, f"loaded, then {shown}")
    if any(not d.tolerated for d in outcome.differences):
        return _finish(outcome, OutcomeKind.MISMATCH, "")
    return outcome


def _finish(outcome: Outcome, kind: OutcomeKind, error: str) -> Outcome:
    outcome.kind = kind
    outcome.error = error
    return outcome


def _died(outcome: Outcome, phase: str, what: str) -> Outcome:
    """The child ended without a result: a crash, a hang or an early exit, placed by phase."""
    if phase.startswith("method:"):
        method = phase.split(":", 1)[1]
        outcome.details["method_errors"] = {method: f"the loader {what}"}
        return _finish(outcome, OutcomeKind.METHOD_ERROR, f"loaded, then {method}: {what}")
    outcome.details["warning_before_error"] = bool(outcome.version_warnings)
    where = "while loading" if phase == "load" else f"before loading (phase {phase!r})"
    return _finish(outcome, OutcomeKind.LOAD_ERROR, f"the loader {what} {where}")


def _run_child(
    workdir: Path, timeout: float, env: dict[str, str] | None, python: str | None
) -> tuple[int | None, bool]:
    command = [python or sys.executable, "-m", "pytest_persist.isolated_load", str(workdir)]
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in [child_env.get("PYTHONPATH", ""), *_import_paths()] if p
    )
    child_env.setdefault("PYTHONFAULTHANDLER", "1")  # a crash prints the Python stack
    posix = os.name == "posix"
    with open(workdir / _STDERR, "wb") as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env=child_env,
            start_new_session=posix,  # so a timeout kills the loader's own children too
        )
        try:
            return process.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            if posix:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            else:  # pragma: no cover
                process.kill()
            process.wait()
            return None, True


def _import_paths() -> list[str]:
    """This interpreter's import paths outside its installation (test dirs, rootdir...),
    so the child can import what the parent can."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if any(real == p or real.startswith(p + os.sep) for p in prefixes):
            continue
        paths.append(entry)
    return paths


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _versions(saved: dict[str, str], loaded: dict[str, str], backend: str) -> dict[str, str]:
    keys = list(_VERSION_KEYS)
    keys += {
        "joblib": ["joblib"],
        "joblib-mmap": ["joblib"],
        "joblib-compressed": ["joblib"],
        "cloudpickle": ["cloudpickle"],
        "skops": ["skops"],
        "onnx": ["skl2onnx", "onnxruntime"],
    }.get(backend, [])
    versions = {}
    for key in keys:
        before, now = saved.get(key), loaded.get(key)
        if before is None and now is None:
            continue
        versions[key] = now if before == now else f"{before or '?'} -> {now or 'missing'}"
    return versions


def _read_warnings(path: Path) -> list[VersionWarningRecord]:
    records = []
    for line in _read_text(path).splitlines():
        try:
            records.append(VersionWarningRecord(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut short by a crash
    return records


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


# ----------------------------------------------------------------------------------------------
# the child


def main(argv: list[str] | None = None) -> int:
    """Entry point of the loader subprocess: ``python -m pytest_persist.isolated_load DIR``."""
    argv = sys.argv[1:] if argv is None else argv
    workdir = Path(argv[0])
    request = json.loads((workdir / _REQUEST).read_text(encoding="utf-8"))
    phase_file = workdir / _PHASE

    def phase(name: str) -> None:
        phase_file.write_text(name, encoding="utf-8")

    phase("start")
    result: dict[str, Any] = {"load_error": None, "method_errors": {}, "methods": []}
    from dataclasses import asdict

    from . import outputs_codec
    from .backends.base import BackendCall
    from .store import read_entry
    from .versions import capture_version_warnings

    entry = read_entry(request["entry"])
    data = entry.load_data()
    module_name, _, qualname = request["backend_class"].partition(":")
    backend_class: Any = __import__(module_name, fromlist=["_"])
    for part in qualname.split("."):
        backend_class = getattr(backend_class, part)
    backend = backend_class()

    with open(workdir / _WARNINGS, "a", encoding="utf-8") as warnings_file:

        def on_record(record: VersionWarningRecord) -> None:
            warnings_file.write(json.dumps(asdict(record)) + "\n")
            warnings_file.flush()

        phase("load")
        started = imported = time.perf_counter()
        call = BackendCall(X=data.X, options=dict(request["options"]))
        try:
            with capture_version_warnings(request["mode"], on_record=on_record):
                # Import the estimator's module first, so that load_seconds is the load alone
                # (a fresh interpreter spends seconds importing scikit-learn).
                with contextlib.suppress(Exception):
                    importlib.import_module(entry.estimator_class.rpartition(".")[0])
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

    from .compare import available_methods, compute_outputs

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
            outputs_codec.encode({"outputs": {method: got[method]}})
        except outputs_codec.UnsupportedValueError as exc:
            result["method_errors"][method] = f"output cannot be stored: {exc}"
            continue
        outputs[method] = got[method]
    phase("write")
    outputs_codec.write(workdir / _OUTPUTS, workdir / _OUTPUTS_DESCRIPTION, {"outputs": outputs})
    result["methods"] = list(outputs)
    _write_result(workdir, result)
    phase("done")
    return 0


def _write_result(workdir: Path, result: dict[str, Any]) -> None:
    temp = workdir / (_RESULT + ".tmp")
    temp.write_text(json.dumps(result, default=str), encoding="utf-8")
    os.replace(temp, workdir / _RESULT)


if __name__ == "__main__":
    sys.exit(main())


def _first_set(*values: Any) -> Any:
    """The first value that is not None."""
    return next(value for value in values if value is not None)
