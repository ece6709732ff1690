"""pytest-persist: prove that a fitted model survives being saved, shipped and loaded."""

from __future__ import annotations

from .backends import Backend, BackendCall, BackendRegistry, UnsupportedEstimator
from .checks import parametrize_with_persistence, persistence_checks
from .outcome import Difference, Outcome, OutcomeKind
from .roundtrip import PersistUsageError, RoundtripConfig, check_persistence

__version__ = "0.1.0"

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
