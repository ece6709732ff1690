"""The fork server behind ``loader.ForkLoader``:
``python -m pytest_persist.isolation.fork_server MODULE...``.

It imports the modules named on its command line once, runs the warm-ups of
``loader.WARM_UP``, then reads one JSON request per line on stdin and forks one isolated child
per request; a line ``{"import": [...]}`` imports more modules first (what the client learnt
after starting it), answered by ``{"imported": [...], "not_imported": {...}}``. Several
children may run at once (the client sends the next artifact's request while it waits for the
current one); each has its own deadline, enforced here with ``pidfd_open``/``select``, and a
child that runs over loses its whole process group.

For each request it writes ``{"started": pid, "id": ...}``, then, when the child has written its
result (or ended, or timed out), ``{"id", "pid", "returncode", "timed_out", "seconds"}`` (how
long the child ran), one line each on the protocol descriptor (a duplicate of its stdout). At
EOF on stdin it stops, and kills the children still running.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from . import cgroups
from .loader import WARM_UP, become_subreaper, end_children, kill_group

_POLL = 0.05  # seconds between waitpid polls where pidfd_open is unavailable


@dataclass
class _Running:
    """A child that has its request and has not been reported yet."""

    pid: int
    request_id: Any
    started: float
    deadline: float
    done_fd: int | None  # None once it reached EOF (the child is ending)
    pidfd: int | None  # readable once the child has ended; None where unavailable

    def watched(self) -> list[int]:
        return [fd for fd in (self.done_fd, self.pidfd) if fd is not None]

    def close(self) -> None:
        for fd in (self.done_fd, self.pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.done_fd = self.pidfd = None

    def poll(self, readable: list[int], now: float) -> tuple[int | None, bool, bool] | None:
        """(returncode, negative for a signal; timed out; still exiting) once it is over."""
        if self.done_fd is not None and self.done_fd in readable:
            if os.read(self.done_fd, 1) == b"0":
                return 0, False, True  # its result is written; what remains is the exit
            os.close(self.done_fd)  # EOF: it is ending without a result
            self.done_fd = None
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if done:
            kill_group(self.pid)  # whatever the artifact left running
            return os.waitstatus_to_exitcode(status), False, False
        if now >= self.deadline:
            kill_group(self.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # in case it had not reached setsid
            os.waitpid(self.pid, 0)
            kill_group(self.pid)
            return None, True, False
        return None


def serve(preload: list[str]) -> int:
    """Import ``preload``, then fork one child per request line until stdin closes.

    The next child is forked ahead (a *spare*, waiting for its request on a pipe) as soon as
    the last one got its request, and a child reports "done" on another pipe once its result
    is written, before it exits: neither the fork nor the exit of a process with scikit-learn
    mapped is on the way of the next check.
    """
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever an import prints goes to the log, not into the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches it
    become_subreaper()  # what a child starts and detaches comes back here when it ends
    # The standard library's advice for fork without exec (``gc.freeze``): no collection in
    # the server, whose objects all live until it exits (the imports run faster without one),
    # a freeze before each fork, and the collector back on in the child.
    gc.disable()
    started = time.perf_counter()
    failed = _import_all(preload)
    _warm_up()
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "preload_seconds": round(time.perf_counter() - started, 3),
        "not_preloaded": failed,
        "threads": _thread_count(),
    }
    gc.freeze()  # the collector of a child does not touch (and so copy) the server's objects
    protocol.write(json.dumps(ready) + "\n")
    running: dict[int, _Running] = {}
    finishing: list[int] = []  # children that said done and may still be exiting
    spare = _fork_spare(protocol.fileno())
    pending = b""
    try:
        while True:
            watched = [0] + [fd for child in running.values() for fd in child.watched()]
            timeout = None
            if running:
                nearest = min(child.deadline for child in running.values())
                timeout = max(0.0, nearest - time.monotonic())
                if any(child.pidfd is None for child in running.values()):
                    timeout = min(timeout, _POLL)
            readable, _, _ = select.select(watched, [], [], timeout)
            if 0 in readable:
                chunk = os.read(0, 65536)
                if not chunk:
                    return 0  # EOF: the client is stopping
                pending += chunk
                while b"\n" in pending:
                    line, _, pending = pending.partition(b"\n")
                    if not line.strip():
                        continue
                    request = json.loads(line)
                    if "import" in request:
                        spare = _import_more(request["import"], spare, protocol)
                    else:
                        spare = _start(request, line, spare, running, protocol)
            now = time.monotonic()
            for child in list(running.values()):
                ended = child.poll(readable, now)
                if ended is None:
                    continue
                returncode, timed_out, exiting = ended
                child.close()
                del running[child.pid]
                message = {
                    "id": child.request_id,
                    "pid": child.pid,
                    "returncode": returncode,
                    "timed_out": timed_out,
                    "seconds": round(now - child.started, 4),
                }
                group = cgroups.spare_group(child.pid)
                if group is not None:
                    message["cgroup"] = group.version
                    message["out_of_memory"] = group.out_of_memory()
                protocol.write(json.dumps(message) + "\n")
                if exiting:
                    finishing.append(child.pid)
                else:  # it is gone: what it left (adopted by this server) goes too
                    known = [*running, *finishing, spare[0]]
                    end_children(os.getpid(), keep=known)
                cgroups.sweep()  # the groups of children that were still exiting
                if group is not None and exiting:
                    group.retire()  # removed by the next sweep, once it has exited
                elif group is not None:
                    group.remove()  # with everything it started, however detached
            finishing = _reap(finishing)
    finally:
        pid, request_fd, done_fd = spare
        os.close(request_fd)  # EOF: the spare exits without doing anything
        os.close(done_fd)
        for child in running.values():  # nobody waits for these any more
            kill_group(child.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            child.close()
        for child_pid in [*finishing, *running, pid]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child_pid, 0)
            kill_group(child_pid)
            group = cgroups.spare_group(child_pid)
            if group is not None:
                group.remove()
        cgroups.remove_retired()  # this process ends with os._exit: no atexit


def _import_more(
    modules: list[str], spare: tuple[int, int, int], protocol: TextIO
) -> tuple[int, int, int]:
    """Import ``modules`` (the backends of the store, known after start), then replace the
    spare, forked without them."""
    failed = _import_all(modules)
    gc.freeze()
    pid, request_fd, done_fd = spare
    os.close(request_fd)  # EOF: the old spare exits without doing anything
    os.close(done_fd)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    group = cgroups.spare_group(pid)
    if group is not None:
        group.remove()
    protocol.write(json.dumps({"imported": modules, "not_imported": failed}) + "\n")
    return _fork_spare(protocol.fileno())


def _start(
    request: dict[str, Any],
    line: bytes,
    spare: tuple[int, int, int],
    running: dict[int, _Running],
    protocol: TextIO,
) -> tuple[int, int, int]:
    """Hand ``request`` (its JSON ``line``) to the spare child; return the next spare."""
    pid, request_fd, done_fd = spare
    with contextlib.suppress(OSError):  # a spare that died: its status says how
        os.write(request_fd, line + b"\n")
    os.close(request_fd)
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    started = time.monotonic()
    deadline = started + float(request["timeout"])
    running[pid] = _Running(pid, request.get("id"), started, deadline, done_fd, pidfd)
    protocol.write(json.dumps({"started": pid, "id": request.get("id")}) + "\n")
    return _fork_spare(protocol.fileno())


def _import_all(modules: list[str]) -> dict[str, str]:
    """Import ``modules``; return why each one that failed did (an optional library that is
    not installed is left out)."""
    import importlib

    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed


def _warm_up() -> None:
    """Run the warm-ups of :data:`loader.WARM_UP` whose module the preload imported."""
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
        gc.enable()  # as in a fresh interpreter (the server runs without collections)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # not the server's stdin
        os.close(null)
        os.close(protocol_fd)
        cgroups.join_spare_group()  # while it waits: off the check's path
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
        from .child import run_child

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


def _reap(pids: list[int]) -> list[int]:
    """The children of ``pids`` not yet ended; those that ended lose what they left running."""
    running = []
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            kill_group(pid)
        else:
            running.append(pid)
    return running


def _thread_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


if __name__ == "__main__":
    code = serve(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown (tens of ms with scikit-learn and pandas loaded): the children
    # are reaped and nothing else is left to clean up, while the client waits for this exit.
    os._exit(code)
