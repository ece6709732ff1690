"""Validation of the marker's keywords and of option values, pytest-free.

One table says which keywords exist and what each accepts, so the marker, the fixture's
keyword arguments and ``check_persistence`` all reject the same bad input the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .compare import PREDICTION_METHODS
from .config import STATE_POLICIES, PersistUsageError, RoundtripConfig


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return parse_name_list(value)
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise PersistUsageError(f"{what} must be a list of names, got {value!r}")


def _backend_names(value: Any, what: str) -> list[str]:
    """``backends=``: at least one name (``[]`` would silently run nothing)."""
    names = _names(value, what)
    if not names:
        raise PersistUsageError(
            f"{what}={value!r} names no backend; name at least one, or leave backends out "
            "to run every enabled backend"
        )
    return names


def no_backend_left(names: list[str], exclude: list[str] | None, where: str) -> None:
    """Refuse a selection that ``exclude`` emptied (``backends`` names only excluded ones)."""
    if not names:
        raise PersistUsageError(
            f"{where}: exclude={exclude!r} leaves no backend to run; narrow it, or remove the test"
        )


def _reasons(value: Any, what: str) -> dict[str, str]:
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    raise PersistUsageError(f"{what} must be a {{backend: reason}} dict, got {value!r}")


def _methods(value: Any, what: str) -> list[str]:
    methods = _names(value, what)
    unknown = [m for m in methods if m not in PREDICTION_METHODS]
    if unknown:
        raise PersistUsageError(
            f"{what} names unknown method(s) {', '.join(map(repr, unknown))}; "
            f"choose among {', '.join(PREDICTION_METHODS)}"
        )
    return methods


#: Methods whose calling the comparison arranges itself (``y``, the transform's output).
_NOT_EXTRA = ("score", "fit_resample", "inverse_transform")


def _keywords(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise PersistUsageError(f"{what} must be a dict of keyword arguments, got {value!r}")


def _extra_methods(value: Any, what: str) -> dict[str, dict[str, Any]]:
    """``["predict_interval", ...]`` or ``{"predict_interval": {"alpha": 0.1}, ...}``: more
    methods to compare, ``model.name(X, **keywords)`` (a standard one: with these keywords)."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        value = {name: {} for name in value}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise PersistUsageError(
            f"{what} must be a list of method names or a {{method: {{keyword: value}}}} dict, "
            f"got {value!r}"
        )
    refused = [name for name in value if name in _NOT_EXTRA or not name.isidentifier()]
    if refused:
        raise PersistUsageError(
            f"{what} cannot name {', '.join(map(repr, refused))}: give method names "
            f"(not {', '.join(_NOT_EXTRA)}, which are called their own way)"
        )
    return {name: _keywords(kw, f"{what}[{name!r}]") for name, kw in value.items()}


