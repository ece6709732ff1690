"""Check a stored artifact in this environment, loading it in an isolated child.

An artifact from another environment can crash or hang the interpreter that unpickles it, so
the parent verifies its checksums and signature, writes ``request.json`` into a fresh
directory and has a loader (``loader``: a forked child of a warm server, or a fresh
interpreter) run the child side (``child``) with a timeout, a clean environment, resource
limits and a sandbox. This module is the parent's side: it reads what the child wrote,
compares it with the stored outputs and builds the ``Outcome``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..environments.fingerprint import environment_fingerprint
from ..environments.version_warnings import VersionWarningRecord
from ..results.outcome import Outcome, OutcomeKind, by_reason
from ..roundtrip.hints import load_error_hint
from ..store.entries import StoredEntry, StoreError, TamperedArtifactError, snapshot_entry
from ..store.signing import SigningKeyError, TrustPolicy, refusal_message
from .cgroups import CheckGroup, make_check_group
from .child import OUTPUTS, OUTPUTS_DESCRIPTION, PHASE, REQUEST, RESULT, STDERR, WARNINGS
from .loader import (
    CORE_PRELOAD,
    DEFAULT_MAX_MEMORY,
    SKLEARN_SUBPACKAGES,
    ChildExit,
    Limits,
    Loader,
    ProcessLoader,
    Ticket,
    beneath,
    clean_environment,
    default_loader,
    format_size,
    import_paths,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "PendingCheck",
    "check_entry",
    "start_check",
    "store_preload",
]

DEFAULT_TIMEOUT = 120.0
#: Where in a check's directory the snapshot of its entry goes.
SNAPSHOT = "entry"
_STDERR_TAIL = 4000
#: Environment keys shown in ``Outcome.versions`` (plus the backend's libraries).
_VERSION_KEYS = ("python", "scikit-learn", "numpy", "scipy")


def check_entry(entry: StoredEntry, **options: Any) -> Outcome:
    """Load ``entry`` in an isolated child and compare its outputs with the stored ones
    (:func:`start_check`'s keywords), waiting for the result."""
    return start_check(entry, **options).result()


def start_check(
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
    loader: Loader | None = None,
    max_memory: int | None = DEFAULT_MAX_MEMORY,
    trust: TrustPolicy | None = None,
    absent_is_error: bool | None = None,
) -> PendingCheck:
    """Verify ``entry`` and hand its child to the loader without waiting for it: the
    returned check's ``result()`` waits and compares its outputs with the stored ones, so the
    caller may start the next entry's check meanwhile.

    ``rtol``, ``atol``, ``exact`` and ``max_label_flips`` default to what the saving test
    applied (stored with the entry), else to the backend's defaults; ``check_dtype`` to
    whether the backend gives back the very objects (not for ONNX); ``env`` is the child's
    environment (default: the variables of this one that Python and the libraries need; in
    both cases without a variable whose name looks secret, see ``loader.clean_environment``),
    with this interpreter's import paths added; ``loader`` runs the child (default: this
    process's fork loader, or one interpreter per artifact where fork is unavailable or
    ``python`` names another interpreter); ``max_memory`` caps the child's memory in bytes
    (None: no cap); the CPU time cap follows ``timeout``;
    ``version_warning`` is ``record`` or ``error`` (fail at the first version warning, as a
    ``load_error``); ``options`` override the backend options stored with the entry (e.g.
    this environment's skops ``trusted``). ``trust`` says which signing keys are trusted
    (default: this account's key, see ``signing``): an entry of a backend whose loading runs
    code (the pickle family) is unpickled only when signed by one of them.
    ``absent_is_error`` says whether a stored method the loaded model lacks is an error
    (default: for the backends that give back the very objects) or left out as not compared;
    the outputs the child computed are kept in the check's ``actual_outputs``.
    """
    outcome = _outcome_of(entry, entry.path)
    if entry.backend not in registry:
        return PendingCheck.ended(
            _finish(
                outcome,
                OutcomeKind.UNAVAILABLE,
                f"backend {entry.backend!r} is not registered here "
                f"(known: {', '.join(registry.names)})",
            )
        )
    backend = registry[entry.backend]
    if not backend.is_available():
        return PendingCheck.ended(
            _finish(outcome, OutcomeKind.UNAVAILABLE, backend.unavailable_reason())
        )

    policy = TrustPolicy.from_options() if trust is None else trust
    workdir = Path(tempfile.mkdtemp(prefix="pytest-persist-check-"))
    try:
        # One whole version of the entry, verified as it is copied: a save that replaces it
        # meanwhile is seen either entirely or not at all, and the child reads only the copy.
        try:
            snapshot = snapshot_entry(entry.path, workdir / SNAPSHOT)
        except StoreError as exc:
            outcome.details["refused"] = True
            shutil.rmtree(workdir, ignore_errors=True)
            return PendingCheck.ended(_finish(outcome, OutcomeKind.LOAD_ERROR, str(exc)))
        copy = snapshot.entry
        outcome = _outcome_of(copy, entry.path)
        try:
            options = _trusted_options(copy, entry, backend, outcome, policy, options)
        except (TamperedArtifactError, SigningKeyError) as exc:
            outcome.details["refused"] = True
            shutil.rmtree(workdir, ignore_errors=True)
            return PendingCheck.ended(_finish(outcome, OutcomeKind.LOAD_ERROR, str(exc)))
        signature = outcome.details["signature"]
        # What an entry.json names is imported only once a trusted key vouched for it (or the
        # user chose to load unsigned pickles): an ONNX or skops entry needs no signature to be
        # loaded, and importing the class module it names would run whatever file it finds.
        vouched = signature["status"] == "trusted" or "loaded_anyway" in signature

        stored = copy.comparison
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
        if python is not None and os.path.abspath(python) != os.path.abspath(sys.executable):
            loader = ProcessLoader(python, note=f"python={python} is another interpreter")
        elif loader is None:
            loader = default_loader()
        limits = Limits.for_timeout(timeout, max_memory)
        # A fork server's children make their own groups ahead; a fresh interpreter's is made
        # here and joined by it.
        group = make_check_group(max_memory) if isinstance(loader, ProcessLoader) else None
        store_dirs = [str(entry.path.parent), str(entry.path)]
        child_env = clean_environment(env, keep_all=env is not None)
        paths = import_paths(exclude=[*store_dirs, str(workdir)])
        inherited = child_env.get("PYTHONPATH", "").split(os.pathsep)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in dict.fromkeys([*inherited, *paths]) if p and not beneath(p, store_dirs)
        )
        child_env["TMPDIR"] = str(workdir / "tmp")
        request = {
            "entry": str(copy.path),
            "backend": copy.backend,
            "backend_class": f"{type(backend).__module__}:{type(backend).__qualname__}",
            "mode": version_warning,
            # A converted model (ONNX) may not offer every method: not compared, not an error.
            # An unpickled one that lost a method is an error (as across scikit-learn versions).
            "absent_is_error": backend.preserves_objects
            if absent_is_error is None
            else absent_is_error,
            "options": {**copy.backend_options, **(options or {})},
            "preimport": copy.estimator_class.rpartition(".")[0] if vouched else None,
            "child": {
                "env": child_env,
                "sys_path": [p for p in child_env["PYTHONPATH"].split(os.pathsep) if p],
                "limits": asdict(limits),
                "cwd": str(workdir / "cwd"),
                "tmp": str(workdir / "tmp"),
                "forbidden_imports": [*store_dirs, str(workdir)],
                "writable": [str(workdir)],
                "unreadable": policy.secret_files(),
                "cgroup": None
                if group is None
                else {"path": str(group.path), "version": group.version},
            },
        }
        (workdir / REQUEST).write_text(json.dumps(request), encoding="utf-8")
        started = time.perf_counter()
        ticket = loader.submit(workdir, timeout=timeout, child_env=child_env)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        if group is not None:
            group.remove()
        raise
    return PendingCheck(
        outcome,
        copy,
        comparison=dict(outcome.comparison, check_dtype=check_dtype),
        limits=limits,
        timeout=timeout,
        workdir=workdir,
        loader=loader,
        ticket=ticket,
        started=started,
        group=group,
        group_version=None if group is None else group.version,
    )


