"""Where a stored artifact is loaded: a forked child of a warm loader, or a fresh interpreter.

A *fork loader* is one server process per checking process (so one per pytest-xdist worker):
``python -m pytest_persist.isolation.fork_server`` imports numpy, scipy, scikit-learn and the
backend libraries once (without the garbage collector, which each child turns back on), then forks
one child per artifact. The server only imports, plus one tiny warm-up
(``child.warm_up``) under a one-thread limit, so no OpenMP pool exists when it forks
(OpenBLAS stops its threads around ``fork`` itself). The child starts a new session, gets
a clean environment (:func:`clean_environment`), resource limits (:class:`Limits`), its own
working directory and stderr file, then does the child-side work of ``child``; nothing
it changes reaches the next artifact, which is forked afresh from the untouched server. The
server enforces each child's timeout and kills its whole process group. Checks are submitted
and waited for separately, so the next artifact's child can run while this process compares
the last one's outputs. A *process loader* (the fallback, where fork is unavailable or another
interpreter is asked for) runs ``python -m pytest_persist.isolation.child DIR`` per artifact,
started at submit (so the next artifact's interpreter imports while this one is waited for),
with the same environment, limits and working directory.

The protocol is one JSON line each way per event (a request; a child started; a child ended),
over the server's stdin and a duplicate of its stdout; everything else (request, phase,
warnings, outputs, result) goes through files in the artifact's working directory, read by
``child`` and ``check``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .cgroups import CheckGroup, own_spare_group

__all__ = [
    "BASE_PRELOAD",
    "CORE_PRELOAD",
    "DEFAULT_MAX_MEMORY",
    "ISOLATIONS",
    "PRELOAD",
    "SKLEARN_SUBPACKAGES",
    "ChildExit",
    "ForkLoader",
    "Limits",
    "ProcessLoader",
    "Ticket",
    "beneath",
    "clean_environment",
    "default_loader",
    "fork_unavailable_reason",
    "format_size",
    "import_paths",
    "kill_group",
    "parse_size",
    "stop_default_loaders",
]

ISOLATIONS = ("fork", "process")
#: Per check: two checks at once (``-n 2``) plus the parents fit a 24 GiB machine.
DEFAULT_MAX_MEMORY = 4 * 1024**3
#: RLIMIT_FSIZE of a child: far above any outputs file, far below filling a disk.
FILE_SIZE_LIMIT = 8 * 1024**3
#: What every server imports first (a module that is not installed is left out): numpy, scipy,
#: scikit-learn's core and the child's own modules.
CORE_PRELOAD = (
    "numpy",
    "scipy",
    "scipy.sparse",
    "scipy.special",
    "scipy.linalg",
    "sklearn",
    "sklearn.base",
    "sklearn.utils",
    "pandas",
    # the child-side work itself
    "resource",
    "zipfile",
    "encodings.cp437",
    "pytest_persist.isolation.child",
    "pytest_persist.isolation.sandbox",
    "pytest_persist.backends",
    "pytest_persist.roundtrip.compare",
    "pytest_persist.store.codec",
    "pytest_persist.store.entries",
    "pytest_persist.environments.version_warnings",
)
#: scikit-learn's subpackages; a server for a known store imports those its estimators live in
#: (all of them together take about 0.3 s more than scikit-learn's core).
SKLEARN_SUBPACKAGES = (
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.tree",
    "sklearn.ensemble",
    "sklearn.svm",
    "sklearn.neighbors",
    "sklearn.cluster",
    "sklearn.decomposition",
    "sklearn.naive_bayes",
    "sklearn.discriminant_analysis",
    "sklearn.feature_extraction",
    "sklearn.feature_selection",
    "sklearn.neural_network",
    "sklearn.gaussian_process",
    "sklearn.mixture",
    "sklearn.manifold",
    "sklearn.calibration",
    "sklearn.multiclass",
    "sklearn.multioutput",
    "sklearn.kernel_approximation",
    "sklearn.covariance",
    "sklearn.cross_decomposition",
    "sklearn.isotonic",
    "sklearn.kernel_ridge",
    "sklearn.random_projection",
    "sklearn.semi_supervised",
    "sklearn.dummy",
    "sklearn.model_selection",  # the search estimators (GridSearchCV...)
    "sklearn.frozen",  # scikit-learn >= 1.6
)
#: What a server imports when it does not know its store: no child imports any of it again.
BASE_PRELOAD = CORE_PRELOAD + SKLEARN_SUBPACKAGES
#: What the built-in backends load with. A server for a known store imports only those its
#: entries use (``check.store_preload``): skops.io alone takes 0.3-0.9 s to import.
BACKEND_PRELOAD = ("joblib", "cloudpickle", "skops.io", "onnxruntime")
#: Everything, for a server that does not know what it will load.
PRELOAD = BASE_PRELOAD + BACKEND_PRELOAD
#: Called once by the server after its imports, where imported ("module:function", no
#: argument; an exception is ignored): caches that every child would otherwise fill again.
WARM_UP = ("pytest_persist.isolation.child:warm_up",)
_READY_TIMEOUT = 600.0  # a cold disk under load can take minutes to import scikit-learn
_MARGIN = 30.0  # beyond the check's timeout, before the parent gives up on the server

# ----------------------------------------------------------------------------------------------
# the child's environment and limits (both loaders)

#: Names (or name prefixes, ending in ``*``) of the variables a child keeps.
KEEP_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "TEMP",
    "TMP",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "PYTHON*",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "LD_LIBRARY_PATH",
    "DYLD_LIBRARY_PATH",
    "SYSTEMROOT",
    "OMP_*",
    "GOMP_*",
    "KMP_*",
    "OPENBLAS_*",
    "GOTO_NUM_THREADS",
    "MKL_*",
    "BLIS_*",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_*",
    "NPY_*",
    "JOBLIB_*",
    "LOKY_*",
    "SKLEARN_*",
    "SCIPY_*",
)
SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD", "CREDENTIAL")


def _is_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def clean_environment(
    base: dict[str, str] | None = None, *, keep_all: bool = False
) -> dict[str, str]:
    """The environment a child gets: the variables Python and the libraries need
    (:data:`KEEP_VARIABLES`; every one of ``base`` when ``keep_all``), never one whose name
    contains a word of :data:`SECRET_WORDS` (so never ``PYTEST_PERSIST_KEY``)."""
    base = dict(os.environ if base is None else base)
    kept = {}
    for name, value in base.items():
        if _is_secret(name):
            continue
        if keep_all or any(
            name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1]))
            for pattern in KEEP_VARIABLES
        ):
            kept[name] = value
    return kept


@dataclass(frozen=True)
class Limits:
    """Resource limits of one child: bytes of memory (None: none), CPU seconds, file bytes."""

    max_memory: int | None = DEFAULT_MAX_MEMORY
    cpu_seconds: int | None = None
    file_size: int | None = FILE_SIZE_LIMIT

    @classmethod
    def for_timeout(cls, timeout: float, max_memory: int | None) -> Limits:
        """CPU time is a backstop for a child whose parent is gone: the wall-clock timeout
        times the cores (a multithreaded check may use them all), plus a margin."""
        cores = os.cpu_count() or 1
        return cls(max_memory=max_memory, cpu_seconds=math.ceil(timeout * cores) + 10)


def apply_limits(limits: dict[str, Any]) -> None:
    """Set the child's rlimits (POSIX; a limit the system refuses is left as it is).

    Memory is ``RLIMIT_DATA``: on Linux it counts what a process allocates (heap and private
    writable mappings, numpy's buffers included) but not the address space that glibc and
    thread libraries reserve without using, which ``RLIMIT_AS`` counts and which makes it
    fail at a fraction of its value once onnxruntime or OpenBLAS has started threads. Where
    ``RLIMIT_DATA`` does not cover mmap (before Linux 4.7, other systems), ``RLIMIT_AS``.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    memory_limit = (
        resource.RLIMIT_DATA
        if sys.platform.startswith("linux") and hasattr(resource, "RLIMIT_DATA")
        else resource.RLIMIT_AS
    )
    chosen = [
        (memory_limit, limits.get("max_memory")),
        (resource.RLIMIT_CPU, limits.get("cpu_seconds")),
        (resource.RLIMIT_FSIZE, limits.get("file_size")),
    ]
    for which, value in chosen:
        if value is None:
            continue
        _soft, hard = resource.getrlimit(which)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        hard_value = hard
        if which == resource.RLIMIT_CPU and (hard == resource.RLIM_INFINITY or hard > value + 5):
            hard_value = value + 5  # SIGXCPU first, SIGKILL 5 s later
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, hard_value))


