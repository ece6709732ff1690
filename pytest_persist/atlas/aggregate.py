"""Reports -> atlas: read JSON reports, tag every record with its saved and loaded rows."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..environments.fingerprint import FINGERPRINT_DISTRIBUTIONS
from ..results.report import REPORT_FORMAT, REPORT_FORMAT_VERSIONS, expand_environments
from .break_points import break_points
from .rows import VersionRow, _vtuple

__all__ = [
    "ATLAS_FORMAT",
    "REPORT_FORMAT",
    "ReportError",
    "describe_record",
    "merge_reports",
]

ATLAS_FORMAT = "pytest-persist-atlas"
ATLAS_FORMAT_VERSION = 2


class ReportError(ValueError):
    """A report file that cannot be merged; the message names the file."""


_KINDS = (
    "passed",
    "mismatch",
    "dump_error",
    "load_error",
    "method_error",
    "unsupported",
    "unavailable",
)

# Display status: the outcome kind, with "passed" split by whether a version warning fired.
_STATUS = {
    # status: (symbol for markdown, letter for HTML, colour, label, severity)
    "mismatch": ("❌", "≠", "#c2185b", "mismatch: loaded, then predicted differently", 8),
    "load_error": ("💥", "L", "#b71c1c", "load_error: the artifact did not load", 7),
    "method_error": ("🚫", "E", "#ef6c00", "method_error: loaded, then a method raised", 6),
    "dump_error": ("🧨", "D", "#6d4c41", "dump_error: could not be saved", 5),
    "warned": ("⚠️", "w", "#c0ca33", "passed, with a version warning", 4),
    "passed": ("✅", "✓", "#43a047", "passed: same outputs", 3),
    "unsupported": ("⚪", "-", "#9e9e9e", "unsupported: the backend cannot handle it", 2),
    "unavailable": ("⬜", "·", "#e0e0e0", "unavailable: backend not installed", 1),
    "absent": ("", "", "#ffffff", "no record for this pair", 0),
}


def _env_columns(environments: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The environment columns some row has a value for."""
    return [c for c in _ENV_COLUMNS if any(c in env for env in environments.values())]


_FAILURE_KINDS = ("mismatch", "load_error", "method_error", "dump_error")
#: The environment columns of the atlas: the fingerprint's libraries that decide a load.
_ENV_COLUMNS = (
    "python",
    *(d for d in FINGERPRINT_DISTRIBUTIONS if d not in {"pandas", "pytest-persist"}),
)


def _status(record: Mapping[str, Any]) -> str:
    kind = record.get("kind", "")
    if kind == "passed" and record.get("version_warnings"):
        return "warned"
    return kind if kind in _STATUS else "absent"


def _env_label(environment: Mapping[str, Any], rows: Sequence[VersionRow]) -> str:
    for row in rows:
        if row.matches(environment):
            return row.id
    python = ".".join(str(p) for p in _vtuple(str(environment.get("python", "?")))[:2]) or "?"
    return f"py{python}-skl{environment.get('scikit-learn', '?')}-np{environment.get('numpy', '?')}"


def _env_sort_key(environment: Mapping[str, Any]) -> tuple[tuple[int, ...], ...]:
    return (
        _vtuple(str(environment.get("scikit-learn", "0"))),
        _vtuple(str(environment.get("numpy", "0"))),
        _vtuple(str(environment.get("python", "0"))),
    )


def _report_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.rglob("*.json")))
        else:
            files.append(path)
    return files


class ReportRecord(NamedTuple):
    """One record of a report with the environments it was saved and loaded in."""

    record: dict[str, Any]
    saved: dict[str, Any]
    loaded: dict[str, Any]


def read_report(path: Path) -> list[ReportRecord]:
    """Every record of the JSON report at ``path``, with its saved and loaded environments.

    The one place that knows the report format: version 1 (one ``environment`` per report; a
    ``check`` record's saved environment in its ``details``) and version 2 (a top-level
    ``environments`` table; records name theirs by id in ``saved_environment`` and
    ``loaded_environment``). Raises ``ReportError`` naming the file for anything else.
    """
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ReportError(f"{path}: not a pytest-persist report (no format {REPORT_FORMAT!r})")
    version = report.get("format_version")
    if version not in REPORT_FORMAT_VERSIONS:
        raise ReportError(
            f"{path}: report format_version {version!r} is not supported "
            f"(this pytest-persist reads {', '.join(map(str, REPORT_FORMAT_VERSIONS))}); "
            "upgrade pytest-persist to merge it"
        )
    try:  # version 2 names environments by id: back to one dict per report and record
        report = expand_environments(report)
    except ValueError as exc:
        raise ReportError(f"{path}: {exc}") from None
    if not isinstance(report.get("records"), list):
        raise ReportError(f"{path}: 'records' is missing or not a list")
    if not isinstance(report.get("environment", {}), dict):
        raise ReportError(f"{path}: 'environment' is not an object")
    own = report.get("environment") or {}
    out: list[ReportRecord] = []
    for index, record in enumerate(report["records"]):
        if not isinstance(record, dict) or record.get("kind") not in _KINDS:
            kind = record.get("kind") if isinstance(record, dict) else record
            raise ReportError(f"{path}: record {index} has no known kind ({kind!r})")
        details = record.get("details") or {}
        if record.get("mode") == "check":
            saved = details.get("saved_environment") or {}
            loaded = details.get("loaded_environment") or own
        else:
            saved = loaded = own
        out.append(ReportRecord(record, dict(saved), dict(loaded)))
    return out


