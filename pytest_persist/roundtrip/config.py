"""The data types the round trip and the keyword validation share, on a floor below both.

``roundtrip.py`` (which runs round trips) and ``settings.py`` (which validates the marker's
keywords into a ``RoundtripConfig``) both import from here; neither imports the other's
internals through this module, so there is no import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .compare import PREDICTION_METHODS

STATE_POLICIES = ("fail", "warn", "ignore")


class PersistUsageError(ValueError):
    """The round trip was asked for something that cannot be checked (not a persistence bug)."""


@dataclass
class RoundtripConfig:
    """How a round trip compares; ``None`` tolerances mean the backend's defaults.

    ``check_determinism``: when a method's output differs after loading, call the original's
    method again; if it disagrees with its own first answer, the method is set aside as
    nondeterministic instead of failing (``False``: never call it again).
    ``extra_methods`` (``{name: keywords}``) and ``functions`` (``{name: (function,
    keywords)}``, called ``function(model, X, **keywords)``) are compared beside the standard
    methods.
    """

    methods: list[str] | None = None
    rtol: float | dict[str, float] | None = None
    atol: float | dict[str, float] | None = None
    exact: bool = False
    state: str = "fail"
    max_label_flips: float | None = None
    check_determinism: bool = True
    extra_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    functions: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATE_POLICIES:
            raise PersistUsageError(
                f"state={self.state!r} is not one of {', '.join(STATE_POLICIES)}"
            )
        unknown = [m for m in self.methods or [] if m not in PREDICTION_METHODS]
        if unknown:
            raise PersistUsageError(
                f"unknown method(s) {', '.join(map(repr, unknown))}; "
                f"compared methods are chosen among {', '.join(PREDICTION_METHODS)}"
            )


@dataclass
class Expected:
    """The original estimator's outputs on X, computed once and shared by every backend.

    ``again`` holds the original's second answers, computed only when some backend's
    comparison of that method failed (the lazy determinism check), so that the original is
    called a second time at most once per method however many backends disagree.
    ``input_mutated`` says a method changed its input in place, so that every call then gets
    its own copy of X (otherwise one copy serves all the methods of one model).
    ``identical`` names the methods whose output equals X (a transform that did nothing).
    ``fingerprint`` is the original's fitted state when its outputs were computed (see
    ``state.state_fingerprint``): a dump that changes the original is caught by it.
    """

    outputs: dict[str, Any]
    not_compared: dict[str, str]
    again: dict[str, Any] = field(default_factory=dict)
    again_errors: dict[str, str] = field(default_factory=dict)
    input_mutated: bool = False
    identical: list[str] = field(default_factory=list)
    fingerprint: dict[str, str] | None = None
    #: How to call the extra methods and functions (``compare.extra_calls``), by name.
    calls: dict[str, Callable[[Any, Any], Any]] = field(default_factory=dict)
