"""A memory cgroup per check, where the system lets this process make one.

``RLIMIT_DATA`` (``loader.apply_limits``) does not count shared memory: a model that maps
5 GiB with ``MAP_SHARED`` passes a 1 GiB limit. A memory cgroup counts every page its
processes use, shared ones and ``/dev/shm`` included, and it also holds every process a
check starts, however it detaches (``setsid``, double fork): when the check ends, everything
left in its cgroup is killed. Both cgroup v1 (a ``memory`` hierarchy) and v2 (the unified
hierarchy with the memory controller) are used; creating one needs write access to the
hierarchy (root, or a delegated subtree). Where none can be made, :func:`make_check_group`
returns None and the check runs with the rlimits alone (the report says which).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CheckGroup",
    "join_spare_group",
    "make_check_group",
    "own_spare_group",
    "remove_retired",
    "spare_group",
    "sweep",
]

_ROOT = Path("/sys/fs/cgroup")
_COUNTER = itertools.count()


@dataclass(frozen=True)
class CheckGroup:
    """One check's cgroup: ``path`` (its folder) and ``version`` (1 or 2)."""

    path: Path
    version: int

    def limit(self, max_memory: int | None) -> None:
        """Cap the group's memory (swap included where it is accounted); None: no cap."""
        if max_memory is None:
            return
        if self.version == 2:
            (self.path / "memory.max").write_text(str(max_memory))
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(max_memory))
            with contextlib.suppress(OSError):  # only where swap is accounted
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(max_memory))

    def join(self, pid: int | None = None) -> None:
        """Move ``pid`` (default: this process) into the group; its children follow."""
        (self.path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            text = (self.path / "cgroup.procs").read_text()
            return [int(line) for line in text.split()]
        return []

    def out_of_memory(self) -> bool:
        """Whether the kernel had to kill a process of the group for its memory limit."""
        if self.version == 2:
            events = _read(self.path / "memory.events")
            return any(
                line.split()[0] in ("oom_kill", "oom_group_kill") and line.split()[1] != "0"
                for line in events.splitlines()
                if len(line.split()) == 2
            )
        oom = _read(self.path / "memory.oom_control").splitlines()
        return any(line.startswith("oom_kill ") and line.split()[1] != "0" for line in oom)

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL every process left in the group, until none is."""
        if self.version == 2 and (self.path / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.path / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the group now (a check that crashed or timed out)."""
        self.kill()
        if not self._rmdir(attempts=5):
            _RETIRED.append(self)

    def retire(self) -> None:
        """Remove the group soon, without waiting: its child said it is done and is still
        exiting; whatever else is left is killed at the next sweep (the next check's start,
        or exit)."""
        _RETIRED.append(self)

    def _rmdir(self, attempts: int) -> bool:
        for attempt in range(attempts):
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:  # EBUSY while the last process is being torn down
                if attempt + 1 < attempts:
                    time.sleep(0.01)
        return False


_RETIRED: list[CheckGroup] = []


def sweep() -> None:
    """Kill what is left in the retired groups and remove those that are empty."""
    for group in list(_RETIRED):
        for pid in group.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if group._rmdir(attempts=1):
            _RETIRED.remove(group)


@atexit.register
def remove_retired() -> None:
    """Remove every retired group now, killing what is left in them (at exit)."""
    for group in list(_RETIRED):
        group.kill(timeout=1.0)
        group._rmdir(attempts=20)
    _RETIRED.clear()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _parent_v1() -> Path | None:
    memory = _ROOT / "memory"
    return memory if (memory / "cgroup.procs").is_file() else None


def _parent_v2() -> Path | None:
    """A folder of the unified hierarchy whose children get the memory controller."""
    if not (_ROOT / "cgroup.controllers").is_file():
        return None
    if "memory" not in _read(_ROOT / "cgroup.controllers").split():
        return None
    base = _ROOT / "pytest-persist"
    try:
        base.mkdir(exist_ok=True)
        control = _ROOT / "cgroup.subtree_control"
        if "memory" not in _read(control).split():
            control.write_text("+memory")
        if "memory" not in _read(base / "cgroup.subtree_control").split():
            (base / "cgroup.subtree_control").write_text("+memory")
    except OSError:
        return None
    return base


_CLEANED: set[Path] = set()


def _remove_stale(parent: Path) -> None:
    """Remove the empty groups of pytest-persist processes that are gone (killed before they
    could remove their own), once per parent and process."""
    if parent in _CLEANED:
        return
    _CLEANED.add(parent)
    for path in parent.glob("pytest-persist-*"):
        # pytest-persist-<pid>-<n> (a process loader's) or pytest-persist-spare-<pid>
        parts = path.name.split("-")
        owner = parts[3] if parts[2] == "spare" else parts[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                path.rmdir()


@functools.lru_cache(maxsize=1)
def _parents() -> tuple[tuple[int, Path], ...]:
    """Where this process can make groups, v2 first (looked up once)."""
    found = ((2, _parent_v2()), (1, _parent_v1()))
    return tuple((version, parent) for version, parent in found if parent is not None)


def make_check_group(max_memory: int | None, name: str | None = None) -> CheckGroup | None:
    """A fresh cgroup (``name``, default one unique to this process) limited to
    ``max_memory`` bytes (None: unlimited, still a container for the check's processes), or
    None where this process cannot make one."""
    sweep()
    for version, parent in _parents():
        _remove_stale(parent)
        path = parent / (name or f"pytest-persist-{os.getpid()}-{next(_COUNTER)}")
        try:
            path.mkdir()
        except OSError:
            continue
        group = CheckGroup(path, version)
        try:
            group.limit(max_memory)
        except OSError:
            group.remove()
            continue
        return group
    return None


def spare_group(pid: int) -> CheckGroup | None:
    """The group a fork server's spare child ``pid`` made for itself (see
    :func:`join_spare_group`), if it could."""
    for version, parent in _parents():
        path = parent / f"pytest-persist-spare-{pid}"
        if path.is_dir():
            return CheckGroup(path, version)
    return None


def join_spare_group() -> CheckGroup | None:
    """In a spare child of the fork server, before its request: make a group of its own and
    move into it. Moving a process between cgroups takes ~10 ms (an RCU grace period on v1),
    so it is done here, while the spare waits, not on the check's path; the request's limit
    is set on arrival (``CheckGroup.limit``), and the server removes the group at the end."""
    global _SPARE
    group = make_check_group(None, name=f"pytest-persist-spare-{os.getpid()}")
    if group is None:
        return None
    try:
        group.join()
    except OSError:
        group.remove()
        return None
    _SPARE = group
    return group


_SPARE: CheckGroup | None = None


def own_spare_group() -> CheckGroup | None:
    """The group this spare child joined while it waited (None: none, or not a spare)."""
    return _SPARE
