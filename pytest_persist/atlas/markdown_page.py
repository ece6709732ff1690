"""The published atlas (``atlas.aggregate``) as markdown: break points first, then the rest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .aggregate import _STATUS, _env_columns, _md, _status_order, status_of
from .break_points import group_break_points

__all__ = ["render_atlas_markdown", "render_break_points_markdown"]

_WHERE_SHOWN = 8
_MESSAGE_SHOWN = 300
#: Estimators named per break-point row; atlas.html and atlas.json list every one.
_NAMES_SHOWN = 20


def _header(atlas: Mapping[str, Any]) -> list[str]:
    seconds = atlas.get("run_seconds")
    took = f", built in {seconds / 60:.1f} minutes" if isinstance(seconds, int | float) else ""
    return [
        f"Generated {atlas.get('generated') or 'at an unknown date'}{took}: "
        f"{atlas.get('n_records', 0)} records from {len(atlas.get('sources', []))} reports, "
        f"{len(atlas.get('environments', {}))} rows, {len(atlas.get('pairs', []))} "
        f"saved -> loaded pairs, {len(atlas.get('backends', []))} backends, "
        f"{len(atlas.get('estimators', []))} estimators, {len(atlas.get('cells', []))} cells."
    ]


def _short(text: str, limit: int = _MESSAGE_SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_break_points_markdown(atlas: Mapping[str, Any], heading: str = "##") -> list[str]:
    """The two break-point tables (upgrades, downgrades) as markdown lines."""
    rows = list(atlas.get("environments", {}))
    points = atlas.get("break_points", {})
    checked = points.get("checked", {})
    out: list[str] = []
    for key, title, direction in (
        ("upgrades", "Break points: upgrades", "a later row"),
        ("downgrades", "Break points: downgrades from the newest row", "an older row"),
    ):
        entries = points.get(key, [])
        out += [
            f"{heading} {title}",
            "",
            f"{len(entries)} of {checked.get(key, 0)} (estimator, backend, saved-under row) "
            f"that passed where they were saved stop passing in {direction}; the first such "
            "row and how:",
            "",
        ]
        if not entries:
            out += ["None.", ""]
            continue
        out.append(
            "| backend | saved under | last passed | first fails | how | estimators | message |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for group in group_break_points(entries, rows):
            names = ", ".join(group.estimators[:_NAMES_SHOWN])
            if len(group.estimators) > _NAMES_SHOWN:
                names += f" and {len(group.estimators) - _NAMES_SHOWN} more (atlas.html)"
            out.append(
                f"| {_md(group.backend)} | {_md(group.saved)} | {_md(group.last_passed)} "
                f"| {_md(group.breaks_at)} | {_STATUS[group.how][0]} {group.how} "
                f"| {len(group.estimators)}: {_md(names)} | {_md(_short(group.message, 160))} |"
            )
        out.append("")
    return out


def render_atlas_markdown(atlas: Mapping[str, Any]) -> str:
    """Break points, environments, a summary per pair and every distinct failure message."""
    environments = atlas.get("environments", {})
    statuses = _status_order()
    out = ["# pytest-persist compatibility atlas", "", *_header(atlas), ""]
    out.append("Legend: " + " · ".join(f"{_STATUS[s][0]} {_STATUS[s][3]}" for s in statuses))
    out.append("")
    out += render_break_points_markdown(atlas)
    out += ["## Environments", ""]
    columns = _env_columns(environments)
    out.append("| row | " + " | ".join(columns) + " |")
    out.append("|---" * (len(columns) + 1) + "|")
    for label, env in environments.items():
        out.append(f"| {_md(label)} | " + " | ".join(_md(env.get(c, "")) for c in columns) + " |")
    out += ["", "## Summary: cells per pair", ""]
    out.append(
        "| saved under | loaded under | " + " | ".join(_STATUS[s][0] for s in statuses) + " |"
    )
    out.append("|---|---" + "|---:" * len(statuses) + "|")
    counts = _counts(atlas)
    for index, (saved, loaded) in enumerate(atlas.get("pairs", [])):
        row = counts.get(index, Counter())
        out.append(
            f"| {_md(saved)} | {_md(loaded)} | "
            + " | ".join(str(row.get(s, 0) or "") for s in statuses)
            + " |"
        )
    out += ["", "## Failure messages", ""]
    failures = _failure_messages(atlas)
    if not failures:
        out.append("No mismatch, load error, method error or dump error.")
    for status, text, where in failures:
        shown = ", ".join(where[:_WHERE_SHOWN])
        more = f" and {len(where) - _WHERE_SHOWN} more" if len(where) > _WHERE_SHOWN else ""
        out.append(f"- {_STATUS[status][0]} **{status}** in {len(where)} cells ({shown}{more}):")
        out.extend(f"  > {_md(line)}" for line in text.splitlines()[:6] if line.strip())
    warned = Counter(
        atlas["pairs"][cell[0]][0] + " -> " + atlas["pairs"][cell[0]][1]
        for cell in atlas.get("cells", [])
        if cell[3] == "w"
    )
    if warned:
        out += ["", "### Version warnings (passed, but the loader warned)", ""]
        out += [f"- {pair}: {count} cells" for pair, count in warned.items()]
    out += [
        "",
        "The full grid (every estimator, backend and pair) is in `atlas.html`; every cell with "
        "its message in `atlas.json`.",
    ]
    return "\n".join(out) + "\n"


def _counts(atlas: Mapping[str, Any]) -> dict[int, Counter[str]]:
    counts: dict[int, Counter[str]] = {}
    for cell in atlas.get("cells", []):
        counts.setdefault(cell[0], Counter())[status_of(cell[3])] += 1
    return counts


def _failure_messages(atlas: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(status, message, where) for each distinct failing message, worst and commonest first."""
    pairs: Sequence[Sequence[str]] = atlas.get("pairs", [])
    estimators, backends = atlas.get("estimators", []), atlas.get("backends", [])
    messages = atlas.get("messages", [])
    found: dict[tuple[str, int], list[str]] = {}
    for pair, est, be, code, message, _n in atlas.get("cells", []):
        status = status_of(code)
        if status not in ("mismatch", "load_error", "method_error", "dump_error"):
            continue
        saved, loaded = pairs[pair]
        where = f"{estimators[est]} via {backends[be]}, {saved} -> {loaded}"
        found.setdefault((status, message), []).append(where)
    ordered = sorted(found.items(), key=lambda kv: (-_STATUS[kv[0][0]][4], -len(kv[1])))
    return [(s, messages[m] if m >= 0 else "", where) for (s, m), where in ordered]
