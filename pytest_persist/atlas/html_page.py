"""The published atlas (``atlas.aggregate``) as one self-contained HTML page.

No network: inline CSS, inline JavaScript, the data as an inline JSON block; it works from
``file://``. The break-point tables, environments and summary are plain HTML; the grid (one
backend at a time, estimators down, pairs across) is drawn by the script from the data, with
filters by estimator, backend, saved and loaded row. Hover a cell for its outcome and message
with the versions; click it to keep them in the panel.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from .aggregate import _STATUS, STATUS_CODES, _env_columns, _status_order, status_of
from .break_points import group_break_points

__all__ = ["render_atlas_html"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.4em}
table{border-collapse:collapse}td,th{padding:2px 6px}
table.t td,table.t th{border:1px solid #ccc;vertical-align:top}
table.t td.n{text-align:right}
.k{display:inline-block;min-width:14px;height:14px;line-height:14px;text-align:center;color:#fff;
 font-weight:bold;font-size:11px;margin:0 3px 0 10px;vertical-align:middle}
.light{color:#333!important}
.ests{max-width:34em;font-size:12px}.break td:nth-child(-n+5){white-space:nowrap}
.scroll{max-height:32vh;overflow:auto;border:1px solid #ddd;display:inline-block}
.msg{max-width:30em;font-size:12px;color:#444}
#controls{position:sticky;top:0;background:#fff;padding:6px 0;z-index:2;
 border-bottom:1px solid #ddd}
#controls label{margin-right:12px}
#panel{white-space:pre-wrap;font:12px/1.35 ui-monospace,monospace;background:#f6f6f6;
 padding:6px;min-height:3em;max-height:12em;overflow:auto;margin:6px 0}
#gridwrap{overflow:auto;max-height:75vh;border:1px solid #ddd}
#grid{font-size:11px}
#grid td.c{width:14px;min-width:14px;height:14px;padding:0;text-align:center;color:#fff;
 font-weight:bold;border:1px solid #fff;cursor:pointer}
#grid th.p{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;
 white-space:nowrap;padding:3px 0;font-size:10px;position:sticky;top:0;background:#fff}
#grid th.e{text-align:right;white-space:nowrap;font-weight:normal;padding-right:6px;
 position:sticky;left:0;background:#fff}
#grid td.sel{outline:2px solid #000}
"""

_SCRIPT = r"""
(function(){
"use strict";
var A=JSON.parse(document.getElementById("atlas-data").textContent);
var S=A.status, P=A.pairs, E=A.estimators, B=A.backends, M=A.messages, V=A.environments;
var byBackend=B.map(function(){return new Map();});
A.cells.forEach(function(c){byBackend[c[2]].set(c[0]*E.length+c[1],c);});
function $(id){return document.getElementById(id);}
function fill(sel,items,all){
  var o=all?'<option value="">'+all+'</option>':"";
  items.forEach(function(t,i){o+='<option value="'+i+'">'+esc(t)+'</option>';});
  sel.innerHTML=o;}
function esc(t){return String(t).replace(/[&<>"]/g,function(ch){
  return {"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[ch];});}
var rows=Object.keys(V);
fill($("f-backend"),B,null);fill($("f-saved"),rows,"any");fill($("f-loaded"),rows,"any");
function env(id){var e=V[id]||{};return id+" (python "+(e.python||"?")+", scikit-learn "+
  (e["scikit-learn"]||"?")+", numpy "+(e.numpy||"?")+", scipy "+(e.scipy||"?")+")";}
function describe(c){
  var p=P[c[0]], s=S[c[3]];
  var t=E[c[1]]+" via "+B[c[2]]+": "+s.label+"\nsaved under "+env(p[0]);
  if(p[1]!==p[0]) t+="\nloaded under "+env(p[1]);
  if(c[4]>=0) t+="\n"+M[c[4]];
  return t;}
function short(id){return id.replace(/^py[0-9.]+-skl/,"").replace("-np","/");}
var shown=[];
function draw(){
  var be=+$("f-backend").value||0, text=$("f-est").value.toLowerCase();
  var sv=$("f-saved").value, ld=$("f-loaded").value, fails=$("f-fail").checked;
  var cells=byBackend[be];
  var pairs=[];P.forEach(function(p,i){
    if((sv===""||rows[+sv]===p[0])&&(ld===""||rows[+ld]===p[1])) pairs.push(i);});
  var ests=[];E.forEach(function(e,i){
    if(text&&e.toLowerCase().indexOf(text)<0) return;
    var any=false, bad=false;
    pairs.forEach(function(p){var c=cells.get(p*E.length+i);
      if(c){any=true;if(S[c[3]].failure) bad=true;}});
    if(any&&(!fails||bad)) ests.push(i);});
  var h=['<tr><th></th>'];
  pairs.forEach(function(p){h.push('<th class="p" title="'+esc(P[p][0]+" \u2192 "+P[p][1])+
    '">'+esc(short(P[p][0])+"\u2192"+short(P[p][1]))+'</th>');});
  h.push('</tr>');
  ests.forEach(function(e){
    h.push('<tr><th class="e">'+esc(E[e])+'</th>');
    pairs.forEach(function(p){var c=cells.get(p*E.length+e);
      if(!c){h.push('<td class="c" style="background:#fff"></td>');return;}
      var s=S[c[3]];
      h.push('<td class="c'+(s.light?" light":"")+'" style="background:'+s.colour+
        '" data-k="'+(p*E.length+e)+'">'+s.letter+'</td>');});
    h.push('</tr>');});
  $("grid").innerHTML=h.join("");
  $("count").textContent=ests.length+" estimators x "+pairs.length+" pairs ("+B[be]+")";
  shown=[be];}
var grid=$("grid");
grid.addEventListener("mouseover",function(ev){var td=ev.target;
  if(td.dataset&&td.dataset.k&&!td.title){
    td.title=describe(byBackend[shown[0]].get(+td.dataset.k));}});
grid.addEventListener("click",function(ev){var td=ev.target;
  if(!(td.dataset&&td.dataset.k)) return;
  var old=grid.querySelector("td.sel"); if(old) old.classList.remove("sel");
  td.classList.add("sel");
  $("panel").textContent=describe(byBackend[shown[0]].get(+td.dataset.k));});
["f-backend","f-saved","f-loaded","f-fail"].forEach(function(id){
  $(id).addEventListener("change",draw);});
$("f-est").addEventListener("input",draw);
draw();
document.body.setAttribute("data-ready-ms",String(Math.round(performance.now())));
})();
"""