def enter_child(child: dict[str, Any], *, replace_environ: bool) -> str:
    """Make this process the isolated child described by ``child`` (from ``request.json``):
    limits, working directory, temporary directory, import paths (never from the store: see
    ``sandbox``), (forked from the server) the environment, and the filesystem sandbox.
    Returns what the sandbox restricts, for the report."""
    from . import sandbox

    # First: whatever it allocates or starts from now on is counted and contained. A fork
    # server's spare is in a group of its own already (it joined while waiting); a fresh
    # interpreter joins the group its parent made.
    group = child.get("cgroup")
    spare = own_spare_group()
    with contextlib.suppress(OSError):
        if spare is not None:
            spare.limit(child.get("limits", {}).get("max_memory"))
        elif group:
            CheckGroup(Path(group["path"]), int(group["version"])).join()
    become_subreaper()
    apply_limits(child.get("limits", {}))
    if replace_environ:
        os.environ.clear()
        os.environ.update(child["env"])
    for path in reversed(child.get("sys_path", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    sandbox.guard_imports(child.get("forbidden_imports", []))
    for key in ("cwd", "tmp"):
        if child.get(key):
            os.makedirs(child[key], exist_ok=True)
    if child.get("cwd"):
        os.chdir(child["cwd"])
    if child.get("tmp"):
        os.environ["TMPDIR"] = child["tmp"]
        tempfile.tempdir = None  # computed again from TMPDIR (the server cached its own)
    if "writable" not in child:
        return "not restricted: the request names no writable directory"
    return sandbox.restrict_filesystem(
        writable=child["writable"], unreadable=child.get("unreadable", [])
    )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def parse_size(text: str | int | None) -> int | None:
    """Bytes from ``2GiB``, ``512MB``, ``4G`` (binary), ``1500000``; None for ``0``, ``none``,
    ``off`` or ``unlimited`` (no limit). Raises ``ValueError`` naming what is wrong."""
    if text is None:
        return None
    if isinstance(text, int):
        return text or None
    if text.strip().lower() in ("0", "none", "off", "unlimited", "no"):
        return None
    match = _SIZE.match(text)
    unit = match[2].lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"{text!r} is not a size: write e.g. 4GiB, 512MB, 2G, a number of bytes, or none"
        )
    size = int(float(match[1]) * _UNITS[unit])
    if size < 64 * 1024**2:
        raise ValueError(f"{text!r} is below 64 MiB, too little to import scikit-learn")
    return size


def format_size(size: int) -> str:
    """``4 GiB``, ``512 MB``, ``1.5 GiB``..."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2)):
        if size >= factor and size % (factor // 4) == 0:
            return f"{size / factor:g} {unit}"
    for unit, factor in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2)):
        if size >= factor and size % (factor // 10) == 0:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


# ----------------------------------------------------------------------------------------------
# loaders (the parent's side)


@dataclass
class ChildExit:
    """How a child ended: its return code (negative: the signal), whether it timed out."""

    returncode: int | None
    timed_out: bool
    isolation: str
    note: str = ""  # why this check did not run where it was asked to
    seconds: float | None = None  # how long the child ran (None: not known)
    cgroup: int | None = None  # the version of the memory cgroup it ran in (fork server's)
    out_of_memory: bool = False  # its cgroup's limit made the kernel kill a process of it


@dataclass
class Ticket:
    """One artifact's check, handed to a loader by ``submit`` and ended by ``wait``."""

    workdir: Path
    timeout: float
    child_env: dict[str, str]
    request_id: int = 0
    generation: int = 0  # which server it was sent to (a restart starts another)
    sent: bool = False
    sent_at: float = 0.0
    pid: int | None = None  # the child's, once the server says it started
    started_at: float = 0.0  # when this process learnt that
    exit: ChildExit | None = None
    attempts: int = 0


class Loader(Protocol):
    isolation: str

    def submit(self, workdir: Path, *, timeout: float, child_env: dict[str, str]) -> Ticket: ...

    def wait(self, ticket: Ticket) -> ChildExit: ...

    def run(self, workdir: Path, *, timeout: float, child_env: dict[str, str]) -> ChildExit: ...

    def stop(self) -> None: ...


def fork_unavailable_reason() -> str | None:
    """Why the fork loader cannot run here (None: it can)."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return f"fork isolation needs Linux (this is {sys.platform})"
    return None


class ProcessLoader:
    """One fresh interpreter per artifact: ``python -m pytest_persist.isolation.child DIR``.

    ``submit`` starts the interpreter, so the next artifact's one imports scikit-learn while
    this process waits for the current one (two at once halve the time of a store on two
    cores); a watcher thread per interpreter enforces its timeout, counted from its start, and
    notes when it ended. ``wait`` returns how it ended; ``stop`` kills those still running.
    """

    isolation = "process"

    def __init__(self, python: str | None = None, note: str = "") -> None:
        self.python = python or sys.executable
        self.note = note
        self._running: dict[int, _Interpreter] = {}  # by pid, until waited for or stopped
        self._lock = threading.Lock()

    def submit(self, workdir: Path, *, timeout: float, child_env: dict[str, str]) -> Ticket:
        ticket = Ticket(workdir, timeout, child_env)
        command = [self.python, "-m", "pytest_persist.isolation.child", str(workdir)]
        env = dict(child_env)
        env.setdefault("PYTHONFAULTHANDLER", "1")  # a crash prints the Python stack
        cwd = workdir / "cwd"
        cwd.mkdir(exist_ok=True)
        try:
            with open(workdir / "stderr.txt", "ab") as stderr:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    env=env,
                    cwd=cwd,
                    start_new_session=os.name == "posix",  # a timeout kills what it started too
                )
        except OSError as exc:  # this check's failure, not the one that started it ahead
            note = f"cannot start {self.python}: {exc}"
            ticket.exit = ChildExit(None, False, self.isolation, note)
            return ticket
        ticket.pid, ticket.started_at = process.pid, time.monotonic()
        interpreter = _Interpreter(process, ticket, self.isolation, self.note)
        with self._lock:
            self._running[process.pid] = interpreter
        interpreter.watcher.start()
        return ticket

    def wait(self, ticket: Ticket) -> ChildExit:
        with self._lock:
            interpreter = self._running.pop(ticket.pid, None) if ticket.pid is not None else None
        if ticket.exit is None and interpreter is not None:
            try:
                interpreter.ended.wait()
            except BaseException:  # an interrupt: no interpreter must outlive the check
                interpreter.kill()
                raise
        if ticket.exit is None:  # stopped before anybody waited for it
            ticket.exit = ChildExit(None, False, self.isolation, "the process loader was stopped")
        return ticket.exit

    def run(self, workdir: Path, *, timeout: float, child_env: dict[str, str]) -> ChildExit:
        return self.wait(self.submit(workdir, timeout=timeout, child_env=child_env))

    def stop(self) -> None:
        """Kill the interpreters nobody waited for (checks started ahead in vain)."""
        with self._lock:
            running, self._running = list(self._running.values()), {}
        for interpreter in running:
            interpreter.kill()


class _Interpreter:
    """A started ``child`` interpreter and the thread that waits for it."""

    def __init__(self, process: subprocess.Popen[bytes], ticket: Ticket, isolation: str, note: str):
        self.process, self.ticket = process, ticket
        self.isolation, self.note = isolation, note
        self.ended = threading.Event()
        self.watcher = threading.Thread(
            target=self._watch, name=f"pytest-persist-loader-{process.pid}", daemon=True
        )

    def _watch(self) -> None:
        ticket, process = self.ticket, self.process
        timed_out = False
        try:
            returncode: int | None = process.wait(timeout=ticket.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            returncode, timed_out = None, True
        seconds = round(time.monotonic() - ticket.started_at, 4)
        if os.name == "posix":
            kill_group(process.pid)  # whatever the artifact left running
        ticket.exit = ChildExit(returncode, timed_out, self.isolation, self.note, seconds)
        self.ended.set()

    def kill(self) -> None:
        if self.ended.is_set():
            return  # its watcher already reaped it (and killed what it left)
        if os.name == "posix":
            kill_group(self.process.pid)
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()


class LoaderUnavailable(Exception):
    """The fork server could not be started or did not become ready."""


class ForkLoader:
    """A warm server (``fork_server``) that forks one isolated child per artifact.

    ``start()`` returns at once (the server imports in the background, e.g. while pytest
    collects). ``submit()`` sends a check and returns at once, so the next artifact's child can
    run while this process waits for the current one; ``wait()`` returns how its child ended,
    waiting for the server the first time. A server that dies is restarted by the next
    ``submit()`` or ``wait()``; a check it had not started yet is sent again, once.
    """

    isolation = "fork"

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        self.preload = preload
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._ready: dict[str, Any] | None = None
        self._logdir: tempfile.TemporaryDirectory[str] | None = None
        self._generation = 0
        self._next_id = 0
        self._tickets: dict[int, Ticket] = {}  # sent, not yet ended
        self.started_at: float | None = None

    # -- lifecycle

    def start(self, preload: tuple[str, ...] | None = None) -> None:
        """Start the server in the background, importing ``preload`` (default: what this
        loader was made with; kept for a restart)."""
        if preload is not None and self._process is None:
            self.preload = preload
        if self._process is not None and self._process.poll() is None:
            return
        self._reset()
        self._logdir = tempfile.TemporaryDirectory(prefix="pytest-persist-loader-")
        env = clean_environment()
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [env.get("PYTHONPATH", ""), *import_paths()] if p
        )
        # Two children can run at once (the next check starts while this one is compared):
        # OpenMP threads that spin while waiting would take the cores from the other child
        # (HistGradientBoosting stalled ~1 s in 3 runs of 6). libgomp reads this when the
        # server loads it, so the children inherit it; a user's own setting wins.
        env.setdefault("OMP_WAIT_POLICY", "passive")
        self.started_at = time.perf_counter()
        with open(Path(self._logdir.name) / "server.log", "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pytest_persist.isolation.fork_server", *self.preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=self._logdir.name,
            )

    def also_import(self, modules: Iterable[str]) -> None:
        """Have the server import ``modules`` too, before any check sent after this call (and
        a restarted server with its preload)."""
        new = [name for name in modules if name not in self.preload]
        if not new:
            return
        self.preload = (*self.preload, *new)
        process = self._process
        if process is None or process.poll() is not None or process.stdin is None:
            return  # a server started later imports them with its preload
        with contextlib.suppress(OSError):  # a server that died is restarted with them
            process.stdin.write((json.dumps({"import": new}) + "\n").encode())
            process.stdin.flush()

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert process.stdin is not None
            process.stdin.close()  # EOF: the server returns, killing children still running
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._reset()

    def _reset(self) -> None:
        """Forget the server (killing it if it runs), and the children it had started."""
        process, self._process = self._process, None
        self._generation += 1  # what was sent to that server is not coming back
        for ticket in self._tickets.values():
            if ticket.pid is not None and ticket.exit is None:
                kill_group(ticket.pid)  # nobody is left to enforce its deadline
        if process is not None:
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError, ValueError):
                    if stream is not None:
                        stream.close()
            if process.poll() is None:
                process.kill()
                process.wait()
        self._buffer = b""
        self._ready = None
        if self._logdir is not None:
            with contextlib.suppress(OSError):
                self._logdir.cleanup()
            self._logdir = None

    @property
    def ready_info(self) -> dict[str, Any] | None:
        """The server's ready message: pid, preload seconds, modules it could not import."""
        return self._ready

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> dict[str, Any]:
        self.start()
        if self._ready is None:
            message = self._read_message(time.monotonic() + timeout)
            if message is None or "ready" not in message:
                log = self._server_log()
                self._reset()
                raise LoaderUnavailable(
                    "the fork loader did not start" + (f": {log[-1000:]}" if log else "")
                )
            self._ready = message
        return self._ready

    # -- one artifact

    def run(self, workdir: Path, *, timeout: float, child_env: dict[str, str]) -> ChildExit:
        return self.wait(self.submit(workdir, timeout=timeout, child_env=child_env))

    def submit(self, workdir: Path, *, timeout: float, child_env: dict[str, str]) -> Ticket:
        ticket = Ticket(workdir, timeout, child_env)
        self._send(ticket)
        return ticket

    def _send(self, ticket: Ticket) -> None:
        """Send ``ticket`` to the server (starting it if needed); unsent if it is gone."""
        if self._process is not None and self._process.poll() is not None:
            self._reset()  # it died since the last check
        self.start()
        assert self._process is not None and self._process.stdin is not None
        self._next_id += 1
        ticket.request_id, ticket.generation = self._next_id, self._generation
        ticket.attempts += 1
        request = {
            "id": ticket.request_id,
            "workdir": str(ticket.workdir),
            "timeout": ticket.timeout,
        }
        try:
            self._process.stdin.write((json.dumps(request) + "\n").encode())
            self._process.stdin.flush()
        except OSError:  # BrokenPipeError: the server is gone
            ticket.sent = False
            return
        ticket.sent, ticket.sent_at, ticket.pid = True, time.monotonic(), None
        self._tickets[ticket.request_id] = ticket

    def wait(self, ticket: Ticket) -> ChildExit:
        try:
            while ticket.exit is None:
                self._advance(ticket)
        except BaseException:  # an interrupt: no child must outlive the check
            if ticket.pid is not None and ticket.exit is None:
                kill_group(ticket.pid)
            self._reset()
            raise
        self._tickets.pop(ticket.request_id, None)
        return ticket.exit

    def _advance(self, ticket: Ticket) -> None:
        """Read the server's next message for any check, or end ``ticket`` if it cannot run."""
        if not ticket.sent or ticket.generation != self._generation:
            # Its server is gone: with its child if it had one (killed by ``_reset``), else
            # it is sent once more, to a new server.
            if ticket.pid is not None or ticket.attempts >= 2:
                ticket.exit = ChildExit(None, False, self.isolation, "the fork loader died")
            else:
                self._send(ticket)
            return
        try:
            self.wait_ready()
        except LoaderUnavailable as exc:
            note = f"{exc}; this artifact was loaded in its own interpreter"
            ticket.exit = ProcessLoader(note=note).run(
                ticket.workdir, timeout=ticket.timeout, child_env=ticket.child_env
            )
            return
        # The server enforces the timeout; this only notices a server that stopped answering.
        since = ticket.started_at if ticket.pid is not None else time.monotonic()
        message = self._read_message(since + ticket.timeout + _MARGIN)
        if message is None:  # the server died or stopped answering
            self._reset()  # kills the child too, if it had started
            if ticket.pid is not None:
                timed_out = time.monotonic() >= since + ticket.timeout
                ticket.exit = ChildExit(None, timed_out, self.isolation, "the fork loader died")
            return  # not started: sent again by the next round, once
        owner = self._tickets.get(message.get("id"))
        if owner is None:
            return  # a check nobody waits for any more
        if "started" in message:
            owner.pid, owner.started_at = message["started"], time.monotonic()
        else:
            owner.exit = ChildExit(
                message["returncode"],
                message["timed_out"],
                self.isolation,
                seconds=message.get("seconds"),
                cgroup=message.get("cgroup"),
                out_of_memory=bool(message.get("out_of_memory")),
            )

    # -- protocol

    def _read_message(self, deadline: float) -> dict[str, Any] | None:
        process = self._process
        if process is None or process.stdout is None:
            return None
        fd = process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _server_log(self) -> str:
        if self._logdir is None:
            return ""
        with contextlib.suppress(OSError):
            return (Path(self._logdir.name) / "server.log").read_text(errors="replace")
        return ""


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (a child and whatever it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


_DEFAULT: dict[str, Any] = {}


def default_loader(isolation: str = "fork") -> ForkLoader | ProcessLoader:
    """This process's loader for ``isolation`` (``fork`` falls back to ``process`` where fork
    is unavailable); created lazily, one per process, so each xdist worker has its own."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation {isolation!r}: choose {' or '.join(ISOLATIONS)}")
    key = (isolation, os.getpid())
    if key not in _DEFAULT:
        if isolation == "process":
            _DEFAULT[key] = ProcessLoader(note="--persist-load-isolation=process")
        elif (reason := fork_unavailable_reason()) is not None:
            _DEFAULT[key] = ProcessLoader(note=reason)
        else:
            _DEFAULT[key] = ForkLoader()
    return _DEFAULT[key]


def stop_default_loaders() -> None:
    """Stop this process's default loaders (at session end, and at exit)."""
    for key in [k for k in _DEFAULT if k[1] == os.getpid()]:
        _DEFAULT.pop(key).stop()


atexit.register(stop_default_loaders)


def import_paths(exclude: Iterable[str] = ()) -> list[str]:
    """This interpreter's import paths outside its installation (test dirs, rootdir...),
    so the child can import what the parent can; none beneath ``exclude`` (the store)."""
    prefixes = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)]
    excluded = list(exclude)
    paths = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        if beneath(entry, prefixes) or beneath(entry, excluded):
            continue
        paths.append(entry)
    return paths


def beneath(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies beneath one (symlinks resolved)."""
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root)
        if real == top or real.startswith(top + os.sep):
            return True
    return False


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Have this process adopt its orphaned descendants (Linux), so that what a check starts
    and detaches (``setsid``, a double fork) is still this process's to end."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from ``/proc``; empty where there is none)."""
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(name))
    return found


def end_children(pid: int, keep: Iterable[int] = ()) -> None:
    """SIGKILL and reap every child of ``pid`` (this process) but ``keep``, and what they
    leave behind: orphans of a subreaper come back to it as children, so repeat until none."""
    kept = set(keep)
    for _ in range(20):
        children = [child for child in children_of(pid) if child not in kept]
        if not children:
            return
        for child in children:
            kill_group(child)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(child, 0)
