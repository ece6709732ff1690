"""Converters skl2onnx does not ship, and telling a missing converter from a failing one.

LightGBM and XGBoost models convert through onnxmltools' converters, registered with skl2onnx
the way its gallery does it ("plot_gexternal_lightgbm", "plot_gexternal_xgboost"):
``update_registered_converter(model, alias, shape_calculator, converter, options=...)`` with
skl2onnx's ``calculate_linear_classifier_output_shapes`` / ``..._regressor_...``. They are
registered on first use, only for a model that needs them, and never over a converter the
user registered for the same type.

Conversion errors fall in three groups (``classify_conversion_error``):

- ``no_converter``: skl2onnx has none for a type (``MissingShapeCalculator``,
  ``MissingConverter``): ``unsupported``;
- ``converter_declined``: a converter refuses a configuration it does not handle, by
  ``NotImplementedError`` or a ``RuntimeError`` saying so ("not supported", "only converts"):
  ``unsupported``;
- ``converter_failed``: anything else (a ``TypeError`` inside onnx, a ``ValueError``, a warning
  the user's filters raise as an error): a converter exists and crashed, a ``dump_error``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

NO_CONVERTER = "no_converter"
CONVERTER_DECLINED = "converter_declined"
CONVERTER_FAILED = "converter_failed"

ONNXMLTOOLS_HINT = "pip install onnxmltools"

_MISSING = frozenset({"MissingShapeCalculator", "MissingConverter"})
_DECLINED = re.compile(
    r"not supported|not implemented|only supports?|only converts?|cannot convert|unsupported",
    re.IGNORECASE,
)

_CLASSIFIER_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"]}


@dataclass(frozen=True)
class ThirdPartyConverter:
    """One model class onnxmltools converts: where it lives and how skl2onnx learns it."""

    library: str  # the model's top-level package, e.g. "lightgbm"
    model: str  # the class name, e.g. "LGBMClassifier"
    converter_module: str
    converter: str
    classifier: bool

    @property
    def alias(self) -> str:
        prefix = {"lightgbm": "LightGbm", "xgboost": "XGBoost"}[self.library]
        return f"{prefix}{self.model}"


_LGBM = "onnxmltools.convert.lightgbm.operator_converters.LightGbm"
_XGB = "onnxmltools.convert.xgboost.operator_converters.XGBoost"

THIRD_PARTY: tuple[ThirdPartyConverter, ...] = (
    ThirdPartyConverter("lightgbm", "LGBMClassifier", _LGBM, "convert_lightgbm", True),
    ThirdPartyConverter("lightgbm", "LGBMRegressor", _LGBM, "convert_lightgbm", False),
    ThirdPartyConverter("xgboost", "XGBClassifier", _XGB, "convert_xgboost", True),
    ThirdPartyConverter("xgboost", "XGBRegressor", _XGB, "convert_xgboost", False),
    ThirdPartyConverter("xgboost", "XGBRFClassifier", _XGB, "convert_xgboost", True),
    ThirdPartyConverter("xgboost", "XGBRFRegressor", _XGB, "convert_xgboost", False),
)
_BY_NAME = {(entry.library, entry.model): entry for entry in THIRD_PARTY}


def third_party_converter(model_type: type) -> ThirdPartyConverter | None:
    """The onnxmltools converter for ``model_type`` or a class it derives from, if any."""
    for klass in model_type.__mro__:
        library = klass.__module__.partition(".")[0]
        entry = _BY_NAME.get((library, klass.__name__))
        if entry is not None:
            return entry
    return None


def _registered_types() -> dict[type, str]:
    from skl2onnx import _supported_operators

    return _supported_operators.sklearn_operator_name_map


def register_third_party_converters(estimators: list[Any]) -> dict[str, str]:
    """Register with skl2onnx the onnxmltools converter of every estimator that needs one.

    Returns ``{class name: "onnxmltools <version> <converter>"}`` for the types this call or an
    earlier one registered. Raises ``ImportError`` naming the package to install when
    onnxmltools is missing (or lacks the converter).
    """
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    registered = _registered_types()
    used: dict[str, str] = {}
    for estimator in estimators:
        model_type = type(estimator)
        entry = third_party_converter(model_type)
        if entry is None:
            continue
        if model_type in registered and model_type not in _OURS:
            continue  # the user's own converter wins
        try:
            module = __import__(entry.converter_module, fromlist=[entry.converter])
            converter = getattr(module, entry.converter)
        except (ImportError, AttributeError) as error:
            raise ImportError(
                f"skl2onnx has no converter for {model_type.__name__}; onnxmltools provides "
                f"it: {ONNXMLTOOLS_HINT} ({type(error).__name__}: {error})"
            ) from None
        if model_type not in _OURS:
            update_registered_converter(
                model_type,
                entry.alias,
                calculate_linear_classifier_output_shapes
                if entry.classifier
                else calculate_linear_regressor_output_shapes,
                converter,
                options=dict(_CLASSIFIER_OPTIONS) if entry.classifier else None,
            )
            _OURS.add(model_type)
        used[model_type.__name__] = f"onnxmltools {_version('onnxmltools')} {entry.converter}"
    return used


#: Types this module registered (so a second model of the same type does not re-register).
_OURS: set[type] = set()


def classify_conversion_error(error: BaseException) -> str:
    """``no_converter``, ``converter_declined`` or ``converter_failed`` (see the module doc)."""
    names = {klass.__name__ for klass in type(error).__mro__}
    if names & _MISSING:
        return NO_CONVERTER
    if isinstance(error, Warning):
        return CONVERTER_FAILED
    if isinstance(error, NotImplementedError):
        return CONVERTER_DECLINED
    if isinstance(error, RuntimeError) and _DECLINED.search(str(error)):
        return CONVERTER_DECLINED
    return CONVERTER_FAILED


def converter_versions() -> str:
    """``skl2onnx 1.20.0, onnx 1.23.2, protobuf 7.36.2[, onnxmltools 1.16.0]``."""
    shown = []
    for dist in ("skl2onnx", "onnx", "protobuf", "onnxmltools"):
        version = _version(dist)
        if version:
            shown.append(f"{dist} {version}")
    return ", ".join(shown)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""