def _functions(value: Any, what: str) -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """``{"approximate_predict": hdbscan.approximate_predict}`` (or ``(function, keywords)``):
    module-level functions of the model to compare, ``function(model, X, **keywords)``."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise PersistUsageError(
            f"{what} must be a {{name: function}} or {{name: (function, keywords)}} dict, "
            f"got {value!r}"
        )
    functions = {}
    for name, given in value.items():
        function, keywords = given if isinstance(given, tuple) and len(given) == 2 else (given, {})
        if not callable(function) or isinstance(function, type):
            raise PersistUsageError(
                f"{what}[{name!r}] must be a function called as function(model, X), "
                f"got {function!r}"
            )
        if name in PREDICTION_METHODS:
            raise PersistUsageError(
                f"{what}[{name!r}] is the name of a method; give the function another name"
            )
        functions[name] = (function, _keywords(keywords, f"{what}[{name!r}] keywords"))
    return functions


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise PersistUsageError(f"{what} must be a non-negative number, got {value!r}")
    return float(value)


def _tolerance(value: Any, what: str) -> float | dict[str, float]:
    """A number for every backend, or ``{backend: number}`` (others keep their defaults)."""
    if isinstance(value, dict):
        return {str(name): _number(v, f"{what}[{name!r}]") for name, v in value.items()}
    return _number(value, what)


def _fraction(value: Any, what: str) -> float:
    number = _number(value, what)
    if number > 1:
        raise PersistUsageError(f"{what} is a fraction between 0 and 1, got {value!r}")
    return number


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise PersistUsageError(f"{what} must be True or False, got {value!r}")
    return value


def _state(value: Any, what: str) -> str:
    if value not in STATE_POLICIES:
        raise PersistUsageError(f"{what} must be one of {', '.join(STATE_POLICIES)}, got {value!r}")
    return value


def _onnx_dtype(value: Any, what: str) -> str:
    if value not in ("float32", "float64"):
        raise PersistUsageError(f"{what} must be 'float32' or 'float64', got {value!r}")
    return value


def _opset(value: Any, what: str) -> int | dict[str, int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) for k, v in value.items()
    ):
        return dict(value)
    raise PersistUsageError(f"{what} must be an opset number or a {{domain: opset}} dict")


@dataclass(frozen=True)
class Keyword:
    """One keyword of the marker: where it goes and how it is checked."""

    check: Callable[[Any, str], Any]
    target: str  # "select" (which backends), "config" (RoundtripConfig) or "backend" (options)


KEYWORDS: dict[str, Keyword] = {
    "backends": Keyword(_backend_names, "select"),
    "exclude": Keyword(_names, "select"),
    "xfail": Keyword(_reasons, "select"),
    "methods": Keyword(_methods, "config"),
    "rtol": Keyword(_tolerance, "config"),
    "atol": Keyword(_tolerance, "config"),
    "exact": Keyword(_flag, "config"),
    "state": Keyword(_state, "config"),
    "max_label_flips": Keyword(_fraction, "config"),
    "check_determinism": Keyword(_flag, "config"),
    "extra_methods": Keyword(_extra_methods, "config"),
    "functions": Keyword(_functions, "config"),
    "trusted": Keyword(_names, "backend"),
    "onnx_dtype": Keyword(_onnx_dtype, "backend"),
    "target_opset": Keyword(_opset, "backend"),
}


@dataclass
class RoundtripRequest:
    """A validated request: which backends, and how to compare."""

    backends: list[str] | None
    exclude: list[str]
    config: RoundtripConfig
    xfail: dict[str, str] = field(default_factory=dict)

    @property
    def named_backends(self) -> list[str]:
        """Backend names mentioned outside ``backends``/``exclude``, to validate too."""
        names = list(self.xfail)
        for tolerance in (self.config.rtol, self.config.atol):
            if isinstance(tolerance, dict):
                names.extend(tolerance)
        return names


def parse_name_list(text: str) -> list[str]:
    """``"pickle, joblib"`` or ``"pickle joblib"`` -> ``["pickle", "joblib"]``."""
    return [part for part in text.replace(",", " ").split() if part]


def build_request(
    keywords: dict[str, Any], *, where: str, defaults: dict[str, Any] | None = None
) -> RoundtripRequest:
    """Validate ``keywords`` (marker or call) over ``defaults`` (options) into a request."""
    unknown = sorted(set(keywords) - set(KEYWORDS))
    if unknown:
        raise PersistUsageError(
            f"{where}: unknown keyword(s) {', '.join(unknown)}; "
            f"persist_roundtrip accepts {', '.join(KEYWORDS)}"
        )
    merged = {**(defaults or {}), **keywords}
    values = {
        name: KEYWORDS[name].check(value, f"{where}: {name}") for name, value in merged.items()
    }
    config_fields = {n: v for n, v in values.items() if KEYWORDS[n].target == "config"}
    backend_options = {n: v for n, v in values.items() if KEYWORDS[n].target == "backend"}
    return RoundtripRequest(
        backends=values.get("backends"),
        exclude=values.get("exclude", []),
        xfail=values.get("xfail", {}),
        config=RoundtripConfig(**config_fields, backend_options=backend_options),
    )


def config_from_options(options: dict[str, Any], *, where: str) -> RoundtripConfig:
    """The pytest-free API's keywords, checked like the marker's: ``rtol``, ``trusted``...

    Backend selection is an argument of its own there, so ``backends``, ``exclude`` and
    ``xfail`` are refused here with a pointer to it.
    """
    selecting = sorted(k for k in options if k in KEYWORDS and KEYWORDS[k].target == "select")
    if selecting:
        raise PersistUsageError(
            f"{where}: {', '.join(selecting)} choose test items on the marker; "
            "here, pass backends= and exclude= as arguments"
        )
    return build_request(options, where=where).config
