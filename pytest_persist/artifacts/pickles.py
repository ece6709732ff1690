"""A pickle stream read without running it: every global it names, the states it holds.

Two readers, on purpose:

* ``read_stream`` runs the stream through the standard library's own pickle machine
  (``pickle._Unpickler``, the pure-Python one) with every class replaced by an inert
  stand-in (``Stub``): ``find_class`` imports nothing, and calling, constructing or building a
  stand-in only records its arguments and state. This is the trick joblib itself uses to
  read its files (``joblib.numpy_pickle.NumpyUnpickler`` subclasses the same machine): after
  the ``BUILD`` of a ``NumpyArrayWrapper`` it skips the array's raw bytes, which joblib writes
  inside the stream, or reads the nested pickle of an object array. So it sees every global
  of a joblib file, also after its first array, and the states: ``_sklearn_version``.
* picklescan, a kept scanner, decides which globals are dangerous (its safety lists), and
  also scans the stream with its own opcode reader: what it finds must be among what the
  stand-in reader found (it stops at joblib's first raw array, so on joblib files it sees
  less, never more). Anything it sees that the reader did not counts too.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import copyreg
import io
import logging
import pickle
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = [
    "DANGEROUS",
    "INNOCUOUS",
    "SUSPICIOUS",
    "PickleReading",
    "Stub",
    "classify",
    "picklescan_globals",
    "read_stream",
]

DANGEROUS, SUSPICIOUS, INNOCUOUS = "dangerous", "suspicious", "innocuous"
_JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_OLD_JOBLIB_WRAPPERS = {
    ("joblib.numpy_pickle", "NDArrayWrapper"),
    ("joblib.numpy_pickle", "ZNDArrayWrapper"),
}
_MAX_WALK = 2_000_000  # objects visited looking for _sklearn_version


class Stub:
    """An inert stand-in for whatever a global names: constructing, calling or building it
    records the arguments and the state; it has no other behaviour."""

    global_name: tuple[str, str] = ("?", "?")

    def __init__(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> None:
        self.args = args
        self.kwargs = kwargs or {}
        self.state: Any = None
        self.items: list[Any] = []
        self.content: Any = None  # a joblib object array's nested pickle

    # what the pickle machine calls on containers it fills
    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Iterable[Any]) -> None:
        self.items.extend(items)

    def add(self, item: Any) -> None:
        self.items.append(item)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def __repr__(self) -> str:
        return f"<stand-in for {'.'.join(self.global_name)}>"


def _stand_in(stub_class: type[Stub], args: Any, kwargs: Any = None) -> Stub:
    if not isinstance(args, (tuple, list)):
        raise pickle.UnpicklingError(f"arguments for {stub_class.global_name} are not a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise pickle.UnpicklingError("keyword arguments are not a dict")
    return stub_class(tuple(args), kwargs)


def _call(func: Any, args: Any, kwargs: Any = None) -> Stub:
    """What calling ``func`` gives: a stand-in, whatever ``func`` stands for."""
    if isinstance(func, type) and issubclass(func, Stub):
        return _stand_in(func, args, kwargs)
    if isinstance(func, Stub):  # e.g. cloudpickle's _builtin_type("CodeType")(...)
        return _stand_in(type(func), args, kwargs)
    raise pickle.UnpicklingError(f"the stream calls a {type(func).__name__}, which is not callable")


class _StubUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """The pure-Python unpickler with stand-ins for every global (see the module docstring)."""

    dispatch = pickle._Unpickler.dispatch.copy()  # type: ignore[attr-defined]

    def __init__(self, file: IO[bytes], reading: PickleReading, size: int) -> None:
        super().__init__(file, fix_imports=True, encoding="latin1")
        self._file = file
        self._reading = reading
        self._size = size

    def find_class(self, module: str, name: str) -> type[Stub]:
        if self.proto < 3:  # what Python 3's unpickler would import (fix_imports)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return self._reading.stub_class(str(module), str(name))

    def persistent_load(self, pid: Any) -> None:
        self._reading.persistent_ids += 1
        return None

    def get_extension(self, code: int) -> None:
        # copyreg's extension cache holds real objects: never read it, never fill it.
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if not key:
            raise pickle.UnpicklingError(f"unregistered extension code {code}")
        self.append(self.find_class(*key))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:  # INST, OBJ
        self.append(_call(klass, args))

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = _call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(_call(cls, args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(_call(cls, args, kwargs))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, Stub):
            return  # a real container built by the stream: nothing to record
        inst.state = state
        if inst.global_name == _JOBLIB_WRAPPER:
            self._skip_joblib_array(inst)
        elif inst.global_name in _OLD_JOBLIB_WRAPPERS:
            self._reading.old_joblib_arrays += 1

    def _skip_joblib_array(self, wrapper: Stub) -> None:
        """What ``NumpyArrayWrapper.read_array`` reads after the wrapper: the nested pickle of
        an object array, or the raw bytes (after the alignment padding) of any other."""
        state = wrapper.state if isinstance(wrapper.state, dict) else {}
        try:
            shape = state.get("shape", ())
            count = 1
            for size in shape if isinstance(shape, (tuple, list)) else [shape]:
                count *= int(size)
            itemsize, has_object = _dtype_layout(state["dtype"])
        except (KeyError, TypeError, ValueError) as exc:
            raise pickle.UnpicklingError(
                f"a joblib array whose layout cannot be read ({exc})"
            ) from None
        if has_object:
            self._reading.object_arrays += 1
            wrapper.content = _StubUnpickler(self._file, self._reading, self._size).load()
            return
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self._file.read(1)
            if not padding:
                raise pickle.UnpicklingError("truncated joblib array padding")
            self._file.seek(padding[0], io.SEEK_CUR)
        end = self._file.tell() + count * itemsize
        if count < 0 or end > self._size:
            raise pickle.UnpicklingError(
                f"a joblib array of {count * itemsize} bytes runs past the end of the stream"
            )
        self._file.seek(end)
        self._reading.joblib_arrays += 1

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


def _dtype_layout(dtype: Any) -> tuple[int, bool]:
    """(item size, holds objects) of a stand-in for ``numpy.dtype(typestr, align, copy)``
    built with numpy's dtype state ``(version, byteorder, subarray, names, fields, elsize,
    alignment, flags, ...)``."""
    if not isinstance(dtype, Stub) or dtype.global_name[1] != "dtype" or not dtype.args:
        raise ValueError(f"{dtype!r} is not a numpy dtype")
    typestr = str(dtype.args[0])
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    if typestr.startswith("O"):
        return 8, True
    if elsize > 0:
        return elsize, bool(flags & 1)  # NPY_ITEM_REFCOUNT: a field holds objects
    digits = re.search(r"(\d+)$", typestr)
    if digits:
        return int(digits.group(1)), False
    if typestr in ("?", "b", "B"):
        return 1, False
    raise ValueError(f"cannot size the numpy dtype {typestr!r}")


@dataclass
class PickleReading:
    """What reading a pickle stream with stand-ins found."""

    #: Every (module, name) the stream imports, in the order it first does.
    globals: list[tuple[str, str]] = field(default_factory=list)
    roots: list[Any] = field(default_factory=list)  # the object of each stacked pickle
    joblib_arrays: int = 0
    object_arrays: int = 0
    old_joblib_arrays: int = 0  # joblib < 0.10: arrays in side files
    persistent_ids: int = 0
    #: Why the first pickle could not be read to its end (then the lists are incomplete).
    error: str | None = None
    #: Bytes after the first pickle that are not a pickle (``pickle.load`` never reads them).
    trailing: str | None = None
    _classes: dict[tuple[str, str], type[Stub]] = field(default_factory=dict, repr=False)

    def stub_class(self, module: str, name: str) -> type[Stub]:
        key = (module, name)
        if key not in self._classes:
            self.globals.append(key)
            self._classes[key] = type("Stub", (Stub,), {"global_name": key})
        return self._classes[key]

    @property
    def complete(self) -> bool:
        return self.error is None

    @property
    def top_class(self) -> str | None:
        root = self.roots[0] if self.roots else None
        return ".".join(root.global_name) if isinstance(root, Stub) else None

    @property
    def flavour(self) -> str:
        """The backend that wrote it, as far as the stream shows: ``joblib`` (raw arrays in
        the stream: only ``joblib.load`` reads it), ``cloudpickle`` (it needs cloudpickle to
        load) or ``pickle`` (``pickle.load`` reads it; joblib may still have written it)."""
        modules = {module for module, _ in self.globals}
        if self.joblib_arrays or self.old_joblib_arrays or "joblib.numpy_pickle" in modules:
            return "joblib"
        if any(module.split(".")[0] == "cloudpickle" for module in modules):
            return "cloudpickle"
        return "pickle"

    def sklearn_versions(self) -> dict[str, list[str]]:
        """``_sklearn_version`` found in the states: version -> the classes that recorded it."""
        found: dict[str, list[str]] = {}
        for stub in _stubs(self.roots):
            state = stub.state
            if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
                state = state[0]  # (dict state, slot state)
            if isinstance(state, dict):
                version = state.get("_sklearn_version")
                if isinstance(version, str):
                    found.setdefault(version, []).append(stub.global_name[1])
        return found


def _stubs(roots: list[Any]) -> Iterator[Stub]:
    """Every stand-in reachable from ``roots`` (each once), breadth first, bounded."""
    seen: set[int] = set()
    queue = list(roots)
    visited = 0
    while queue and visited < _MAX_WALK:
        obj = queue.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        visited += 1
        if isinstance(obj, Stub):
            yield obj
            queue.extend((obj.state, obj.args, obj.kwargs, obj.items, obj.content))
        elif isinstance(obj, dict):
            queue.extend(obj.keys())
            queue.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            queue.extend(obj)


def read_stream(file: IO[bytes]) -> PickleReading:
    """Read every pickle stacked in a seekable binary ``file`` with stand-ins; never raises
    for what the stream holds (``PickleReading.error`` says where it stopped)."""
    reading = PickleReading()
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(0)
    first = True
    while file.tell() < size:
        start = file.tell()
        try:
            reading.roots.append(_StubUnpickler(file, reading, size).load())
        except RecursionError:
            problem = "nested too deeply to read"
        except Exception as exc:  # a malformed or hostile stream: say where it stopped
            problem = f"{type(exc).__name__}: {exc}"[:500]
        else:
            first = False
            continue
        if first:
            reading.error = f"stopped at byte {file.tell()} of {size}: {problem}"
        else:
            reading.trailing = f"{size - start} bytes after the pickle that are not one ({problem})"
        break
    return reading


# ----------------------------------------------------------------------------------------------
# picklescan


@contextlib.contextmanager
def _quiet_picklescan() -> Iterator[None]:
    """picklescan logs every finding as a warning: this module reports them itself."""
    logger = logging.getLogger("picklescan")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _scanner() -> Any:
    try:
        from picklescan import scanner
    except ImportError:  # pragma: no cover - a dependency of pytest-persist
        raise RuntimeError(
            "picklescan is not installed; pytest-persist needs it to tell dangerous globals: "
            "pip install picklescan"
        ) from None
    return scanner


def classify(globals_: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """picklescan's verdict on each (module, name): ``dangerous`` (its unsafe list: ``os``,
    ``subprocess``, ``builtins.eval``, cloudpickle's function builders...), ``innocuous`` (its
    safe list) or ``suspicious`` (neither: most classes of scikit-learn).

    Asked through picklescan's public ``scan_pickle_bytes`` on a stream that imports each of
    them once (STACK_GLOBAL of two strings), so the verdict is exactly the one picklescan
    gives when it finds them in a file.
    """
    pairs = list(dict.fromkeys(globals_))
    if not pairs:
        return {}

    def text(value: str) -> bytes:
        data = value.encode("utf-8", "surrogatepass")
        return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE

    stream = b"\x80\x04" + b"".join(text(m) + text(n) + b"\x930" for m, n in pairs) + b"."
    with _quiet_picklescan():
        result = _scanner().scan_pickle_bytes(io.BytesIO(stream), "inspect")
    verdicts = {(g.module, g.name): g.safety.value for g in result.globals}
    # a pair picklescan did not list (it should list all) is not known to be safe
    return {pair: verdicts.get(pair, SUSPICIOUS) for pair in pairs}


def picklescan_globals(file: IO[bytes]) -> tuple[list[tuple[str, str, str]], bool]:
    """What picklescan's own reading of the stream finds: (module, name, verdict) and whether
    it read the stream to its end (it stops at joblib's first raw array)."""
    file.seek(0)
    with _quiet_picklescan():
        result = _scanner().scan_pickle_bytes(file, "inspect", multiple_pickles=True)
    found = sorted((g.module, g.name, g.safety.value) for g in result.globals)
    return found, not result.scan_err