def merge_reports(
    paths: Iterable[str | os.PathLike[str]], rows: Sequence[VersionRow] = ()
) -> dict[str, Any]:
    """Read JSON reports (files, or folders searched for ``*.json``) into one atlas.

    Every record is tagged with ``saved_row`` and ``loaded_row``: for a ``check`` record from the
    saved and loaded environments in its details, for a ``roundtrip`` record both are the
    report's own environment. Rows are named by the matching ``VersionRow`` id, else by the
    versions found. Raises ``ReportError`` naming the file for an unreadable or foreign report.
    """
    rows = list(rows)
    environments: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    sources: list[str] = []
    for path in _report_files(paths):
        entries = read_report(path)
        sources.append(str(path))
        for record, saved_env, loaded_env in entries:
            saved, loaded = _env_label(saved_env, rows), _env_label(loaded_env, rows)
            environments.setdefault(saved, saved_env)
            environments.setdefault(loaded, loaded_env)
            records.append(
                {
                    **record,
                    "saved_row": saved,
                    "loaded_row": loaded,
                    "pair": f"{saved} -> {loaded}",
                    "source": path.name,
                }
            )
    _label_estimators(records)
    row_order = {row.id: index for index, row in enumerate(sorted(rows, key=VersionRow.sort_key))}

    def label_key(label: str) -> tuple[Any, ...]:
        if label in row_order:
            return (0, row_order[label])
        return (1, _env_sort_key(environments.get(label, {})), label)

    labels = sorted(environments, key=label_key)
    pairs = sorted(
        {(r["saved_row"], r["loaded_row"]) for r in records},
        key=lambda p: (label_key(p[0]), label_key(p[1])),
    )
    return {
        "format": ATLAS_FORMAT,
        "format_version": ATLAS_FORMAT_VERSION,
        "sources": sources,
        "environments": {label: environments[label] for label in labels},
        "pairs": [f"{a} -> {b}" for a, b in pairs],
        "backends": list(dict.fromkeys(r.get("backend", "?") for r in records)),
        "estimators": sorted({r.get("estimator", "?") for r in records}),
        "records": records,
    }


def _test_name(test_id: str) -> str:
    """``examples/x.py::test_forest[joblib]`` -> ``test_forest``."""
    return test_id.rpartition("::")[2].partition("[")[0] or test_id


def _label_estimators(records: list[dict[str, Any]]) -> None:
    """Name estimators that several tests save (two ``Pipeline``s) after their test too.

    The class name stays in ``estimator_name``; ``estimator`` becomes ``Pipeline (test_x)``.
    """
    tests: dict[str, set[str]] = {}
    for record in records:
        name = record.get("estimator_name") or record.get("estimator", "?")
        tests.setdefault(name, set()).add(_test_name(str(record.get("test_id", ""))))
    for record in records:
        name = record.setdefault("estimator_name", record.get("estimator", "?"))
        if len(tests[name]) > 1:
            record["estimator"] = f"{name} ({_test_name(str(record.get('test_id', '')))})"


def _short_env(environment: Mapping[str, Any]) -> str:
    keys = ("python", "scikit-learn", "numpy", "scipy")
    return ", ".join(f"{k} {environment[k]}" for k in keys if environment.get(k))


def describe_record(record: Mapping[str, Any], atlas: Mapping[str, Any] | None = None) -> str:
    """A plain-text account of one atlas record: what happened, with which versions."""
    environments = (atlas or {}).get("environments", {})
    lines = [
        f"{record.get('estimator', '?')} via {record.get('backend', '?')}: "
        f"{_STATUS[_status(record)][3]}"
    ]
    saved, loaded = record.get("saved_row", "?"), record.get("loaded_row", "?")
    lines.append(f"saved under {saved} ({_short_env(environments.get(saved, {}))})")
    if loaded != saved:
        lines.append(f"loaded under {loaded} ({_short_env(environments.get(loaded, {}))})")
    lines.extend(record_message(record).splitlines())
    return "\n".join(lines)


