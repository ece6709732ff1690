"""Fitted-state comparison: walk two objects and name every path where they differ.

Predictions on one X may not exercise what a load lost (a tree never reached, a class never
predicted), so the loaded object's state is compared with the original's, recursively over
``__dict__``, containers, arrays, sparse matrices, nested estimators and Cython state such as
``sklearn.tree._tree.Tree`` (through its ``__getstate__``). Paths read like attribute access:
``steps[1][1].tree_.values``.
"""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np

_MAX_DEPTH = 60


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
        state_a, state_b = _object_state(a), _object_state(b)
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


def _object_state(obj: Any) -> Any:
    """What an object is made of: its ``__dict__`` (and slots), else what pickle would save
    (``__reduce_ex__``: the constructor arguments and state of a Cython object), else None."""
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        state = dict(vars(obj))
        slots = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
        for slot in slots:
            if hasattr(obj, slot):
                state[slot] = getattr(obj, slot)
        return state
    getstate = getattr(type(obj), "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
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


def _type_name(value: Any) -> str:
    return type(value).__qualname__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