#: What a check without a cgroup is contained by (the report's ``details.containment``).
_NO_CGROUP = (
    "rlimits only (no memory cgroup could be made here: shared memory is not counted, and a "
    "process the model detaches survives a check that is killed)"
)


def _outcome_of(entry: StoredEntry, where: Path) -> Outcome:
    """A passing outcome for ``entry`` (found at ``where``), with what the entry records."""
    loaded_environment = _this_environment()
    outcome = Outcome(
        kind=OutcomeKind.PASSED,
        estimator=entry.estimator_name,
        backend=entry.backend,
        test_id=entry.test_id,
        artifact_bytes=entry.artifact_bytes,
        versions=_versions(entry.environment, loaded_environment, entry.backend),
        details={
            "entry": str(where),
            "estimator_class": entry.estimator_class,
            "saved_environment": dict(entry.environment),
            "loaded_environment": loaded_environment,
            "created": entry.created,
        },
    )
    if entry.extra is not None:
        outcome.details["extra"] = entry.extra
    outcome.not_compared.update(entry.not_compared)
    return outcome


@dataclass
class PendingCheck:
    """A stored entry's check whose child was handed to a loader (or that ended before)."""

    outcome: Outcome
    entry: StoredEntry | None = None
    comparison: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    timeout: float = DEFAULT_TIMEOUT
    workdir: Path | None = None
    loader: Loader | None = None
    ticket: Ticket | None = None
    started: float = 0.0
    done: bool = False
    group: CheckGroup | None = None
    group_version: int | None = None  # kept once the group is retired
    #: What the loaded model answered, by method (filled by ``result()``).
    actual_outputs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ended(cls, outcome: Outcome) -> PendingCheck:
        return cls(outcome, done=True)

    def result(self) -> Outcome:
        """Wait for the child, then compare its outputs with the stored ones (once)."""
        if not self.done:
            assert self.loader is not None and self.ticket is not None
            try:
                ended = self.loader.wait(self.ticket)
                if self.group is not None and ended.returncode == 0 and not ended.timed_out:
                    self.group.retire()  # its child ended its own leftovers and is exiting
                    self.group = None
                self.outcome = self._compare(ended)
            finally:
                self.discard()
        return self.outcome

    def discard(self) -> None:
        """Forget a check nobody will wait for (its child ends by its timeout at the latest,
        or with its loader); end what is left in its cgroup; remove its working directory."""
        self.done = True
        if self.group is not None:
            self.group.remove()
            self.group = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _in_store(self, text: str) -> str:
        """``text`` (the child's words) naming the entry in the store, not its copy."""
        if self.entry is None:
            return text
        return text.replace(str(self.entry.path), self.outcome.details.get("entry", ""))

    def _compare(self, ended: ChildExit) -> Outcome:
        outcome, entry, limits, timeout = self.outcome, self.entry, self.limits, self.timeout
        workdir = self.workdir
        assert entry is not None and workdir is not None
        # How long the child ran (a check started ahead also waited for the one before it).
        waited = round(time.perf_counter() - self.started, 4)
        outcome.details["child_seconds"] = waited if ended.seconds is None else ended.seconds
        outcome.details["isolation"] = ended.isolation
        version = ended.cgroup or self.group_version
        outcome.details["containment"] = f"memory cgroup v{version}" if version else _NO_CGROUP
        if ended.note:
            outcome.details["isolation_note"] = ended.note
        outcome.version_warnings = _read_warnings(workdir / WARNINGS)
        phase = _read_text(workdir / PHASE).strip() or "start"
        result_path = workdir / RESULT

        if ended.timed_out or not result_path.exists():
            outcome.details["stderr"] = _excerpt(_read_text(workdir / STDERR))
            if ended.out_of_memory or (self.group is not None and self.group.out_of_memory()):
                outcome.details["cgroup_out_of_memory"] = True
            return _died(outcome, phase, _how_it_died(ended, timeout, limits, outcome))

        result = json.loads(result_path.read_text(encoding="utf-8"))
        outcome.load_seconds = result.get("load_seconds")
        if result.get("sandbox"):
            outcome.details["sandbox"] = result["sandbox"]
        outcome.details.update(result.get("backend_details", {}))
        for method in result.get("absent", []):
            outcome.not_compared[method] = f"the {entry.backend} model does not provide it"
        if "import_seconds" in result:
            outcome.details["import_seconds"] = result["import_seconds"]
        if result.get("load_error"):
            error = result["load_error"]
            outcome.details["traceback"] = self._in_store(error.get("traceback", ""))
            outcome.details["warning_before_error"] = bool(outcome.version_warnings)
            message = self._in_store(f"{error['type']}: {error['message']}")
            if error["type"] == "MemoryError" and limits.max_memory is not None:
                message += f" (exceeded the memory limit of {format_size(limits.max_memory)})"
            hint = load_error_hint(
                message,
                estimator_class=entry.estimator_class,
                backend=entry.backend,
                test_id=entry.test_id,
            )
            if hint:
                message += f"\n  hint: {hint}"
            return _finish(outcome, OutcomeKind.LOAD_ERROR, message)

        method_errors = {m: self._in_store(r) for m, r in result.get("method_errors", {}).items()}
        if limits.max_memory is not None:
            for method, reason in method_errors.items():
                if reason.startswith("MemoryError"):
                    limit = format_size(limits.max_memory)
                    method_errors[method] = f"{reason} (exceeded the memory limit of {limit})"
        actual: dict[str, Any] = {}
        if result.get("methods"):
            from ..store import codec

            actual = codec.read(workdir / OUTPUTS, workdir / OUTPUTS_DESCRIPTION)["outputs"]
        self.actual_outputs = actual

        from ..roundtrip.compare import compare_outputs

        try:
            expected = entry.load_data().expected
        except StoreError as exc:
            return _finish(outcome, OutcomeKind.LOAD_ERROR, f"cannot compare: {exc}")
        missing = [m for m in entry.methods if m in actual and m not in expected]
        if missing:
            data = Path(outcome.details["entry"]) / entry.manifest["data"]
            return _finish(
                outcome,
                OutcomeKind.LOAD_ERROR,
                f"{data}: holds no expected output for {', '.join(missing)}, which "
                f"{Path(outcome.details['entry']) / 'entry.json'} lists among its methods; the "
                "entry was written incompletely or edited. Save it again.",
            )
        outcome.compared_methods = [m for m in entry.methods if m in actual]
        outcome.differences = compare_outputs(
            {m: expected[m] for m in outcome.compared_methods},
            actual,
            rtol=self.comparison["rtol"],
            atol=self.comparison["atol"],
            exact=self.comparison["exact"],
            check_dtype=self.comparison["check_dtype"],
            max_label_flips=self.comparison["max_label_flips"],
        )
        if method_errors:
            outcome.details["method_errors"] = method_errors
            shown = by_reason(method_errors)
            return _finish(outcome, OutcomeKind.METHOD_ERROR, f"loaded, then {shown}")
        if any(not d.tolerated for d in outcome.differences):
            return _finish(outcome, OutcomeKind.MISMATCH, "")
        return outcome