def record_message(record: Mapping[str, Any]) -> str:
    """What a record says beyond its kind: the error, the differences, the version warnings."""
    lines: list[str] = []
    if record.get("error"):
        lines.append(str(record["error"]).strip())
    for diff in record.get("differences") or []:
        if diff.get("tolerated"):
            continue
        text = f"{diff.get('method', '?')}{diff.get('path') or ''}: {diff.get('message', '')}"
        if diff.get("n_different") is not None and diff.get("n_total") is not None:
            text += f"; {diff['n_different']} of {diff['n_total']} differ"
        if diff.get("max_abs") is not None:
            text += f"; max abs diff {diff['max_abs']:.3g}"
        lines.append(text)
    state = record.get("state_differences") or []
    if state:
        lines.append("fitted state differs at: " + ", ".join(map(str, state[:5])))
    warnings = record.get("version_warnings") or []
    if warnings:
        seen = Counter(
            f"{w.get('category', 'warning')} from {w.get('estimator', '?')} "
            f"({w.get('original_version')} -> {w.get('current_version')})"
            for w in warnings
        )
        for text, count in seen.items():
            lines.append(text + (f" x{count}" if count > 1 else ""))
    return "\n".join(lines)


def _worst(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return "absent"
    return max((_status(r) for r in records), key=lambda s: _STATUS[s][4])


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def _status_order() -> list[str]:
    return [s for s in sorted(_STATUS, key=lambda s: -_STATUS[s][4]) if s != "absent"]


# ---------------------------------------------------------------------------------------------
# The published form: one aggregated cell per (pair, estimator, backend), messages and
# environments given once.

#: One-letter codes of the statuses in the published ``cells``.
STATUS_CODES = {
    "passed": "p",
    "warned": "w",
    "mismatch": "m",
    "load_error": "l",
    "method_error": "e",
    "dump_error": "d",
    "unsupported": "u",
    "unavailable": "n",
}
BREAKING = ("load_error", "method_error", "mismatch")
_MESSAGE_LIMIT = 2000


def aggregate(
    merged: Mapping[str, Any],
    *,
    generated: str | None = None,
    run_seconds: float | None = None,
) -> dict[str, Any]:
    """The atlas as published: ``merge_reports``' records folded into one cell each.

    A cell is ``[pair, estimator, backend, status code, message, records]`` (indexes into
    ``pairs``, ``estimators``, ``backends`` and ``messages``; message -1 when there is none):
    the worst status of the records of that estimator, backend and pair, with their distinct
    messages joined. Break points (``break_points``) are computed from the cells.
    """
    pairs = [tuple(p.split(" -> ")) for p in merged.get("pairs", [])]
    pair_index = {f"{a} -> {b}": i for i, (a, b) in enumerate(pairs)}
    estimators = list(merged.get("estimators", []))
    est_index = {e: i for i, e in enumerate(estimators)}
    backends = list(merged.get("backends", []))
    be_index = {b: i for i, b in enumerate(backends)}
    grouped: dict[tuple[int, int, int], list[Mapping[str, Any]]] = {}
    for record in merged.get("records", []):
        key = (
            pair_index[record["pair"]],
            est_index[record.get("estimator", "?")],
            be_index[record.get("backend", "?")],
        )
        grouped.setdefault(key, []).append(record)
    messages: dict[str, int] = {}
    cells: list[list[Any]] = []
    for key in sorted(grouped):
        records = grouped[key]
        status = _worst(records)
        texts = list(dict.fromkeys(t for t in map(record_message, records) if t))
        text = "\n\n".join(texts)[:_MESSAGE_LIMIT]
        message = messages.setdefault(text, len(messages)) if text else -1
        cells.append([*key, STATUS_CODES[status], message, len(records)])
    atlas: dict[str, Any] = {
        "format": ATLAS_FORMAT,
        "format_version": ATLAS_FORMAT_VERSION,
        "generated": generated,
        "run_seconds": run_seconds,
        "sources": [Path(s).name for s in merged.get("sources", [])],
        "n_records": len(merged.get("records", [])),
        "environments": dict(merged.get("environments", {})),
        "pairs": [list(p) for p in pairs],
        "backends": backends,
        "estimators": estimators,
        "statuses": {code: _STATUS[s][3] for s, code in STATUS_CODES.items()},
        "messages": list(messages),
        "cells": cells,
    }
    atlas["break_points"] = break_points(atlas)
    return atlas


def status_of(code: str) -> str:
    """The status name of a one-letter cell code."""
    return _CODE_STATUS[code]


_CODE_STATUS = {code: status for status, code in STATUS_CODES.items()}
