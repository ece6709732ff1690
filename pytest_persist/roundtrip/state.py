"""Fitted-state comparison: walk two objects and name every path where they differ.

Predictions on one X may not exercise what a load lost (a tree never reached, a class never
predicted), so the loaded object's state is compared with the original's, recursively over
``__dict__``, containers, arrays, sparse matrices, nested estimators and Cython state such as
``sklearn.tree._tree.Tree`` (through its ``__getstate__``). Paths read like attribute access:
``steps[1][1].tree_.values``. Objects compare by what they mean, not by their caches: pandas
dtypes, Index, Series and frames by value, and memo attributes (``_cache``, where pandas keeps
``cache_readonly`` results) are left out.

``state_fingerprint`` digests the same walk, so that a change of the original itself (a
``__getstate__`` that alters the model while it is dumped) can be told from a method that
answers differently on two calls.
"""

from __future__ import annotations

import hashlib
import math
import types
import zlib
from typing import Any

import numpy as np

_MAX_DEPTH = 60
#: Attributes that memoise what the rest of an object says (pandas' ``cache_readonly``
#: results live in ``_cache``): filled or not depending on what ran before, never state.
MEMO_ATTRIBUTES = frozenset({"_cache"})


def compare_state(original: Any, loaded: Any, *, limit: int = 50) -> list[str]:
    """Every path (up to ``limit``) where ``loaded`` differs from ``original``, described."""
    walker = _StateWalker(limit)
    walker.walk(original, loaded, "", 0)
    return walker.differences


