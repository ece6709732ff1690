"""Where a stored artifact is loaded: a forked child of a warm loader, or a fresh interpreter.

A *fork loader* is one server process per checking process (so one per pytest-xdist worker):
``python -m pytest_persist.loader`` imports numpy, scipy, scikit-learn and the backend
libraries once, then forks one child per artifact. The server only imports, plus one tiny
warm-up (``isolated_load.warm_up``) under a one-thread limit, so no OpenMP pool exists when it
forks (OpenBLAS stops its threads around ``fork`` itself). The
child starts a new session, gets a clean environment (:func:`clean_environment`), resource
limits (:class:`Limits`), its own working directory and stderr file, then does the child-side
work of ``isolated_load``; nothing it changes reaches the next artifact, which is forked afresh
from the untouched server. The server enforces the timeout and kills the child's whole process
group. A *process loader* (the fallback, where fork is unavailable or another interpreter is
asked for) runs ``python -m pytest_persist.isolated_load DIR`` per artifact, with the same
environment, limits and working directory.

The protocol is one JSON line each way per artifact, over the server's stdin and a duplicate of
its stdout; everything else (request, phase, warnings, outputs, result) goes through files in the
artifact's working directory, read by ``isolated_load``.
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "BASE_PRELOAD",
    "DEFAULT_MAX_MEMORY",
    "ISOLATIONS",
    "PRELOAD",
    "ChildExit",
    "ForkLoader",
    "Limits",
    "ProcessLoader",
    "clean_environment",
    "default_loader",
    "fork_unavailable_reason",
    "format_size",
    "parse_size",
    "stop_default_loaders",
]

ISOLATIONS = ("fork", "process")
#: Per check: two checks at once (``-n 2``) plus the parents fit a 24 GiB machine.
DEFAULT_MAX_MEMORY = 4 * 1024**3
#: RLIMIT_FSIZE of a child: far above any outputs file, far below filling a disk.
FILE_SIZE_LIMIT = 8 * 1024**3
#: What every server imports once (a module that is not installed is left out): numpy, scipy
#: and scikit-learn's subpackages, so that no child imports one of them again.
BASE_PRELOAD = (
    "numpy",
    "scipy",
    "scipy.sparse",
    "scipy.special",
    "scipy.linalg",
    "sklearn",
    "sklearn.base",
    "sklearn.utils",
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
    "pandas",
    # the child-side work itself
    "resource",
    "zipfile",
    "encodings.cp437",
    "pytest_persist.isolated_load",
    "pytest_persist.backends",
    "pytest_persist.compare",
    "pytest_persist.outputs_codec",
    "pytest_persist.store",
    "pytest_persist.versions",
)
#: What the built-in backends load with. A server for a known store imports only those its
#: entries use (``isolated_load.store_preload``): skops.io alone takes 0.3-0.9 s to import.
BACKEND_PRELOAD = ("joblib", "cloudpickle", "skops.io", "onnxruntime")
#: Everything, for a server that does not know what it will load.
PRELOAD = BASE_PRELOAD + BACKEND_PRELOAD
#: Called once by the server after its imports, where imported ("module:function", no
#: argument; an exception is ignored): caches that every child would otherwise fill again.
WARM_UP = ("pytest_persist.isolated_load:warm_up",)
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


def enter_child(child: dict[str, Any], *, replace_environ: bool) -> None:
    """Make this process the isolated child described by ``child`` (from ``request.json``):
    limits, working directory, import paths, and (forked from the server) the environment."""
    apply_limits(child.get("limits", {}))
    if replace_environ:
        os.environ.clear()
        os.environ.update(child["env"])
    for path in reversed(child.get("sys_path", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    cwd = child.get("cwd")
    if cwd:
        os.makedirs(cwd, exist_ok=True)
        os.chdir(cwd)


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


class Loader(Protocol):
    isolation: str

    def run(self, workdir: Path, *, timeout: float, child_env: dict[str, str]) -> ChildExit: ...

    def stop(self) -> None: ...


def fork_unavailable_reason() -> str | None:
    """Why the fork loader cannot run here (None: it can)."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return f"fork isolation needs Linux (this is {sys.platform})"
    return None


