"""Break points: where a model saved under one row first stops passing in newer (or older) rows.

Computed from the published atlas' cells (``atlas.aggregate``). A model counts only where it
passed its own round trip in the saving row; rows where it is unsupported or has no record are
stepped over, neither passing nor breaking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["BreakGroup", "break_points", "group_break_points"]

_PASSING = {"p", "w"}
_BREAKING = {"l": "load_error", "e": "method_error", "m": "mismatch"}


def break_points(atlas: Mapping[str, Any]) -> dict[str, Any]:
    """``{"upgrades": [...], "downgrades": [...], "checked": {...}}`` for ``atlas``.

    Upgrades: for each estimator, backend and saving row, the first later row (in row order:
    scikit-learn, then numpy, then Python) whose check fails, with how (``load_error``,
    ``method_error``, ``mismatch``), the last row where it still passed, and the message.
    Downgrades: the same from the newest row, walking down through the older ones.
    """
    rows = list(atlas.get("environments", {}))
    order = {row: i for i, row in enumerate(rows)}
    pairs = [tuple(p) for p in atlas.get("pairs", [])]
    cells: dict[tuple[str, str, int, int], tuple[str, int]] = {}
    for pair, est, be, code, message, _n in atlas.get("cells", []):
        saved, loaded = pairs[pair]
        cells[(saved, loaded, est, be)] = (code, message)
    estimators, backends = atlas.get("estimators", []), atlas.get("backends", [])
    messages = atlas.get("messages", [])
    loads: dict[str, list[str]] = {}
    for saved, loaded in pairs:
        if saved != loaded:
            loads.setdefault(saved, []).append(loaded)

    def walk(saved: str, targets: Sequence[str], est: int, be: int) -> dict[str, Any] | None:
        if cells.get((saved, saved, est, be), ("", -1))[0] not in _PASSING:
            return None
        last = saved
        for loaded in targets:
            code, message = cells.get((saved, loaded, est, be), ("", -1))
            if code in _PASSING:
                last = loaded
            elif code in _BREAKING:
                return {
                    "estimator": estimators[est],
                    "backend": backends[be],
                    "saved": saved,
                    "last_passed": last,
                    "breaks_at": loaded,
                    "how": _BREAKING[code],
                    "message": messages[message] if message >= 0 else "",
                }
        return {}

    result: dict[str, Any] = {"upgrades": [], "downgrades": [], "checked": {}}
    newest = rows[-1] if rows else None
    counted = {"upgrades": 0, "downgrades": 0}
    for est in range(len(estimators)):
        for be in range(len(backends)):
            for saved in rows:
                later = sorted(
                    (r for r in loads.get(saved, []) if order[r] > order[saved]), key=order.get
                )
                if later:
                    found = walk(saved, later, est, be)
                    if found is not None:
                        counted["upgrades"] += 1
                        if found:
                            result["upgrades"].append(found)
            if newest is not None:
                older = sorted(
                    (r for r in loads.get(newest, []) if order[r] < order[newest]),
                    key=order.get,
                    reverse=True,
                )
                if older:
                    found = walk(newest, older, est, be)
                    if found is not None:
                        counted["downgrades"] += 1
                        if found:
                            result["downgrades"].append(found)
    result["checked"] = counted
    return result


class BreakGroup(NamedTuple):
    """Break points that agree on all but the estimator, for a compact table."""

    backend: str
    saved: str
    last_passed: str
    breaks_at: str
    how: str
    estimators: list[str]
    message: str


def group_break_points(
    entries: Sequence[Mapping[str, Any]], rows: Sequence[str]
) -> list[BreakGroup]:
    """``entries`` grouped by (backend, saved, last passed, breaks at, how), in row order."""
    order = {row: i for i, row in enumerate(rows)}
    groups: dict[tuple[str, str, str, str, str], list[Mapping[str, Any]]] = {}
    for entry in entries:
        key = (
            entry["backend"],
            entry["saved"],
            entry["last_passed"],
            entry["breaks_at"],
            entry["how"],
        )
        groups.setdefault(key, []).append(entry)

    def sort_key(key: tuple[str, str, str, str, str]) -> tuple[Any, ...]:
        backend, saved, last, at, how = key
        return (order.get(saved, 0), order.get(at, 0), backend, how, order.get(last, 0))

    return [
        BreakGroup(*key, sorted(e["estimator"] for e in groups[key]), groups[key][0]["message"])
        for key in sorted(groups, key=sort_key)
    ]