class _StateWalker:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.differences: list[str] = []
        self.seen: set[tuple[int, int]] = set()

    def report(self, path: str, message: str) -> None:
        if len(self.differences) < self.limit:
            self.differences.append(f"{path.lstrip('.') or '<root>'}: {message}")

    def walk(self, a: Any, b: Any, path: str, depth: int) -> None:
        if a is b or len(self.differences) >= self.limit:
            return
        if depth > _MAX_DEPTH:
            return
        key = (id(a), id(b))
        if key in self.seen:
            return
        self.seen.add(key)

        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            self._arrays(a, b, path)
            return
        if _is_sparse(a) or _is_sparse(b):
            self._sparse(a, b, path)
            return
        if type(a) is not type(b):
            self.report(path, f"type {_type_name(a)} became {_type_name(b)}")
            return
        if isinstance(a, float):
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                self.report(path, f"{a!r} became {b!r}")
            return
        if isinstance(a, (str, bytes, int, bool, complex, type(None), np.generic)):
            if not _scalar_equal(a, b):
                self.report(path, f"{a!r} became {b!r}")
            return
        if isinstance(a, dict):
            self._mapping(a, b, path, depth, item_style=True)
            return
        if isinstance(a, (list, tuple)):
            if len(a) != len(b):
                self.report(path, f"length {len(a)} became {len(b)}")
                return
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                self.walk(x, y, f"{path}[{index}]", depth + 1)
            return
        if isinstance(a, (set, frozenset)):
            if a != b:
                self.report(path, f"{sorted(map(repr, a))} became {sorted(map(repr, b))}")
            return
        if isinstance(a, (types.FunctionType, types.BuiltinFunctionType, type, types.MethodType)):
            if _callable_identity(a) != _callable_identity(b):
                self.report(path, f"{_callable_identity(a)} became {_callable_identity(b)}")
            return
        if _is_pandas_dtype(a):
            if _dtype_meaning(a) != _dtype_meaning(b):
                self.report(path, f"{a!r} became {b!r}")
            return
        if _is_pandas(a):
            if not a.equals(b):
                self.report(path, "pandas values differ")
            return
        if isinstance(a, np.random.RandomState):
            self.walk(a.get_state(legacy=False), b.get_state(legacy=False), path, depth + 1)
            return
        if isinstance(a, np.random.Generator):
            self.walk(a.bit_generator.state, b.bit_generator.state, path, depth + 1)
            return
        self._object(a, b, path, depth)

    def _object(self, a: Any, b: Any, path: str, depth: int) -> None:
        helper = depth > 0  # never the root's own __getstate__: it is what a dump runs
        state_a, state_b = _object_state(a, saved=helper), _object_state(b, saved=helper)
        if state_a is None or state_b is None:
            try:
                equal = bool(a == b)
            except Exception:
                equal = repr(a) == repr(b)
            if not equal:
                self.report(path, f"{_type_name(a)} differs ({_short(a)} became {_short(b)})")
            return
        if isinstance(state_a, dict) and isinstance(state_b, dict):
            self._mapping(state_a, state_b, path, depth, item_style=False)
        else:
            self.walk(state_a, state_b, path, depth + 1)

    def _mapping(self, a: dict, b: dict, path: str, depth: int, *, item_style: bool) -> None:
        def where(key: Any) -> str:
            if item_style or not isinstance(key, str):
                return f"{path}[{key!r}]"
            return f"{path}.{key}"

        for key in a:
            if key not in b:
                self.report(where(key), "missing after loading")
        for key in b:
            if key not in a:
                self.report(where(key), "appeared after loading")
        for key in a:
            if key in b:
                self.walk(a[key], b[key], where(key), depth + 1)

    def _arrays(self, a: Any, b: Any, path: str) -> None:
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            self.report(path, f"type {_type_name(a)} became {_type_name(b)}")
            return
        if a.shape != b.shape:
            self.report(path, f"shape {a.shape} became {b.shape}")
            return
        if a.dtype != b.dtype:
            self.report(path, f"dtype {a.dtype} became {b.dtype}")
            return
        if a.dtype.kind == "O":
            pairs = zip(a.ravel().tolist(), b.ravel().tolist(), strict=True)
            for index, (x, y) in enumerate(pairs):
                before = len(self.differences)
                self.walk(x, y, f"{path}[{index}]", 0)
                if len(self.differences) > before:
                    return
            return
        if a.dtype.names:  # structured (Tree.nodes): field by field, padding bytes are noise
            differing = [f for f in a.dtype.names if not _arrays_equal(a[f], b[f])]
            if differing:
                self.report(path, f"field(s) {', '.join(differing)} differ")
            return
        if not _arrays_equal(a, b):
            self.report(path, _array_change(a, b))

    def _sparse(self, a: Any, b: Any, path: str) -> None:
        if not (_is_sparse(a) and _is_sparse(b)):
            self.report(path, f"type {_type_name(a)} became {_type_name(b)}")
            return
        if a.shape != b.shape or a.dtype != b.dtype or a.format != b.format:
            self.report(
                path, f"{a.format} {a.shape} {a.dtype} became {b.format} {b.shape} {b.dtype}"
            )
            return
        if (a != b).nnz:
            self.report(path, f"{(a != b).nnz} stored values differ")


def _own_getstate(obj: Any) -> bool:
    getstate = getattr(type(obj), "__getstate__", None)
    return getstate is not None and getstate is not getattr(object, "__getstate__", None)


