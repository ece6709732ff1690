"""Reports -> atlas: read JSON reports, tag every record with its saved and loaded rows."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .version_rows import VersionRow, _vtuple
from .versions import FINGERPRINT_DISTRIBUTIONS

__all__ = [
    "ATLAS_FORMAT",
    "REPORT_FORMAT",
    "ReportError",
    "describe_record",
    "merge_reports",
]

REPORT_FORMAT = "pytest-persist-report"
REPORT_FORMAT_VERSIONS = (1,)
ATLAS_FORMAT = "pytest-persist-atlas"
ATLAS_FORMAT_VERSION = 1


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


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ReportError(f"{path}: not a pytest-persist report (no format {REPORT_FORMAT!r})")
    if report.get("format_version") not in REPORT_FORMAT_VERSIONS:
        raise ReportError(
            f"{path}: report format_version {report.get('format_version')!r} is not supported "
            f"(this pytest-persist reads {', '.join(map(str, REPORT_FORMAT_VERSIONS))})"
        )
    if not isinstance(report.get("records"), list):
        raise ReportError(f"{path}: 'records' is missing or not a list")
    if not isinstance(report.get("environment", {}), dict):
        raise ReportError(f"{path}: 'environment' is not an object")
    for index, record in enumerate(report["records"]):
        if not isinstance(record, dict) or record.get("kind") not in _KINDS:
            kind = record.get("kind") if isinstance(record, dict) else record
            raise ReportError(f"{path}: record {index} has no known kind ({kind!r})")
    return report


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
        report = _read_report(path)
        sources.append(str(path))
        environment = report.get("environment") or {}
        for record in report["records"]:
            details = record.get("details") or {}
            if record.get("mode") == "check":
                saved_env = details.get("saved_environment") or {}
                loaded_env = details.get("loaded_environment") or environment
            else:
                saved_env = loaded_env = environment
            saved, loaded = _env_label(saved_env, rows), _env_label(loaded_env, rows)
            environments.setdefault(saved, dict(saved_env))
            environments.setdefault(loaded, dict(loaded_env))
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


def _cells(atlas: Mapping[str, Any]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in atlas.get("records", []):
        key = (record["pair"], record.get("estimator", "?"), record.get("backend", "?"))
        cells.setdefault(key, []).append(record)
    return cells


def _worst(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return "absent"
    return max((_status(r) for r in records), key=lambda s: _STATUS[s][4])


def _counts(atlas: Mapping[str, Any]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {pair: Counter() for pair in atlas.get("pairs", [])}
    for record in atlas.get("records", []):
        counts.setdefault(record["pair"], Counter())[_status(record)] += 1
    return counts


def _findings(atlas: Mapping[str, Any]) -> list[dict[str, Any]]:
    failed = [r for r in atlas.get("records", []) if r.get("kind") in _FAILURE_KINDS]
    pair_index = {pair: i for i, pair in enumerate(atlas.get("pairs", []))}
    return sorted(
        failed,
        key=lambda r: (
            _FAILURE_KINDS.index(r["kind"]),
            pair_index.get(r["pair"], 0),
            r.get("estimator", ""),
            r.get("backend", ""),
        ),
    )


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def _status_order() -> list[str]:
    return [s for s in sorted(_STATUS, key=lambda s: -_STATUS[s][4]) if s != "absent"]
