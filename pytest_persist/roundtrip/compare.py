"""Prediction outputs: computing them on every method, and comparing them with readable diffs."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..results.outcome import Difference

#: Methods compared when the estimator has them, in this order; ``score`` needs ``y``.
PREDICTION_METHODS: tuple[str, ...] = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score_samples",
    "inverse_transform",
    "score",
    "fit_resample",
)


#: How to call an extra method or a function of the model: ``call(model, X) -> output``.
Calls = Mapping[str, Callable[[Any, Any], Any]]


def extra_calls(
    methods: Mapping[str, Mapping[str, Any]], functions: Mapping[str, Any]
) -> dict[str, Callable[[Any, Any], Any]]:
    """``{name: call(model, X)}`` for extra methods (``model.name(X, **keywords)``; a fixed
    method named with keywords is called with them) and for module-level functions of the
    model (``function(model, X, **keywords)``, e.g. hdbscan's ``approximate_predict``)."""
    calls: dict[str, Callable[[Any, Any], Any]] = {}
    for name, keywords in methods.items():
        calls[name] = _method_call(name, dict(keywords))
    for name, (function, keywords) in functions.items():
        calls[name] = _function_call(function, dict(keywords))
    return calls


def _method_call(name: str, keywords: dict[str, Any]) -> Callable[[Any, Any], Any]:
    def call(model: Any, X: Any) -> Any:
        return getattr(model, name)(X, **keywords)

    return call


def _function_call(function: Callable[..., Any], keywords: dict[str, Any]) -> Callable[..., Any]:
    def call(model: Any, X: Any) -> Any:
        return function(model, X, **keywords)

    call.is_function = True  # type: ignore[attr-defined]
    return call


def is_function_call(call: Any) -> bool:
    """Whether an extra call is a module-level function of the model (not one of its methods)."""
    return bool(getattr(call, "is_function", False))


def available_methods(estimator: Any, *, with_y: bool) -> list[str]:
    """The prediction methods ``estimator`` offers (``available_if`` makes ``hasattr`` exact).

    ``fit_resample`` counts only for a sampler that has no other method (imbalanced-learn's
    SMOTE...), and only with ``y``: it refits a copy, so what it checks is that the loaded
    parameters and random state resample the same way.
    """
    methods = []
    for name in PREDICTION_METHODS:
        if name == "score" and not with_y:
            continue
        if name == "inverse_transform" and not hasattr(estimator, "transform"):
            continue
        try:
            present = callable(getattr(estimator, name, None))
        except Exception:  # a property that raises counts as absent
            present = False
        if present:
            methods.append(name)
    if methods == ["fit_resample"] and not with_y:
        methods = []
    return methods if methods == ["fit_resample"] else [m for m in methods if m != "fit_resample"]


def _fresh(X: Any) -> Any:
    """A copy of X, so that no method ever sees the very object passed to ``fit``.

    LabelPropagation keeps ``X_ is X`` and pairwise distances take another code path for
    identical objects, which shows up as 1e-16 differences that are not persistence bugs.
    """
    if isinstance(X, np.ndarray) or hasattr(X, "copy"):
        try:
            return X.copy()
        except Exception:
            pass
    return copy.deepcopy(X)


def call_method(
    estimator: Any,
    method: str,
    X: Any,
    y: Any = None,
    transformed: Any = None,
    calls: Calls | None = None,
) -> Any:
    """Call one prediction method the way the comparison does (on a fresh copy of the input)."""
    if method in ("score", "fit_resample"):
        return _call(estimator, method, _fresh(X), _fresh(y), transformed, calls)
    return _call(estimator, method, _fresh(X), None, transformed, calls)


def _call(
    estimator: Any,
    method: str,
    X: Any,
    y: Any = None,
    transformed: Any = None,
    calls: Calls | None = None,
) -> Any:
    """Call ``method`` on exactly ``X`` (already a copy); ``transformed`` is always copied,
    as it is the original's own ``transform`` output, which ``copy=False`` would overwrite.
    ``calls`` say how to call extra methods and functions (and fixed ones with keywords)."""
    if calls and method in calls:
        return calls[method](estimator, X)
    if method == "score":
        return estimator.score(X, y)
    if method == "inverse_transform":
        return estimator.inverse_transform(_fresh(transformed))
    if method == "fit_resample":  # on a copy: resampling refits, and must not touch the model
        X_res, y_res = copy.deepcopy(estimator).fit_resample(X, y)
        return [X_res, y_res]
    return getattr(estimator, method)(X)


def compute_outputs(
    estimator: Any,
    X: Any,
    y: Any = None,
    methods: Iterable[str] | None = None,
    *,
    transformed: Any = None,
    calls: Calls | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run each method on its own copy of X; return (outputs by method, reason by failing method).

    ``inverse_transform`` is fed ``transformed`` when given (so a loaded model inverts exactly
    what the original produced), else this estimator's own ``transform`` output.
    """
    if methods is None:
        methods = available_methods(estimator, with_y=y is not None)
    outputs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with np.errstate(all="ignore"):  # log(0) in predict_log_proba is the estimator's business
        for method in methods:
            _compute_one(
                estimator, method, X, y, transformed, outputs, errors, copy_input=True, calls=calls
            )
    return outputs, errors


def compute_outputs_once(
    estimator: Any,
    X: Any,
    y: Any = None,
    methods: Iterable[str] | None = None,
    *,
    transformed: Any = None,
    calls: Calls | None = None,
) -> tuple[dict[str, Any], dict[str, str], bool]:
    """Like ``compute_outputs``, with one copy of X (and of y) shared by all the methods.

    The third value says whether the shared copy may have been changed by a method (in place,
    e.g. ``Normalizer(copy=False).transform``): then the outputs of the methods that ran after
    it saw other input, and they are computed again, each on its own copy, as
    ``compute_outputs`` does. Inputs this cannot check (not an ndarray, sparse matrix,
    DataFrame or list) get one copy per call from the start, and count as changed.
    """
    if methods is None:
        methods = available_methods(estimator, with_y=y is not None)
    methods = list(methods)
    if not _checkable(X) or not (y is None or _checkable(y)):
        again = compute_outputs(estimator, X, y, methods, transformed=transformed, calls=calls)
        return (*again, True)
    X_copy, y_copy = _fresh(X), None if y is None else _fresh(y)
    outputs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with np.errstate(all="ignore"):
        for method in methods:
            _compute_one(
                estimator, method, X_copy, y_copy, transformed, outputs, errors, calls=calls
            )
    if _unchanged(X, X_copy) and (y is None or _unchanged(y, y_copy)):
        return outputs, errors, False
    again = compute_outputs(estimator, X, y, methods, transformed=transformed, calls=calls)
    return (*again, True)


def _checkable(value: Any) -> bool:
    return isinstance(value, (np.ndarray, list, tuple)) or _is_sparse(value) or _is_frame(value)


def _unchanged(before: Any, after: Any) -> bool:
    """``after`` (a copy of ``before`` that methods ran on) certainly still equals it."""
    try:
        if isinstance(before, np.ndarray):
            if before.shape != after.shape or before.dtype != after.dtype:
                return False
            return bool(np.array_equal(before, after, equal_nan=before.dtype.kind in "fc"))
        if _is_sparse(before):
            same_kind = type(before) is type(after) and before.shape == after.shape
            return bool(same_kind and before.dtype == after.dtype and (before != after).nnz == 0)
        if _is_frame(before):
            return bool(before.equals(after))
        return bool(before == after)
    except Exception:  # cannot tell: count it as changed, the safe side
        return False


def _compute_one(
    estimator: Any,
    method: str,
    X: Any,
    y: Any,
    transformed: Any,
    outputs: dict[str, Any],
    errors: dict[str, str],
    *,
    copy_input: bool = False,
    calls: Calls | None = None,
) -> None:
    """Call ``method`` and put its output in ``outputs`` or its failure in ``errors``."""
    source = None
    if method == "inverse_transform" and not (calls and method in calls):
        source = transformed if transformed is not None else outputs.get("transform")
        if source is None:
            errors[method] = "needs the output of transform, which is not available"
            return
    try:
        if copy_input:
            outputs[method] = call_method(estimator, method, X, y, source, calls)
        else:
            outputs[method] = _call(estimator, method, X, y, source, calls)
    except Exception as exc:
        errors[method] = f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else repr(exc)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def equals_input(X: Any, output: Any) -> bool:
    """Whether ``output`` holds exactly the values of ``X`` (same shape; dtype and container
    aside): a transform that did nothing, e.g. an encoder that found no column to encode."""
    if output is X:
        return True
    try:
        want, got = _dense(_values(X)), _dense(_values(output))
        if _is_sparse(want) or _is_sparse(got):
            return False
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape or want.size == 0 or want.dtype.kind not in "biufcOUS":
            return False
        if want.dtype.kind in "fc" and got.dtype.kind in "biufc":
            return bool(np.array_equal(want, got.astype(want.dtype), equal_nan=True))
        return bool(_label_equal(want, got).all())
    except Exception:  # values that cannot be compared are not the input
        return False


# ----------------------------------------------------------------------------------------------
# comparison


def compare_outputs(
    expected: dict[str, Any],
    actual: dict[str, Any],
    *,
    rtol: float,
    atol: float,
    exact: bool = False,
    check_dtype: bool = True,
    max_label_flips: float = 0.0,
) -> list[Difference]:
    """Differences between two sets of method outputs; an empty list means they agree.

    Labels and integers compare exactly, floats with ``rtol``/``atol`` (bitwise when
    ``exact``), NaN equals NaN, sparse as sparse. For label outputs, a fraction of flipped
    labels up to ``max_label_flips`` is reported but tolerated (ONNX float32 thresholds).
    """
    differences: list[Difference] = []
    kept_rows = None
    for method, want in expected.items():
        if method not in actual:
            continue
        got = actual[method]
        note = ""
        if kept_rows is not None and method != "score":
            want, got = _rows(want, kept_rows), _rows(got, kept_rows)
            note = f" (on the {int(kept_rows.sum())} rows whose label did not flip)"
        comparer = _Comparer(method, rtol, atol, exact, check_dtype, max_label_flips)
        comparer.compare(want, got, "")
        for difference in comparer.differences:
            difference.message += note
        differences.extend(comparer.differences)
        if method == "predict" and any(d.tolerated for d in comparer.differences):
            kept_rows = _unflipped_rows(expected[method], actual[method])
    return differences


def _unflipped_rows(want: Any, got: Any) -> np.ndarray | None:
    """Rows whose predicted label(s) agree, once flips were tolerated."""
    want_array, got_array = np.asarray(want), np.asarray(got).reshape(np.shape(want))
    same = _label_equal(want_array, got_array)
    return same.reshape(len(same), -1).all(axis=1) if same.ndim else None


def _rows(value: Any, keep: np.ndarray) -> Any:
    """``value`` restricted to the rows in ``keep`` when it has one row per sample."""
    if isinstance(value, (list, tuple)) and not _is_flat_labels(value):
        return [_rows(v, keep) for v in value]
    if _is_frame(value) and len(value) == len(keep):
        return value[keep]
    if (_is_sparse(value) or isinstance(value, np.ndarray)) and value.shape[0] == len(keep):
        return value[np.flatnonzero(keep)]
    return value


class _Comparer:
    def __init__(
        self,
        method: str,
        rtol: float,
        atol: float,
        exact: bool,
        check_dtype: bool,
        max_label_flips: float,
    ) -> None:
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.exact = exact
        self.check_dtype = check_dtype
        self.max_label_flips = max_label_flips
        self.differences: list[Difference] = []

    def fail(self, path: str, message: str, **figures: Any) -> None:
        self.differences.append(Difference(self.method, message, path, **figures))

    def compare(self, want: Any, got: Any, path: str) -> None:
        if _is_sparse(want) or _is_sparse(got):
            self._sparse(want, got, path)
        elif _is_frame(want) or _is_frame(got):
            self._frame(want, got, path)
        elif isinstance(want, (list, tuple)) and not _is_flat_labels(want):
            self._sequence(want, got, path)
        else:
            self._array(want, got, path)

    def _sequence(self, want: Sequence[Any], got: Any, path: str) -> None:
        if not self.check_dtype and isinstance(got, np.ndarray) and got.ndim >= 1:
            got = list(got)  # ONNX stacks multi-output probabilities into one array
        if not isinstance(got, (list, tuple)):
            self.fail(path, f"expected a {type(want).__name__}, got {_kind(got)}")
            return
        if len(want) != len(got):
            self.fail(path, f"expected {len(want)} outputs, got {len(got)}")
            return
        for index, (w, g) in enumerate(zip(want, got, strict=True)):
            self.compare(w, g, f"{path}[{index}]")

    def _frame(self, want: Any, got: Any, path: str) -> None:
        if not (_is_frame(want) and _is_frame(got)):
            if self.check_dtype:
                self.fail(path, f"expected {_kind(want)}, got {_kind(got)}")
                return
            self._array(_values(want), _values(got), path)
            return
        if type(want).__name__ != type(got).__name__:
            self.fail(path, f"expected {_kind(want)}, got {_kind(got)}")
            return
        want_columns = list(getattr(want, "columns", [getattr(want, "name", None)]))
        got_columns = list(getattr(got, "columns", [getattr(got, "name", None)]))
        if want_columns != got_columns:
            self.fail(path, f"columns differ: expected {want_columns[:10]}, got {got_columns[:10]}")
            return
        if list(want.index) != list(got.index):
            self.fail(path, "index differs")
            return
        if getattr(want, "ndim", 1) == 1:
            self._array(want.to_numpy(), got.to_numpy(), path)
            return
        for column_index, column in enumerate(want_columns):
            self._array(
                want.iloc[:, column_index].to_numpy(),
                got.iloc[:, column_index].to_numpy(),
                f"{path}[{column!r}]",
            )

    def _sparse(self, want: Any, got: Any, path: str) -> None:
        if not self.check_dtype and not (_is_sparse(want) and _is_sparse(got)):
            # a converted model (ONNX) computes dense outputs: compare values, not containers
            self._array(_dense(want), _dense(got), path)
            return
        if not (_is_sparse(want) and _is_sparse(got)):
            self.fail(path, f"expected {_kind(want)}, got {_kind(got)}")
            return
        if want.shape != got.shape:
            self.fail(path, f"shape differs: expected {want.shape}, got {got.shape}")
            return
        if self.check_dtype and want.dtype != got.dtype:
            self.fail(path, f"dtype differs: expected {want.dtype}, got {got.dtype}")
            return
        # Compare the values at every position either side stores; all others are zero on both.
        want_csr, got_csr = want.tocsr(), got.tocsr()
        stored = ((want_csr != 0) + (got_csr != 0)).tocoo()
        rows, cols = stored.row, stored.col
        if not rows.size:
            return
        want_values = np.asarray(want_csr[rows, cols]).ravel()
        got_values = np.asarray(got_csr[rows, cols]).ravel()
        total = int(np.prod(want.shape))
        if want_values.dtype.kind in "fc" or got_values.dtype.kind in "fc":
            self._floats(want_values, got_values, path, total, positions=(rows, cols))
        else:
            self._labels(want_values, got_values, path, total)

    def _array(self, want: Any, got: Any, path: str) -> None:
        want_array, got_array = _as_array(want), _as_array(got)
        if want_array.shape != got_array.shape:
            squeezable = want_array.size == got_array.size and not self.check_dtype
            if not squeezable:
                self.fail(
                    path, f"shape differs: expected {want_array.shape}, got {got_array.shape}"
                )
                return
            got_array = got_array.reshape(want_array.shape)
        numeric_want = want_array.dtype.kind in "fc"
        numeric_got = got_array.dtype.kind in "fc"
        if self.check_dtype and want_array.dtype != got_array.dtype:
            self.fail(path, f"dtype differs: expected {want_array.dtype}, got {got_array.dtype}")
            return
        if (
            want_array.dtype == got_array.dtype
            and want_array.dtype.kind in "biufc"
            and np.array_equal(want_array, got_array)
        ):
            return  # bitwise equal, the common case in one environment: nothing to measure
        total = int(want_array.size)
        if numeric_want or numeric_got:
            self._floats(want_array, got_array, path, total)
        else:
            self._labels(want_array, got_array, path, total)

    def _floats(
        self,
        want: np.ndarray,
        got: np.ndarray,
        path: str,
        total: int,
        positions: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        try:
            wide = np.complex128 if want.dtype.kind == "c" else np.float64
            want_f = want.astype(wide, copy=False)
            got_f = got.astype(want_f.dtype, copy=False)
        except (TypeError, ValueError):
            self.fail(path, f"cannot compare {want.dtype} with {got.dtype}")
            return
        both_nan = np.isnan(want_f) & np.isnan(got_f)
        if self.exact:
            same = (want_f == got_f) | both_nan
        else:
            with np.errstate(invalid="ignore"):
                same = np.isclose(got_f, want_f, rtol=self.rtol, atol=self.atol, equal_nan=True)
        n_different = int(np.count_nonzero(~same))
        if not n_different:
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.abs(want_f - got_f)
            delta = np.where(both_nan, 0.0, delta)
            relative = delta / np.abs(want_f)
        finite = np.isfinite(delta)
        max_abs = float(np.max(delta[finite])) if finite.any() else float("nan")
        finite_rel = np.isfinite(relative) & (np.abs(want_f) > 0)
        max_rel = float(np.max(relative[finite_rel])) if finite_rel.any() else None
        rule = "bitwise" if self.exact else f"rtol={self.rtol:g}, atol={self.atol:g}"
        first = _first_index(~same)
        where = first if positions is None else (int(positions[0][first]), int(positions[1][first]))
        message = (
            f"values differ beyond {rule}; first at index {where}: "
            f"expected {_plain(want_f[first])!r}, got {_plain(got_f[first])!r}"
        )
        self.fail(
            path,
            message,
            max_abs=max_abs,
            max_rel=max_rel,
            n_different=n_different,
            n_total=total,
        )

    def _labels(self, want: np.ndarray, got: np.ndarray, path: str, total: int) -> None:
        same = _label_equal(want, got)
        n_different = int(np.count_nonzero(~same))
        if not n_different:
            return
        fraction = n_different / total if total else 0.0
        first = _first_index(~same)
        tolerated = fraction <= self.max_label_flips
        note = f" (within the allowed {self.max_label_flips:.2%} of flips)" if tolerated else ""
        self.fail(
            path,
            f"{fraction:.2%} of labels differ{note}; first at index {first}: "
            f"expected {_plain(want[first])!r}, got {_plain(got[first])!r}",
            n_different=n_different,
            n_total=total,
            tolerated=tolerated,
        )


def _label_equal(want: np.ndarray, got: np.ndarray) -> np.ndarray:
    if want.dtype.kind == "O" or got.dtype.kind == "O":
        pairs = zip(want.ravel().tolist(), got.ravel().tolist(), strict=True)
        flat = [_same_object(w, g) for w, g in pairs]
        return np.array(flat, dtype=bool).reshape(want.shape)
    try:
        return np.asarray(want == got, dtype=bool).reshape(want.shape)
    except (TypeError, ValueError):
        return np.zeros(want.shape, dtype=bool)


def _same_object(want: Any, got: Any) -> bool:
    if isinstance(want, float) and isinstance(got, float) and np.isnan(want) and np.isnan(got):
        return True
    try:
        return bool(want == got)
    except Exception:
        return False


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds: ``0.25``, not ``np.float64(0.25)``."""
    return value.item() if isinstance(value, np.generic) else value


def _first_index(mask: np.ndarray) -> tuple[int, ...] | int:
    index = np.argwhere(mask)[0]
    return int(index[0]) if index.size == 1 else tuple(int(i) for i in index)


def _is_flat_labels(values: Sequence[Any]) -> bool:
    """A plain list of scalars (labels, documents) rather than a list of outputs."""
    return all(np.isscalar(v) or v is None for v in values)


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return np.asarray(value)  # drop memmap and other subclasses
    return np.asarray(value)


def _dense(value: Any) -> Any:
    return value.toarray() if _is_sparse(value) else value


def _values(value: Any) -> Any:
    return value.to_numpy() if _is_frame(value) else value


def _is_sparse(value: Any) -> bool:
    # A sparse matrix exists only once scipy.sparse is imported: a parent that compares
    # stored outputs need not import scipy (0.2 s) to learn that its arrays are dense.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)


def _is_frame(value: Any) -> bool:
    library = type(value).__module__.partition(".")[0]
    return library in ("pandas", "polars") and hasattr(value, "to_numpy")


def _kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray{value.shape} {value.dtype}"
    return type(value).__name__
