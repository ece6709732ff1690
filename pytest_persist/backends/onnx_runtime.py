"""ONNX: convert with skl2onnx, run with onnxruntime on CPU, answer like an estimator.

Tolerances: ONNX computes in float32 (inputs are cast to float32 unless
``options["onnx_dtype"] == "float64"``), about 7 significant digits. skl2onnx's own test harness
compares at 5 decimals, hence ``default_atol = 1e-5`` for probabilities and scores in [0, 1].
Regressors and unscaled transformers produce values of magnitude 10-1000 (diabetes targets reach
346), where float32 rounding accumulated over a model's sums reaches a few 1e-5 relative; hence
``default_rtol = 1e-4``, which still catches any percent-level disagreement.

Inputs (``call.X``):

- a 2-D numeric array (or anything ``np.asarray`` turns into one): one input ``X``, cast to
  float32 (or float64);
- text: a list or 1-D array of strings: one string input ``X`` of shape ``[None, 1]``
  (CountVectorizer, TfidfVectorizer); a 2-D array of strings: one string input;
- a pandas DataFrame whose columns are all numeric, for an estimator with no
  ColumnTransformer: converted to one float input ``X`` (column names are not needed);
- any other DataFrame (string columns, or a ColumnTransformer selecting columns by name): one
  input per column, named after the column, float for numeric and string for other columns,
  as skl2onnx expects. The loaded model then needs a DataFrame with those columns.

Everything the loaded ``OnnxModel`` needs (input layout, which output answers which method,
label dtype) is stored in the ONNX file's ``metadata_props`` under ``METADATA_KEY``, so an
artifact loads in another process from the file alone.

Details written to ``call.details``: ``onnx_retries`` (list of str, fixes that were needed),
``onnx_options`` (converter options used, JSON form), ``onnx_target_opset`` (None, int or
dict), ``onnx_inputs`` (list of ``{"name", "dtype"[, "column"]}``), ``onnx_outputs`` (graph
output names) and ``onnx_methods`` (method -> graph output); ``onnx_converters`` (class name ->
the onnxmltools converter registered for it) when one was needed; when conversion fails,
``onnx_conversion`` (``no_converter``, ``converter_declined`` or ``converter_failed``, see
``onnx_converters``) and, for a failed converter, ``onnx_conversion_error``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..estimators.nested import nested_estimators
from .base import Backend, BackendCall, UnsupportedEstimator
from .onnx_converters import (
    CONVERTER_FAILED,
    NO_CONVERTER,
    classify_conversion_error,
    converter_versions,
    register_third_party_converters,
)

METADATA_KEY = "pytest_persist.onnx_adapter"
ADAPTER_FORMAT = 1

#: Methods the adapter can answer, in the order they are reported.
#: ``predict_log_proba`` is deliberately absent: the graph does not compute it, and the log of
#: float32 probabilities turns 1e-48 into -inf, a difference ONNX never claimed to avoid.
ONNX_METHODS = (
    "predict",
    "predict_proba",
    "decision_function",
    "transform",
)

# Which estimator method a named graph output answers, by preference: the first method the
# estimator has wins. skl2onnx names outputs "label" + "probabilities" for classifiers (the
# "probabilities" of LinearSVC / SVC without probability=True are decision_function scores),
# "label" + "scores" for clusterers (KMeans: scores = transform distances) and outlier detectors
# (IsolationForest, LocalOutlierFactor, OneClassSVM: scores = decision_function), "variable"
# for regressors and transformers.
OUTPUT_CANDIDATES: dict[str, tuple[str, ...]] = {
    "label": ("predict",),
    "output_label": ("predict",),
    "probabilities": ("predict_proba", "decision_function"),
    "scores": ("decision_function", "transform"),
}

_ZIPMAP_REFUSED = ("Option 'zipmap' not in", "are not registerd for model")
_ML_OPSET_3_NEEDED = "target_opset={'ai.onnx.ml': 3}"
_LOCALE_MISSING = "Failed to construct locale"
_MAX_MESSAGE_CHARS = 300


class OnnxConverterError(Exception):
    """A converter exists for the estimator and failed: a ``dump_error``, not ``unsupported``."""


def _converter_failure(name: str, error: BaseException) -> OnnxConverterError:
    """The message for a converter that crashed: what, why it fails, the versions involved."""
    lines = [
        f"the ONNX converter for {name} failed; a converter exists, so this is a failure, not "
        "'unsupported' (mark a known one xfail={'onnx': ...})"
    ]
    if isinstance(error, Warning):
        lines.append(
            f"a {type(error).__name__} was raised as an error by a filterwarnings setting; "
            "ignore that warning for this test to convert anyway"
        )
    lines.append(_first_line(error, 160))
    cause = error.__cause__ or error.__context__
    if cause is not None:
        lines.append(f"caused by {_first_line(cause, 160)}")
    lines.append(f"versions: {converter_versions()}")
    return OnnxConverterError("\n".join(lines))


def register_onnx_converter(
    model_type: type,
    alias: str,
    shape_calculator: Callable[..., Any],
    converter: Callable[..., Any],
    parser: Callable[..., Any] | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    """Teach skl2onnx a third-party estimator (thin wrapper over
    ``skl2onnx.update_registered_converter``).

    A classifier's converter must declare ``options={"zipmap": [False, True], ...}`` for the
    backend to turn ZipMap off; without it the backend retries without the option.
    """
    from skl2onnx import update_registered_converter

    update_registered_converter(
        model_type, alias, shape_calculator, converter, parser=parser, options=options
    )


def _short_message(error: BaseException) -> str:
    """The first line of an error (and of its cause), cut to a readable length."""

    message = _first_line(error)
    cause = error.__cause__ or error.__context__
    if cause is not None:
        message += f" (caused by {_first_line(cause)})"
    return message


def _first_line(exc: BaseException, max_chars: int = _MAX_MESSAGE_CHARS) -> str:
    """``Type: first line of the message``, cut to ``max_chars``."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    if len(line) > max_chars:
        line = line[:max_chars] + "..."
    return f"{type(exc).__name__}: {line}"


