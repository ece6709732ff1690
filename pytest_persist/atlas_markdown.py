"""The atlas as markdown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from .atlas import (
    _STATUS,
    _cells,
    _counts,
    _env_columns,
    _findings,
    _md,
    _status_order,
    _worst,
    describe_record,
)

__all__ = ["render_atlas_markdown"]


def render_atlas_markdown(atlas: Mapping[str, Any]) -> str:
    """The atlas as markdown: environments, a summary per pair, the failures, the full grid."""
    environments = atlas.get("environments", {})
    backends, estimators = atlas.get("backends", []), atlas.get("estimators", [])
    records = atlas.get("records", [])
    statuses = _status_order()
    out = [
        "# pytest-persist compatibility atlas",
        "",
        f"{len(records)} records from {len(atlas.get('sources', []))} reports: "
        f"{len(atlas.get('pairs', []))} saved -> loaded pairs, {len(backends)} backends, "
        f"{len(estimators)} estimators.",
        "",
        "Legend: " + " · ".join(f"{_STATUS[s][0]} {_STATUS[s][3]}" for s in statuses),
        "",
        "## Environments",
        "",
    ]
    columns = _env_columns(environments)
    out.append("| row | " + " | ".join(columns) + " |")
    out.append("|---" * (len(columns) + 1) + "|")
    for label, env in environments.items():
        out.append(f"| {_md(label)} | " + " | ".join(_md(env.get(c, "")) for c in columns) + " |")
    out += ["", "## Summary", ""]
    out.append(
        "| saved under | loaded under | " + " | ".join(_STATUS[s][0] for s in statuses) + " |"
    )
    out.append("|---|---" + "|---:" * len(statuses) + "|")
    for pair, counts in _counts(atlas).items():
        saved, loaded = pair.split(" -> ")
        out.append(
            f"| {_md(saved)} | {_md(loaded)} | "
            + " | ".join(str(counts.get(s, 0) or "") for s in statuses)
            + " |"
        )
    findings = _findings(atlas)
    out += ["", "## Findings", ""]
    if not findings:
        out.append("No mismatch, load error, method error or dump error.")
    for record in findings:
        text = describe_record(record, atlas).split("\n")
        out.append(f"- {_STATUS[record['kind']][0]} **{text[0]}**")
        out.extend(f"  - {line}" for line in text[1:])
    warned = Counter(r["pair"] for r in records if r.get("version_warnings"))
    if warned:
        out += ["", "### Version warnings", ""]
        out += [f"- {pair}: {count} records" for pair, count in warned.items()]
    out += ["", "## Grid", "", "| saved -> loaded | estimator | " + " | ".join(backends) + " |"]
    out.append("|---|---" + "|:---:" * len(backends) + "|")
    cells = _cells(atlas)
    for pair in atlas.get("pairs", []):
        for estimator in estimators:
            row = [_STATUS[_worst(cells.get((pair, estimator, b), []))][0] for b in backends]
            if any(row):
                out.append(f"| {_md(pair)} | {_md(estimator)} | " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"
