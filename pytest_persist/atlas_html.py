"""The atlas as one self-contained HTML page."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from .atlas import (
    _STATUS,
    _cells,
    _counts,
    _env_columns,
    _findings,
    _status_order,
    _worst,
    describe_record,
)

__all__ = ["render_atlas_html"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse}td,th{padding:2px 6px}
.env td,.env th,.sum td,.sum th{border:1px solid #ccc}
.grid{font-size:11px}
.grid td.c{width:16px;height:16px;padding:0;text-align:center;border:1px solid #fff;
 color:#fff;font-weight:bold;cursor:default}
.grid th.est{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;vertical-align:top;
 white-space:nowrap;border-left:2px solid #fff;padding:4px 0;font-weight:normal}
.grid th.be{font-weight:normal;color:#555;font-size:10px}
.grid td.pair{white-space:nowrap;text-align:right;padding-right:8px}
.grid td.first{border-left:3px solid #fff}
.legend span.k{display:inline-block;width:16px;height:16px;text-align:center;color:#fff;
 font-weight:bold;margin:0 4px 0 12px;vertical-align:middle}
.light{color:#333!important}
details{margin:.3em 0}pre{white-space:pre-wrap;margin:.2em 0 .6em 1.5em}
"""


def render_atlas_html(atlas: Mapping[str, Any]) -> str:
    """The atlas as one self-contained HTML page (inline CSS, no scripts, no network assets)."""
    esc = html.escape
    environments = atlas.get("environments", {})
    backends, estimators = atlas.get("backends", []), atlas.get("estimators", [])
    cells = _cells(atlas)
    statuses = _status_order()
    light = {"warned", "unavailable", "absent"}

    def box(status: str, title: str, extra: str = "") -> str:
        _symbol, letter, colour, _label, _ = _STATUS[status]
        klass = f"c s-{status}" + (" light" if status in light else "") + extra
        return (
            f'<td class="{klass}" style="background:{colour}" title="{esc(title)}">'
            f"{esc(letter)}</td>"
        )

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>pytest-persist compatibility atlas</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>pytest-persist compatibility atlas</h1>",
        f"<p>{len(atlas.get('records', []))} records from {len(atlas.get('sources', []))} "
        f"reports: {len(atlas.get('pairs', []))} saved &rarr; loaded pairs, {len(backends)} "
        f"backends, {len(estimators)} estimators. Hover a cell for the error or difference.</p>",
        '<p class="legend">',
    ]
    for status in statuses:
        _symbol, letter, colour, label, _ = _STATUS[status]
        klass = "k light" if status in light else "k"
        parts.append(
            f'<span class="{klass}" style="background:{colour}">{esc(letter)}</span>{esc(label)}'
        )
    parts.append("</p><h2>Environments</h2>")
    columns = _env_columns(environments)
    parts.append('<table class="env"><tr><th>row</th>')
    parts += [f"<th>{esc(c)}</th>" for c in columns]
    parts.append("</tr>")
    for label, env in environments.items():
        parts.append(f"<tr><td>{esc(label)}</td>")
        parts += [f"<td>{esc(str(env.get(c, '')))}</td>" for c in columns]
        parts.append("</tr>")
    parts.append("</table>")

    # Each estimator gets columns only for the backends it went through.
    used = {(e, b) for (_pair, e, b) in cells}
    columns = {e: [b for b in backends if (e, b) in used] or backends for e in estimators}
    parts.append("<h2>Grid: saved under &rarr; loaded under, by estimator and backend</h2>")
    parts.append('<table class="grid"><tr><th></th>')
    parts += [f'<th class="est" colspan="{len(columns[e])}">{esc(e)}</th>' for e in estimators]
    parts.append('</tr><tr><th class="be">backend &rarr;</th>')
    for estimator in estimators:
        parts += [f'<th class="be" title="{esc(b)}">{esc(b[:2])}</th>' for b in columns[estimator]]
    parts.append("</tr>")
    for pair in atlas.get("pairs", []):
        parts.append(f'<tr><td class="pair">{esc(pair.replace(" -> ", " → "))}</td>')
        for estimator in estimators:
            for index, backend in enumerate(columns[estimator]):
                records = cells.get((pair, estimator, backend), [])
                status = _worst(records)
                title = (
                    "\n\n".join(describe_record(r, atlas) for r in records)
                    if records
                    else f"{estimator} via {backend}, {pair}: no record"
                )
                parts.append(box(status, title, " first" if index == 0 else ""))
        parts.append("</tr>")
    parts.append("</table>")
    parts.append("<p>Backends: " + ", ".join(f"{esc(b[:2])} = {esc(b)}" for b in backends) + "</p>")

    parts.append('<h2>Summary</h2><table class="sum"><tr><th>saved under</th>')
    parts.append("<th>loaded under</th>")
    parts += [f"<th>{esc(_STATUS[s][3].split(':')[0])}</th>" for s in statuses]
    parts.append("</tr>")
    for pair, counts in _counts(atlas).items():
        saved, loaded = pair.split(" -> ")
        parts.append(f"<tr><td>{esc(saved)}</td><td>{esc(loaded)}</td>")
        parts += [f"<td>{counts.get(s, 0) or ''}</td>" for s in statuses]
        parts.append("</tr>")
    parts.append("</table>")

    findings = _findings(atlas)
    parts.append("<h2>Findings</h2>")
    if not findings:
        parts.append("<p>No mismatch, load error, method error or dump error.</p>")
    for record in findings:
        text = describe_record(record, atlas)
        head, _, rest = text.partition("\n")
        parts.append(
            f"<details><summary>{esc(_STATUS[record['kind']][1])} {esc(record['pair'])}: "
            f"{esc(head)}</summary><pre>{esc(rest)}</pre></details>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