def _head(X: Any, n_rows: int) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[:n_rows].copy()
    if isinstance(X, list):
        return list(X[:n_rows])
    return X[:n_rows].copy()


def _is_frame(X: Any) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc") and hasattr(X, "dtypes")


def _input_layout(X: Any, estimator: Any, float_dtype: str) -> list[dict[str, Any]]:
    """How ``X`` is fed to the graph: ``[{"name", "dtype", "n_features"[, "column"]}, ...]``.

    ``dtype`` is "float32", "float64" or "str"; ``column`` is set for one-input-per-column
    DataFrames; ``column_vector`` marks 1-D text reshaped to ``(n, 1)``.
    """
    from sklearn.compose import ColumnTransformer

    if _is_frame(X):
        from pandas.api.types import is_numeric_dtype

        numeric_columns = [is_numeric_dtype(dtype) for dtype in X.dtypes]
        nested = nested_estimators(estimator)
        selects_by_name = any(isinstance(e, ColumnTransformer) for e in nested)
        if all(numeric_columns) and not selects_by_name:
            return [{"name": "X", "dtype": float_dtype, "n_features": X.shape[1]}]
        layout = []
        for column, numeric in zip(X.columns, numeric_columns, strict=True):
            layout.append(
                {
                    "name": str(column),
                    "column": column if isinstance(column, (str, int)) else str(column),
                    "dtype": float_dtype if numeric else "str",
                    "n_features": 1,
                }
            )
        return layout
    if hasattr(X, "toarray"):
        raise UnsupportedEstimator("the ONNX backend converts dense input only, not sparse X")
    try:
        array = np.asarray(X)
    except ValueError as error:  # ragged input, e.g. MultiLabelBinarizer's lists of labels
        raise UnsupportedEstimator(f"the ONNX backend needs array input: {error}") from None
    if array.dtype.kind in "USO":
        if array.ndim == 1:
            return [{"name": "X", "dtype": "str", "n_features": 1, "column_vector": True}]
        return [{"name": "X", "dtype": "str", "n_features": array.shape[1]}]
    if array.ndim != 2:
        raise UnsupportedEstimator(f"the ONNX backend needs 2-D input, got shape {array.shape}")
    return [{"name": "X", "dtype": float_dtype, "n_features": array.shape[1]}]