def _data(atlas: Mapping[str, Any]) -> str:
    statuses = {
        code: {
            "label": _STATUS[status][3],
            "letter": _STATUS[status][1],
            "colour": _STATUS[status][2],
            "light": status in {"warned", "unavailable"},
            "failure": status in {"mismatch", "load_error", "method_error", "dump_error"},
        }
        for status, code in STATUS_CODES.items()
    }
    data = {
        "status": statuses,
        "pairs": atlas.get("pairs", []),
        "estimators": atlas.get("estimators", []),
        "backends": atlas.get("backends", []),
        "messages": atlas.get("messages", []),
        "environments": atlas.get("environments", {}),
        "cells": atlas.get("cells", []),
    }
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("</", "<\\/")  # never ends the script block early


def _legend() -> str:
    parts = []
    for status in _status_order():
        _symbol, letter, colour, label, _ = _STATUS[status]
        light = " light" if status in {"warned", "unavailable"} else ""
        parts.append(
            f'<span class="k{light}" style="background:{colour}">{html.escape(letter)}</span>'
            f"{html.escape(label)}"
        )
    return "<p>" + "".join(parts) + "</p>"


def _break_tables(atlas: Mapping[str, Any]) -> list[str]:
    esc = html.escape
    rows = list(atlas.get("environments", {}))
    points = atlas.get("break_points", {})
    checked = points.get("checked", {})
    out = []
    for key, title, direction in (
        ("upgrades", "Break points: upgrades", "a later row"),
        ("downgrades", "Break points: downgrades from the newest row", "an older row"),
    ):
        entries = points.get(key, [])
        out.append(f'<h2 id="break-{key}">{title}</h2>')
        out.append(
            f"<p>{len(entries)} of {checked.get(key, 0)} (estimator, backend, saved-under row) "
            f"that passed where they were saved stop passing in {direction}; the first such row "
            "and how.</p>"
        )
        if not entries:
            out.append("<p>None.</p>")
            continue
        out.append(
            f'<div class="scroll"><table class="t break" id="break-table-{key}">'
            "<tr><th>backend</th>"
            "<th>saved under</th><th>last passed</th><th>first fails</th><th>how</th>"
            "<th>estimators</th><th>message</th></tr>"
        )
        for group in group_break_points(entries, rows):
            colour = _STATUS[group.how][2]
            message = group.message
            short = message if len(message) <= 200 else message[:199] + "…"
            out.append(
                f"<tr><td>{esc(group.backend)}</td><td>{esc(group.saved)}</td>"
                f"<td>{esc(group.last_passed)}</td><td>{esc(group.breaks_at)}</td>"
                f'<td><span class="k" style="background:{colour}">'
                f"{esc(_STATUS[group.how][1])}</span>{esc(group.how)}</td>"
                f'<td class="ests">{_estimator_list(group.estimators)}'
                f'</td><td class="msg" title="{esc(message)}">{esc(short)}</td></tr>'
            )
        out.append("</table></div>")
    return out