class ProcessLoader:
    """One fresh interpreter per artifact: ``python -m pytest_persist.isolated_load DIR``."""

    isolation = "process"

    def __init__(self, python: str | None = None, note: str = "") -> None:
        self.python = python or sys.executable
        self.note = note

    def run(self, workdir: Path, *, timeout: float, child_env: dict[str, str]) -> ChildExit:
        command = [self.python, "-m", "pytest_persist.isolated_load", str(workdir)]
        env = dict(child_env)
        env.setdefault("PYTHONFAULTHANDLER", "1")  # a crash prints the Python stack
        cwd = workdir / "cwd"
        cwd.mkdir(exist_ok=True)
        posix = os.name == "posix"
        with open(workdir / "stderr.txt", "ab") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                env=env,
                cwd=cwd,
                start_new_session=posix,  # so a timeout kills the loader's own children too
            )
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid) if posix else process.kill()
                process.wait()
                return ChildExit(None, True, self.isolation, self.note)
            except BaseException:
                _kill_group(process.pid) if posix else process.kill()
                process.wait()
                raise
        if posix:
            _kill_group(process.pid)  # whatever the artifact left running
        return ChildExit(returncode, False, self.isolation, self.note)

    def stop(self) -> None:
        pass


class LoaderUnavailable(Exception):
    """The fork server could not be started or did not become ready."""


class ForkLoader:
    """A warm server that forks one isolated child per artifact (see the module docstring).

    ``start()`` returns at once (the server imports in the background, e.g. while pytest
    collects); ``run()`` waits for it the first time. A server that dies is restarted by the
    next ``run()``.
    """

    isolation = "fork"

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        self.preload = preload
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._ready: dict[str, Any] | None = None
        self._logdir: tempfile.TemporaryDirectory[str] | None = None
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
        from .isolated_load import import_paths

        self._logdir = tempfile.TemporaryDirectory(prefix="pytest-persist-loader-")
        env = clean_environment()
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [env.get("PYTHONPATH", ""), *import_paths()] if p
        )
        self.started_at = time.perf_counter()
        with open(Path(self._logdir.name) / "server.log", "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pytest_persist.loader", *self.preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=self._logdir.name,
            )

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert process.stdin is not None
            process.stdin.close()  # EOF: the server returns
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._reset()

    def _reset(self) -> None:
        process, self._process = self._process, None
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
        request = (json.dumps({"workdir": str(workdir), "timeout": timeout}) + "\n").encode()
        for _attempt in (1, 2):  # a server that died since the last check is restarted once
            if self._process is not None and self._process.poll() is not None:
                self._reset()
            try:
                self.wait_ready()
            except LoaderUnavailable as exc:
                note = f"{exc}; this artifact was loaded in its own interpreter"
                return ProcessLoader(note=note).run(workdir, timeout=timeout, child_env=child_env)
            ended = self._run_once(request, timeout)
            if ended is not None:
                return ended
            self._reset()  # it died before forking this artifact's child
        return ChildExit(None, False, self.isolation, "the fork loader died")

    def _run_once(self, request: bytes, timeout: float) -> ChildExit | None:
        """The child's end; None when the server was gone before it forked the child."""
        assert self._process is not None and self._process.stdin is not None
        pid = None
        try:
            try:
                self._process.stdin.write(request)
                self._process.stdin.flush()
            except OSError:  # BrokenPipeError: the server is gone
                return None
            deadline = time.monotonic() + timeout + _MARGIN
            while True:
                message = self._read_message(deadline)
                if message is None:  # the server died or stopped answering
                    if pid is None:
                        return None
                    _kill_group(pid)
                    self._reset()
                    timed_out = time.monotonic() >= deadline
                    return ChildExit(None, timed_out, self.isolation, "the fork loader died")
                if "started" in message:
                    pid = message["started"]
                    continue
                return ChildExit(message["returncode"], message["timed_out"], self.isolation)
        except BaseException:  # an interrupt: the child must not outlive the check
            if pid is not None:
                _kill_group(pid)
            self._reset()
            raise

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


def _kill_group(pid: int) -> None:
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


# ----------------------------------------------------------------------------------------------
# the server


