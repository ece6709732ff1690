"""pytest-persist: prove that a fitted model survives being saved, shipped and loaded."""

from __future__ import annotations

__version__ = "0.1.0"