def _object_state(obj: Any, *, saved: bool = False) -> Any:
    """What an object is made of: its ``__dict__`` (and slots) less memo attributes, else what
    pickle would save (``__reduce_ex__``: the constructor arguments and state of a Cython
    object), else None.

    ``saved``: for a helper object that is not an estimator (no ``get_params``) and whose
    class says what it saves (its own ``__getstate__``, e.g. ``joblib.Memory`` drops its
    ``timestamp``), what it saves. An estimator's own ``__getstate__`` is never called here:
    it may change the estimator (that is what ``state_fingerprint`` catches).
    """
    if saved and hasattr(obj, "__dict__") and not hasattr(obj, "get_params") and _own_getstate(obj):
        try:
            state = obj.__getstate__()
        except Exception:
            state = None
        if isinstance(state, dict):
            return {k: v for k, v in state.items() if k not in MEMO_ATTRIBUTES}
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        state = {k: v for k, v in vars(obj).items() if k not in MEMO_ATTRIBUTES}
        slots = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
        for slot in slots:
            if slot not in MEMO_ATTRIBUTES and hasattr(obj, slot):
                state[slot] = getattr(obj, slot)
        return state
    if _own_getstate(obj):
        try:
            state = obj.__getstate__()
        except Exception:
            state = None
        if state:
            return state
    try:
        reduced = obj.__reduce_ex__(5)
    except Exception:
        return None
    if isinstance(reduced, tuple) and len(reduced) >= 2:
        return {"constructor": reduced[0], "args": reduced[1], "state": reduced[2:3]}
    return None


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _array_change(a: np.ndarray, b: np.ndarray) -> str:
    if a.dtype.kind in "fciub" and a.dtype.names is None:
        with np.errstate(invalid="ignore"):
            same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind in "fc" else a == b
        different = ~same
        count = int(np.count_nonzero(different))
        if a.dtype.kind in "fc":
            with np.errstate(invalid="ignore"):
                delta = np.abs(a.astype(np.complex128) - b.astype(np.complex128))
            finite = delta[np.isfinite(delta)]
            largest = f", max abs diff {float(finite.max()):.3g}" if finite.size else ""
        else:
            largest = ""
        return f"{count} of {a.size} values differ{largest}"
    return "values differ"


def _scalar_equal(a: Any, b: Any) -> bool:
    try:
        result = a == b
        if isinstance(result, np.ndarray):
            return bool(result.all())
        if not result and isinstance(a, (np.floating, np.complexfloating)):
            return bool(np.isnan(a) and np.isnan(b))
        return bool(result)
    except Exception:
        return repr(a) == repr(b)


def _callable_identity(func: Any) -> str:
    module = getattr(func, "__module__", None) or ""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return f"{module}.{name}" if module else name


def _is_sparse(value: Any) -> bool:
    import scipy.sparse as sp

    return sp.issparse(value)


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.partition(".")[0] == "pandas" and hasattr(value, "equals")


def _is_pandas_dtype(value: Any) -> bool:
    """A pandas extension dtype (StringDtype, CategoricalDtype...), which memoises in
    ``_cache``."""
    module = type(value).__module__.partition(".")[0]
    return module == "pandas" and type(value).__name__.endswith("Dtype")


def _dtype_meaning(dtype: Any) -> tuple[Any, ...]:
    """What a pandas dtype says: its name, and a categorical's categories and order."""
    categories = getattr(dtype, "categories", None)
    values = None if categories is None else tuple(categories.tolist())
    return (type(dtype).__name__, str(dtype), values, getattr(dtype, "ordered", None))


def _pandas_meaning(value: Any) -> Any:
    """A pandas Index, Series or frame as plain values: type, dtypes, index and values."""
    kind = type(value).__name__
    if hasattr(value, "columns"):  # a frame
        return {
            "type": kind,
            "columns": _pandas_meaning(value.columns),
            "index": _pandas_meaning(value.index),
            "dtypes": [str(dtype) for dtype in value.dtypes],
            "values": [value.iloc[:, i].to_numpy() for i in range(value.shape[1])],
        }
    meaning = {"type": kind, "dtype": str(value.dtype), "values": value.to_numpy()}
    if hasattr(value, "index"):  # a Series
        meaning.update(name=repr(value.name), index=_pandas_meaning(value.index))
    else:  # an Index
        meaning["name"] = repr(getattr(value, "name", None))
    return meaning


def state_fingerprint(obj: Any) -> dict[str, str]:
    """A digest of every leaf of ``obj``'s fitted state, by path (the walk of
    ``compare_state``, without a second object); two fingerprints differ exactly at the
    paths whose values changed. Reads ``__dict__`` and arrays, never calls the object's own
    ``__getstate__`` unless it has no ``__dict__`` (Cython objects such as ``Tree``)."""
    return _Fingerprint().of(obj)


def changed_paths(before: dict[str, str], after: dict[str, str], limit: int = 10) -> list[str]:
    """The paths (up to ``limit``) where two fingerprints differ, each with how."""
    changed = []
    for path in dict.fromkeys([*before, *after]):
        if before.get(path) == after.get(path):
            continue
        how = (
            "appeared" if path not in before else "disappeared" if path not in after else "changed"
        )
        changed.append(f"{path.lstrip('.') or '<root>'} {how}")
        if len(changed) >= limit:
            break
    return changed