def serve(preload: list[str]) -> int:
    """Import ``preload``, then run one forked child per request line until stdin closes.

    The next child is forked ahead (a *spare*, waiting for its request on a pipe) while the
    parent compares the last one's outputs, and a child reports "done" on another pipe once
    its result is written, before it exits: neither the fork nor the exit of a process with
    scikit-learn mapped is on the way of the next check.
    """
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever an import prints goes to the log, not into the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches it
    started = time.perf_counter()
    failed = {}
    import importlib

    for name in preload:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional library that is not installed
            failed[name] = f"{type(exc).__name__}: {exc}"
    _warm_up()
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "preload_seconds": round(time.perf_counter() - started, 3),
        "not_preloaded": failed,
        "threads": _thread_count(),
    }
    import gc

    gc.collect()
    gc.freeze()  # the collector of a child does not touch (and so copy) the server's objects
    protocol.write(json.dumps(ready) + "\n")
    finishing: list[int] = []  # children that said done and may still be exiting
    spare = _fork_spare(protocol.fileno())
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            pid, request_fd, done_fd = spare
            with contextlib.suppress(OSError):  # a spare that died: its status says how
                os.write(request_fd, line.encode())
            os.close(request_fd)
            protocol.write(json.dumps({"started": pid}) + "\n")
            returncode, timed_out, exiting = _wait(pid, done_fd, float(request["timeout"]))
            os.close(done_fd)
            protocol.write(
                json.dumps({"pid": pid, "returncode": returncode, "timed_out": timed_out}) + "\n"
            )
            if exiting:
                finishing.append(pid)
            spare = _fork_spare(protocol.fileno())
            finishing = _reap(finishing)
    finally:
        pid, request_fd, done_fd = spare
        os.close(request_fd)  # EOF: the spare exits without doing anything
        os.close(done_fd)
        for child in [*finishing, pid]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, 0)
            _kill_group(child)
    return 0


def _warm_up() -> None:
    """Fill the caches of :data:`WARM_UP` whose module the preload imported."""
    for target in WARM_UP:
        module_name, _, function_name = target.partition(":")
        module = sys.modules.get(module_name)
        if module is None:
            continue
        with contextlib.suppress(Exception):
            getattr(module, function_name)()


def _fork_spare(protocol_fd: int) -> tuple[int, int, int]:
    """Fork a child that waits for its request; returns (pid, request fd, done fd)."""
    request_read, request_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(request_write)
        os.close(done_read)
        _child(request_read, done_write, protocol_fd)  # never returns
    os.close(request_read)
    os.close(done_write)
    return pid, request_write, done_read


def _child(request_fd: int, done_fd: int, protocol_fd: int) -> None:
    code = 70
    try:
        os.setsid()  # its own process group: a timeout kills whatever it started too
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # not the server's stdin
        os.close(null)
        os.close(protocol_fd)
        with os.fdopen(request_fd, "rb") as pipe:
            line = pipe.read()
        if not line:
            os._exit(0)  # the server is stopping
        request = json.loads(line)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        workdir = Path(request["workdir"])
        err = os.open(workdir / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(err, 1)
        os.dup2(err, 2)
        os.close(err)
        import faulthandler

        faulthandler.enable()  # a crash prints the Python stack into stderr.txt
        _reseed()
        from .isolated_load import run_child

        code = run_child(workdir, replace_environ=True)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        if code == 0:
            os.write(done_fd, b"0")  # the result is written; what remains is the exit
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reseed() -> None:
    """A fresh interpreter would draw new seeds; every fork of the server shares its state."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        with contextlib.suppress(Exception):
            numpy.random.seed()


def _wait(pid: int, done_fd: int, timeout: float) -> tuple[int | None, bool, bool]:
    """Wait for ``pid`` to report done, or to end, up to ``timeout``; kill its process group
    when it runs over. Returns (returncode, negative for a signal; timed out; still exiting)."""
    deadline = time.monotonic() + timeout
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    try:
        watched = [done_fd] if pidfd is None else [done_fd, pidfd]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # in case it had not reached setsid
                os.waitpid(pid, 0)
                _kill_group(pid)
                return None, True, False
            readable, _, _ = select.select(watched, [], [], min(remaining, 0.05))
            if done_fd in readable:
                if os.read(done_fd, 1) == b"0":
                    return 0, False, True
                watched = [w for w in watched if w != done_fd]  # EOF: it is ending
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                _kill_group(pid)  # whatever the artifact left running
                return os.waitstatus_to_exitcode(status), False, False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _reap(pids: list[int]) -> list[int]:
    """The children of ``pids`` not yet ended; those that ended lose what they left running."""
    running = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _kill_group(pid)
        else:
            running.append(pid)
    return running


def _thread_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
