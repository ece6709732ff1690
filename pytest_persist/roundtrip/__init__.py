"""One estimator through one backend, in this process: dump, load, compare.

``run`` drives the round trip (``check_persistence``); ``compare`` computes and compares the
outputs of every prediction method; ``state`` walks the fitted state; ``config`` and
``settings`` validate the marker's keywords and options; ``hints`` explains load errors with
a known cause. Pytest-free; may import ``results``, ``backends``, ``environments`` and
``estimators``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: What ``from pytest_persist.roundtrip import ...`` offers (the module it was before 0.2).
_EXPORTS = {
    "check_persistence": "run",
    "run_roundtrip": "run",
    "expected_outputs": "run",
    "validate_input": "run",
    "PersistUsageError": "config",
    "RoundtripConfig": "config",
    "Expected": "config",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