class _Fingerprint:
    def __init__(self) -> None:
        self.prints: dict[str, str] = {}
        self.seen: dict[int, str] = {}
        self.keep: list[Any] = []  # transient states stay alive, so their ids are not reused

    def of(self, obj: Any) -> dict[str, str]:
        self.walk(obj, "", 0)
        return self.prints

    def leaf(self, path: str, *parts: Any) -> None:
        """Record the digest of ``parts`` at ``path``: their reprs, and a CRC-32 (4 GB/s, 5x
        blake2b: this is change detection, not security) of any buffer among them."""
        text = "\x00".join(
            f"crc32:{zlib.crc32(part)}" if isinstance(part, (bytes, memoryview)) else repr(part)
            for part in parts
        )
        self.prints[path or "<root>"] = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

    def walk(self, value: Any, path: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(value, (str, bytes, int, float, complex, bool, type(None), np.generic)):
            self.leaf(path, type(value).__name__, value)
            return
        if id(value) in self.seen:
            self.leaf(path, "same object as", self.seen[id(value)])
            return
        self.seen[id(value)] = path
        if isinstance(value, np.ndarray):
            self._array(value, path)
        elif _is_sparse(value):
            matrix = value if value.format in ("csr", "csc") else value.tocsr()
            self.leaf(path, value.format, value.shape, value.dtype.str)
            for name in ("data", "indices", "indptr"):
                self._array(getattr(matrix, name), f"{path}.{name}")
        elif isinstance(value, dict):
            self.leaf(path, "dict", [repr(k) for k in value])
            for key, item in value.items():
                self.walk(item, f"{path}[{key!r}]", depth + 1)
        elif isinstance(value, (list, tuple)):
            self.leaf(path, type(value).__name__, len(value))
            for index, item in enumerate(value):
                self.walk(item, f"{path}[{index}]", depth + 1)
        elif isinstance(value, (set, frozenset)):
            self.leaf(path, type(value).__name__, sorted(map(repr, value)))
        elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
            self.leaf(path, "callable", _callable_identity(value))
        elif isinstance(value, types.MethodType):
            self.leaf(path, "method", _callable_identity(value))
            self.walk(value.__self__, f"{path}.__self__", depth + 1)
        elif _is_pandas_dtype(value):
            self.leaf(path, "dtype", _dtype_meaning(value))
        elif _is_pandas(value):
            meaning = _pandas_meaning(value)
            self.keep.append(meaning)
            self.walk(meaning, path, depth + 1)
        elif isinstance(value, np.random.RandomState):
            self.walk(value.get_state(legacy=False), path, depth + 1)
        elif isinstance(value, np.random.Generator):
            self.walk(value.bit_generator.state, path, depth + 1)
        else:
            state = _object_state(value)
            self.keep.append(state)
            self.leaf(path, "object", _type_name(value))
            if state is None:
                self.leaf(f"{path}<repr>", _short(value, 200))
            elif isinstance(state, dict):
                for key, item in state.items():
                    where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key!r}]"
                    self.walk(item, where, depth + 1)
            else:
                self.walk(state, f"{path}<state>", depth + 1)

    def _array(self, array: np.ndarray, path: str) -> None:
        if array.dtype.kind == "O":
            self.leaf(path, "object array", array.shape)
            for index, item in enumerate(array.ravel().tolist()):
                self.walk(item, f"{path}[{index}]", _MAX_DEPTH - 2)
            return
        # A structured array (Tree.nodes) is digested whole, padding included: a fingerprint
        # compares an object with itself at two times, never with a loaded copy.
        data = np.ascontiguousarray(array)
        self.leaf(path, data.dtype.str, data.shape, memoryview(data.view(np.uint8).reshape(-1)))


def _type_name(value: Any) -> str:
    return type(value).__qualname__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
