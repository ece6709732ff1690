"""pytest-persist: prove that a fitted model survives being saved, shipped and loaded.

The names below are imported on first use (PEP 562): pytest imports this package for every
run of every suite where the plugin is installed, and their modules import numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends import Backend, BackendCall, BackendRegistry, UnsupportedEstimator
    from .checks import parametrize_with_persistence, persistence_checks
    from .results.outcome import Difference, Outcome, OutcomeKind
    from .roundtrip.run import PersistUsageError, RoundtripConfig, check_persistence

__version__ = "0.1.0"

_EXPORTS = {
    "Backend": "backends",
    "BackendCall": "backends",
    "BackendRegistry": "backends",
    "UnsupportedEstimator": "backends",
    "parametrize_with_persistence": "checks",
    "persistence_checks": "checks",
    "Difference": "results.outcome",
    "Outcome": "results.outcome",
    "OutcomeKind": "results.outcome",
    "PersistUsageError": "roundtrip.config",
    "RoundtripConfig": "roundtrip.config",
    "check_persistence": "roundtrip.run",
}

__all__ = [
    "Backend",
    "BackendCall",
    "BackendRegistry",
    "Difference",
    "Outcome",
    "OutcomeKind",
    "PersistUsageError",
    "RoundtripConfig",
    "UnsupportedEstimator",
    "__version__",
    "check_persistence",
    "parametrize_with_persistence",
    "persistence_checks",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
