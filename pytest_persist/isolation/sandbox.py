"""What a loader child may touch: no module from the store, no key file, no write outside its
working directory.

Two layers, both entered by the child before it reads the artifact:

- :func:`guard_imports` replaces the import system's path finder with one that refuses any
  module whose file lies in a forbidden directory (the store, the entry's folder, the check's
  own working directory), and drops those directories from ``sys.path``. A store kept inside
  the project root (``--persist-save=artifacts``) is otherwise importable as a namespace
  package, so a ``.py`` file planted in it would run in the child.
- :func:`restrict_filesystem` uses Linux's Landlock (an unprivileged, per-process sandbox,
  kernel 5.13 and newer) so that the child cannot read the signing keys and can write only
  beneath the directories it is given. Where Landlock is unavailable (another system, an old
  kernel, a container that filters it) nothing is restricted and the returned description
  says so.

The standard library only (``ctypes`` for the three Landlock system calls): the fork server
imports this before any check.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.machinery
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "StoreImportRefused",
    "guard_imports",
    "landlock_abi",
    "restrict_filesystem",
]


class StoreImportRefused(ImportError):
    """A module that would be imported from a directory the child must not import from."""


# ----------------------------------------------------------------------------------------------
# imports


def _inside(path: str, roots: Sequence[str]) -> str | None:
    real = os.path.realpath(path)
    for root in roots:
        if real == root or real.startswith(root + os.sep):
            return root
    return None


class _GuardedPathFinder:
    """``importlib.machinery.PathFinder`` that refuses specs located in ``roots``."""

    def __init__(self, roots: Sequence[str]) -> None:
        self.roots = tuple(roots)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None:
            return None
        places = [spec.origin] if spec.origin and spec.has_location else []
        places += list(spec.submodule_search_locations or [])
        for place in places:
            root = _inside(place, self.roots)
            if root is not None:
                raise StoreImportRefused(
                    f"refusing to import {fullname!r} from {place}: it lies inside {root}, "
                    "which a loader child never imports from (a store is data, not code); "
                    "install the package that provides it in this environment",
                    name=fullname,
                )
        return spec

    def invalidate_caches(self) -> None:
        importlib.machinery.PathFinder.invalidate_caches()


def guard_imports(forbidden: Iterable[str]) -> None:
    """From now on, no module is imported from beneath ``forbidden`` (directories); those
    directories and everything beneath them leave ``sys.path``."""
    forbidden = [p for p in forbidden if p]
    roots = [os.path.realpath(p) for p in forbidden]
    if not roots:
        return
    sys.path[:] = [p for p in sys.path if not p or _inside(p, roots) is None]
    for position, finder in enumerate(sys.meta_path):
        if finder is importlib.machinery.PathFinder:
            sys.meta_path[position] = _GuardedPathFinder(roots)  # type: ignore[call-overload]
            break
    # Finders cached for a path entry beneath the roots, which exist only if a root was on
    # sys.path (a plain prefix test: the cache holds hundreds of package folders).
    prefixes = tuple({*roots, *(os.path.abspath(p) for p in forbidden if p)})
    for entry in [e for e in sys.path_importer_cache if e.startswith(prefixes)]:
        sys.path_importer_cache.pop(entry, None)
    # Nothing imported from there stays reachable by name. (A plain prefix test: resolving
    # the origin of each of the ~2,000 modules a warm server holds costs 50 ms per check.)
    prefixes = tuple({*roots, *(os.path.abspath(p) for p in forbidden if p)})
    # Not scanned: sys.modules. Nothing from the store is imported before this (the server
    # preloads named libraries only), and touching each of the ~2,000 modules of a forked
    # server copies their pages: 25 ms per check, measured.


# ----------------------------------------------------------------------------------------------
# Landlock

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # every Linux arch
_PR_SET_NO_NEW_PRIVS = 38
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_ALL = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _errno() -> str:
    return os.strerror(ctypes.get_errno())


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(
            _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION
        )
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


@dataclass(frozen=True)
class _Access:
    read: int
    write: int
    handled: int


def _access(abi: int) -> _Access:
    write = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_ALL
    if abi >= 2:
        write |= _REFER
    if abi >= 3:
        write |= _TRUNCATE
    return _Access(read=_READ_FILE, write=write, handled=_READ_FILE | write)


def _ancestors(path: str) -> list[str]:
    parts, ancestors = path.split(os.sep)[1:-1], [os.sep]
    for part in parts:
        ancestors.append(os.path.join(ancestors[-1], part))
    return ancestors


def _leads_to(link: str, hidden: set[str]) -> bool:
    """Whether the symlink ``link`` resolves to a hidden path, into one, or above one."""
    target = os.path.realpath(link)
    return any(
        _inside(target, [path]) is not None or _inside(path, [target]) is not None
        for path in hidden
    )


def restrict_filesystem(*, writable: Iterable[str], unreadable: Iterable[str]) -> str:
    """Forbid this process (and what it starts) to read ``unreadable`` (files or directories)
    and to write anywhere but beneath ``writable``; deny TCP where the kernel can.

    Returns what was applied, for the report ("landlock ABI 7: ..."), or why nothing was
    ("not restricted: ..."). A path in ``writable`` or ``unreadable`` that does not exist is
    left out. Reading stays allowed everywhere else: the rules grant reading to every sibling
    of each directory on the way from ``/`` to an unreadable path (Landlock only allows).
    """
    abi = landlock_abi()
    if abi < 1:
        return "not restricted: Landlock is not available on this system"
    hidden = {os.path.realpath(p) for p in unreadable if p and os.path.lexists(p)}
    writable_dirs = [os.path.realpath(p) for p in writable if p and os.path.exists(p)]
    access = _access(abi)
    libc = _libc()
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    attr = _RulesetAttr(access.handled, net)
    size = ctypes.sizeof(_RulesetAttr) if net else ctypes.sizeof(ctypes.c_uint64)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return f"not restricted: landlock_create_ruleset failed ({_errno()})"
    try:

        def allow(path: str, rights: int) -> None:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return  # gone meanwhile, or not ours to open: stays denied
            try:
                if not os.path.isdir(path):
                    rights &= _READ_FILE | _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)
                rule = _PathBeneathAttr(rights, fd)
                libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
            finally:
                os.close(fd)

        ancestors = {a for path in hidden for a in _ancestors(path)}
        for directory in sorted(ancestors):
            with contextlib.suppress(OSError):
                for name in os.listdir(directory):
                    child = os.path.join(directory, name)
                    if child in ancestors or child in hidden:
                        continue
                    if os.path.islink(child) and _leads_to(child, hidden):
                        continue  # a symlink to a key or to a folder that holds one
                    allow(child, access.read)
        if not hidden:
            allow(os.sep, access.read)
        for directory in writable_dirs:
            allow(directory, access.handled)
        for device in ("/dev/null", "/dev/shm"):  # semaphores of joblib/loky live in /dev/shm
            if os.path.exists(device):
                allow(device, access.handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"not restricted: prctl(NO_NEW_PRIVS) failed ({_errno()})"
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            return f"not restricted: landlock_restrict_self failed ({_errno()})"
    finally:
        os.close(ruleset)
    parts = [f"landlock ABI {abi}: writes only beneath the check's directory"]
    if hidden:
        parts.append(f"{len(hidden)} key file(s) unreadable")
    if net:
        parts.append("no TCP")
    return ", ".join(parts)