def _initial_types(layout: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    tensor_types = {
        "float32": FloatTensorType,
        "float64": DoubleTensorType,
        "str": StringTensorType,
    }
    return [
        (entry["name"], tensor_types[entry["dtype"]]([None, entry["n_features"]]))
        for entry in layout
    ]


def _feeds(X: Any, layout: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Turn ``X`` into the graph's inputs, cast to the dtypes used at conversion."""

    def cast(values: Any, dtype: str) -> np.ndarray:
        if dtype == "str":
            return np.asarray(values).astype(str)
        return np.asarray(values, dtype=dtype)

    if len(layout) == 1 and "column" not in layout[0]:
        entry = layout[0]
        values = X.to_numpy() if _is_frame(X) else X
        if hasattr(values, "toarray"):
            values = values.toarray()
        array = cast(values, entry["dtype"])
        if entry.get("column_vector"):
            array = array.reshape(-1, 1)
        return {entry["name"]: array}
    if not _is_frame(X):
        names = [entry["column"] for entry in layout]
        raise TypeError(f"this ONNX model takes a DataFrame with columns {names}")
    return {
        entry["name"]: cast(X[[entry["column"]]].to_numpy(), entry["dtype"]) for entry in layout
    }


def _method_map(estimator: Any, output_names: list[str]) -> dict[str, str]:
    """Which graph output answers which estimator method."""
    from sklearn.base import is_regressor

    methods: dict[str, str] = {}
    for output in output_names:
        if output == "variable" or (len(output_names) == 1 and output not in OUTPUT_CANDIDATES):
            predicts = hasattr(estimator, "predict")
            transforms = hasattr(estimator, "transform")
            if predicts and (is_regressor(estimator) or not transforms):
                candidates: tuple[str, ...] = ("predict",)
            else:
                candidates = ("transform",)
        else:
            candidates = OUTPUT_CANDIDATES.get(output, ())
        for method in candidates:
            if hasattr(estimator, method) and method not in methods:
                methods[method] = output
                break
    return {method: methods[method] for method in ONNX_METHODS if method in methods}


def _reference_shapes(
    estimator: Any, X: Any, methods: list[str], known: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """ndim (and label dtype for predict) of the estimator's own outputs: those ``known``
    (computed by the caller on X), else computed on a few rows of X."""
    shapes: dict[str, dict[str, Any]] = {}
    for method in methods:
        try:
            if method in known:
                result = np.asarray(known[method])
            else:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    result = np.asarray(getattr(estimator, method)(_head(X, 5)))
        except Exception:
            shapes[method] = {"ndim": None}
            continue
        shapes[method] = {"ndim": result.ndim}
        if method == "predict":
            shapes[method]["dtype"] = result.dtype.str
    return shapes


def _default_opset() -> int:
    from skl2onnx import get_latest_tested_opset_version

    return get_latest_tested_opset_version()


def _opset_json(target_opset: Any) -> Any:
    if isinstance(target_opset, dict):
        return {str(domain): int(version) for domain, version in target_opset.items()}
    return None if target_opset is None else int(target_opset)


class OnnxModel:
    """An ONNX file run by onnxruntime on CPU, answering like the estimator it came from.

    Only the methods the graph produces exist: ``hasattr(model, "predict_proba")`` is False
    when no output answers it, so callers can list those methods as not compared.
    """

    def __init__(self, path: str | Path) -> None:
        import onnxruntime

        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(
            str(self.path), providers=["CPUExecutionProvider"]
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise ValueError(f"{self.path} was not written by pytest-persist (no {METADATA_KEY})")
        adapter = json.loads(metadata[METADATA_KEY])
        self.inputs: list[dict[str, Any]] = adapter["inputs"]
        self.methods: dict[str, dict[str, Any]] = adapter["methods"]
        self.onnx_outputs: list[str] = [output.name for output in self.session.get_outputs()]
        self._cache_key: str | None = None
        self._cache: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found normally: the estimator methods.
        methods = self.__dict__.get("methods", {})
        if name in methods:

            def method(X: Any) -> Any:
                return self._run(name, X)

            method.__name__ = name
            return method
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.methods})

    def _outputs(self, X: Any) -> dict[str, np.ndarray]:
        """Every output the methods need, from one run of the graph, cached for the last input.

        A tree ensemble computes labels and probabilities in the same node: running the graph
        once per method would evaluate every tree twice. The cache key is the input's content,
        since callers pass fresh copies of the same X.
        """
        feeds = _feeds(X, self.inputs)
        digest = hashlib.blake2b(digest_size=16)
        for name in sorted(feeds):
            array = np.ascontiguousarray(feeds[name])
            digest.update(f"{name}{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        key = digest.hexdigest()
        if self._cache_key != key:
            names = sorted({spec["output"] for spec in self.methods.values()})
            self._cache = dict(zip(names, self.session.run(names, feeds), strict=True))
            self._cache_key = key
        return self._cache

    def _run(self, method: str, X: Any) -> Any:
        spec = self.methods[method]
        result = np.array(self._outputs(X)[spec["output"]])  # a copy: callers may mutate it
        if spec.get("ndim") == 1 and result.ndim == 2 and 1 in result.shape:
            # (n, 1) from most converters, (1, n) from QuadraticDiscriminantAnalysis's label
            result = result.ravel()
        if method == "predict" and "dtype" in spec:
            result = result.astype(np.dtype(spec["dtype"]))
        return result

    def __repr__(self) -> str:
        return f"<OnnxModel {self.path.name} methods={list(self.methods)}>"


class OnnxBackend(Backend):
    """``skl2onnx.to_onnx`` + ``onnxruntime.InferenceSession`` (CPU), wrapped as ``OnnxModel``.

    ``default_atol = 1e-5``, ``default_rtol = 1e-4``: see the module docstring (float32).
    """

    name = "onnx"
    modules = ("skl2onnx", "onnxruntime")
    load_modules = ("onnxruntime",)  # skl2onnx converts; loading needs only the runtime
    install_hint = "pip install skl2onnx onnxruntime (or pytest-persist[onnx])"
    suffix = ".onnx"
    preserves_objects = False
    runs_code_on_load = False  # an ONNX graph is data: no signature needed (still limited)
    default_rtol = 1e-4
    default_atol = 1e-5

    def dump(self, estimator: Any, path: Path, call: BackendCall) -> None:
        import onnxruntime
        from sklearn.base import is_classifier
        from sklearn.feature_extraction.text import CountVectorizer

        if call.X is None:
            raise ValueError("the ONNX backend infers its input types from call.X; pass X")
        float_dtype = "float64" if call.options.get("onnx_dtype") == "float64" else "float32"
        layout = _input_layout(call.X, estimator, float_dtype)
        target_opset = call.options.get("target_opset")
        zipmap = is_classifier(estimator)
        locale_c = False
        retries: list[str] = call.details.setdefault("onnx_retries", [])
        nested = nested_estimators(estimator)
        try:
            converters = register_third_party_converters(nested)
        except ImportError as error:
            call.details["onnx_conversion"] = NO_CONVERTER
            raise UnsupportedEstimator(str(error)) from None
        if converters:
            call.details["onnx_converters"] = converters

        has_text_vectorizer = any(isinstance(sub, CountVectorizer) for sub in nested)
        for _ in range(4):  # at most one retry per known fix
            options: dict[Any, dict[str, Any]] = {}
            if zipmap:
                options[id(estimator)] = {"zipmap": False}
            if locale_c:
                for sub in nested:
                    if isinstance(sub, CountVectorizer):  # TfidfVectorizer too
                        options.setdefault(id(sub), {})["locale"] = "C"
            try:
                onnx_model = self._convert(estimator, layout, target_opset, options)
            except Exception as error:
                message = str(error)
                if zipmap and any(marker in message for marker in _ZIPMAP_REFUSED):
                    zipmap = False
                    retries.append(
                        "converter refused option zipmap=False "
                        f"({_short_message(error)}); converted without it"
                    )
                    continue
                if _ML_OPSET_3_NEEDED in message and not _ml_opset_is_3(target_opset):
                    target_opset = _with_ml_opset_3(target_opset)
                    retries.append(
                        f"converter needs ai.onnx.ml opset 3; converted with "
                        f"target_opset={target_opset}"
                    )
                    continue
                kind = classify_conversion_error(error)
                call.details["onnx_conversion"] = kind
                if kind == CONVERTER_FAILED:
                    call.details["onnx_conversion_error"] = _short_message(error)
                    raise _converter_failure(type(estimator).__name__, error) from error
                raise UnsupportedEstimator(
                    f"skl2onnx cannot convert {type(estimator).__name__}: {_short_message(error)}"
                ) from error
            if locale_c or not has_text_vectorizer:
                break
            # Only a text vectorizer's normalizer can fail to build here (a missing locale); a
            # session for every model would build large ensembles twice, here and at load.
            try:
                onnxruntime.InferenceSession(
                    onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
                )
            except Exception as error:
                if _LOCALE_MISSING in str(error) and not locale_c:
                    locale_c = True
                    retries.append(
                        "onnxruntime cannot build the text normalizer's default locale "
                        "(en_US.UTF-8 is not installed); converted with option locale='C'"
                    )
                    continue
                # Any other failure shows up again, and is reported, at load.
            break
        else:  # pragma: no cover - every fix is applied once, so the loop always breaks
            raise RuntimeError("ONNX conversion retries exhausted")

        output_names = [output.name for output in onnx_model.graph.output]
        method_outputs = _method_map(estimator, output_names)
        shapes = _reference_shapes(estimator, call.X, list(method_outputs), call.outputs)
        adapter = {
            "format": ADAPTER_FORMAT,
            "inputs": layout,
            "methods": {
                method: {"output": output, **shapes.get(method, {})}
                for method, output in method_outputs.items()
            },
        }
        prop = onnx_model.metadata_props.add()
        prop.key, prop.value = METADATA_KEY, json.dumps(adapter)
        path.write_bytes(onnx_model.SerializeToString())

        call.details["onnx_options"] = {
            "zipmap": False if zipmap else None,
            "locale": "C" if locale_c else None,
            "dtype": float_dtype,
        }
        call.details["onnx_target_opset"] = _opset_json(target_opset)
        call.details["onnx_inputs"] = [
            {key: entry[key] for key in ("name", "dtype", "column") if key in entry}
            for entry in layout
        ]
        call.details["onnx_outputs"] = output_names
        call.details["onnx_methods"] = method_outputs

    @staticmethod
    def _convert(
        estimator: Any,
        layout: list[dict[str, Any]],
        target_opset: Any,
        options: dict[Any, dict[str, Any]],
    ) -> Any:
        from skl2onnx import to_onnx

        return to_onnx(
            estimator,
            initial_types=_initial_types(layout),
            target_opset=target_opset,
            options=options or None,
        )

    def load(self, path: Path, call: BackendCall) -> OnnxModel:
        model = OnnxModel(path)
        call.details["onnx_outputs"] = list(model.onnx_outputs)
        call.details["onnx_methods"] = {
            method: spec["output"] for method, spec in model.methods.items()
        }
        return model


def _ml_opset_is_3(target_opset: Any) -> bool:
    return isinstance(target_opset, dict) and target_opset.get("ai.onnx.ml") == 3


def _with_ml_opset_3(target_opset: Any) -> dict[str, int]:
    if isinstance(target_opset, dict):
        return {**target_opset, "ai.onnx.ml": 3}
    main = _default_opset() if target_opset is None else int(target_opset)
    return {"": main, "ai.onnx.ml": 3}