def store_preload(entries: Iterable[StoredEntry], registry: Any) -> tuple[str, ...]:
    """What a fork loader checking ``entries`` imports once: numpy, scipy, scikit-learn's
    core and the child's own modules; the scikit-learn subpackages the entries' estimators
    (and the estimators nested in them) live in, all of them for an entry that does not say;
    and, for each backend the entries use, its module and what its ``load`` imports.

    Nothing else an entry names is imported before its signature is checked: of its recorded
    modules only the name of a scikit-learn subpackage counts, and an estimator's own module is
    not imported."""
    modules = dict.fromkeys(CORE_PRELOAD)
    known = set(SKLEARN_SUBPACKAGES)
    for entry in entries:
        recorded = entry.estimator_modules
        if recorded is None:  # saved before the modules were recorded
            modules.update(dict.fromkeys(SKLEARN_SUBPACKAGES))
            continue
        for name in recorded:
            subpackage = ".".join(name.split(".")[:2])
            if subpackage in known:
                modules[subpackage] = None
    for backend_name in dict.fromkeys(entry.backend for entry in entries):
        if backend_name in registry:
            backend = registry[backend_name]
            modules.update(dict.fromkeys([type(backend).__module__, *backend.modules_to_load()]))
    return tuple(modules)


_ENVIRONMENT: dict[int, dict[str, str]] = {}