#: Estimators named in a break-point row before the rest fold into "N more".
_NAMES_SHOWN = 20


def _estimator_list(names: list[str]) -> str:
    """``"N: A, B, ..."``; past ``_NAMES_SHOWN`` names the rest open from a ``<details>``."""
    esc = html.escape
    shown = esc(", ".join(names[:_NAMES_SHOWN]))
    if len(names) <= _NAMES_SHOWN:
        return f"{len(names)}: {shown}"
    rest = esc(", ".join(names[_NAMES_SHOWN:]))
    more = len(names) - _NAMES_SHOWN
    return f"{len(names)}: {shown}<details><summary>{more} more</summary>{rest}</details>"


def render_atlas_html(atlas: Mapping[str, Any]) -> str:
    """The atlas as one HTML page that needs nothing but a browser (works from file://)."""
    esc = html.escape
    environments = atlas.get("environments", {})
    seconds = atlas.get("run_seconds")
    took = f", built in {seconds / 60:.1f} minutes" if isinstance(seconds, int | float) else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width">',
        "<title>pytest-persist compatibility atlas</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>pytest-persist compatibility atlas</h1>",
        f"<p>Generated {esc(str(atlas.get('generated') or 'at an unknown date'))}{took}: "
        f"{atlas.get('n_records', 0)} records from {len(atlas.get('sources', []))} reports, "
        f"{len(environments)} rows, {len(atlas.get('pairs', []))} saved &rarr; loaded pairs, "
        f"{len(atlas.get('backends', []))} backends, {len(atlas.get('estimators', []))} "
        f"estimators. <a href='#grid-section'>Grid</a> · <a href='#environments'>"
        "Environments</a> · <a href='#summary'>Summary</a></p>",
        _legend(),
        *_break_tables(atlas),
        '<h2 id="grid-section">Grid: estimators by saved &rarr; loaded pair</h2>'
        "<p>Columns: scikit-learn/numpy saved under &rarr; loaded under (hover for the full "
        "rows).</p>",
        '<div id="controls"><label>backend <select id="f-backend"></select></label>'
        '<label>estimator <input id="f-est" size="18" placeholder="filter"></label>'
        '<label>saved <select id="f-saved"></select></label>'
        '<label>loaded <select id="f-loaded"></select></label>'
        '<label><input type="checkbox" id="f-fail"> only estimators with a failure</label>'
        '<span id="count"></span>'
        '<div id="panel">Hover a cell for its outcome and message; click to keep it here.</div>'
        "</div>",
        "<noscript><p>The grid needs JavaScript; every cell is also in atlas.json.</p></noscript>",
        '<div id="gridwrap"><table id="grid"></table></div>',
        '<h2 id="environments">Environments</h2>',
    ]
    columns = _env_columns(environments)
    parts.append('<table class="t env"><tr><th>row</th>')
    parts += [f"<th>{esc(c)}</th>" for c in columns]
    parts.append("</tr>")
    for label, env in environments.items():
        parts.append(f"<tr><td>{esc(label)}</td>")
        parts += [f"<td>{esc(str(env.get(c, '')))}</td>" for c in columns]
        parts.append("</tr>")
    parts.append("</table>")
    statuses = _status_order()
    parts.append('<h2 id="summary">Summary: cells per pair</h2><table class="t sum">')
    parts.append("<tr><th>saved under</th><th>loaded under</th>")
    parts += [f"<th>{esc(s)}</th>" for s in statuses]
    parts.append("</tr>")
    counts: dict[int, Counter[str]] = {}
    for cell in atlas.get("cells", []):
        counts.setdefault(cell[0], Counter())[status_of(cell[3])] += 1
    for index, (saved, loaded) in enumerate(atlas.get("pairs", [])):
        row = counts.get(index, Counter())
        parts.append(f"<tr><td>{esc(saved)}</td><td>{esc(loaded)}</td>")
        parts += [f'<td class="n">{row.get(s, 0) or ""}</td>' for s in statuses]
        parts.append("</tr>")
    parts.append("</table>")
    parts.append(f'<script type="application/json" id="atlas-data">{_data(atlas)}</script>')
    parts.append(f"<script>{_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
