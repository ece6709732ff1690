"""The estimators inside an estimator: a pipeline's steps, a meta-estimator's base."""

from __future__ import annotations

from typing import Any

__all__ = ["nested_estimators"]


def nested_estimators(estimator: Any) -> list[Any]:
    """``estimator`` and every estimator among its parameters, deep (``get_params(deep=True)``
    values that have ``get_params``); just ``estimator`` when it has no parameters to read."""
    found = [estimator]
    get_params = getattr(estimator, "get_params", None)
    if not callable(get_params):
        return found
    try:
        params = get_params(deep=True)
    except Exception:  # a broken get_params: the caller reports it where it matters
        return found
    found.extend(value for value in params.values() if hasattr(value, "get_params"))
    return found