def _this_environment() -> dict[str, str]:
    """This process's environment fingerprint, read once (reading distribution metadata
    takes ~0.1 s, too much to pay per artifact)."""
    pid = os.getpid()
    if pid not in _ENVIRONMENT:
        _ENVIRONMENT[pid] = environment_fingerprint()
    return dict(_ENVIRONMENT[pid])


def _trusted_options(
    entry: StoredEntry,
    shown: StoredEntry,
    backend: Any,
    outcome: Outcome,
    trust: TrustPolicy,
    options: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Check the signature of ``entry`` (a verified snapshot of ``shown``, before anything is
    unpickled) and return the backend options to load with; raise ``TamperedArtifactError``
    when it must not be loaded.

    A backend whose loading runs code needs a trusted signature (or ``allow_unsigned``); a
    skops-like backend trusts the types recorded at save only when the signature is trusted,
    and the checking side's own ``trusted`` list, when given, replaces them.
    """
    policy = trust
    check = policy.check(entry.path, entry.raw)
    signature: dict[str, Any] = {
        "status": check.status,
        "key_id": check.key_id,
        "scheme": check.scheme,
    }
    outcome.details["signature"] = signature
    if getattr(backend, "runs_code_on_load", True) and not check.trusted:
        if not policy.allow_unsigned:
            raise TamperedArtifactError(refusal_message(str(shown), check, policy))
        signature["loaded_anyway"] = "--persist-trust-unsigned"
        outcome.details["trust_warning"] = (
            f"loaded without a trusted signature ({check.describe()}) "
            "because of --persist-trust-unsigned"
        )
    if getattr(backend, "uses_type_allowlist", False):
        given = (options or {}).get("trusted")
        if isinstance(given, (list, tuple)):
            allowlist = list(given)
        else:
            allowlist = entry.untrusted_types if check.trusted else []
        outcome.details["trusted_allowlist"] = allowlist
        options = {**(options or {}), "trusted": allowlist}
    return options


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


#: What a child's stderr says when an allocation failed in C/C++ code (then it aborts).
_OUT_OF_MEMORY = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory")


def _how_it_died(ended: ChildExit, timeout: float, limits: Limits, outcome: Outcome) -> str:
    """ "timed out after 8 s", "crashed with SIGSEGV", "exceeded the memory limit of 4 GiB"..."""
    if ended.timed_out:
        return f"timed out after {timeout:g} s"
    code = ended.returncode
    if code is not None and code < 0:
        name = _signal_name(-code)
        if name == "SIGXCPU" or (
            name == "SIGKILL"
            and limits.cpu_seconds is not None
            and (outcome.details.get("child_seconds", 0) >= limits.cpu_seconds)
        ):
            return f"exceeded the CPU time limit of {limits.cpu_seconds} s ({name})"
        stderr = outcome.details.get("stderr", "")
        if limits.max_memory is not None and (
            name == "SIGKILL"
            or outcome.details.get("cgroup_out_of_memory")
            or any(sign in stderr for sign in _OUT_OF_MEMORY)
        ):
            return (
                f"exceeded the memory limit of {format_size(limits.max_memory)} "
                f"(crashed with {name})"
            )
        return f"crashed with {name}"
    if (
        code is not None
        and code > 0
        and any(sign in outcome.details.get("stderr", "") for sign in ("MemoryError",))
        and limits.max_memory is not None
    ):
        return f"exceeded the memory limit of {format_size(limits.max_memory)} (exit code {code})"
    if code is None:
        return f"ended without a result ({ended.note or 'unknown cause'})"
    return f"exited with code {code} and no result"


def _excerpt(text: str) -> str:
    """Its start (where faulthandler says what happened) and its end, if long."""
    if len(text) <= 2 * _STDERR_TAIL:
        return text
    cut = len(text) - 2 * _STDERR_TAIL
    return f"{text[:_STDERR_TAIL]}\n[... {cut} characters ...]\n{text[-_STDERR_TAIL:]}"


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


def _first_set(*values: Any) -> Any:
    """The first value that is not None."""
    return next(value for value in values if value is not None)
