"""Reports of round trips and cross-environment checks: JSON, markdown and terminal lines.

The JSON schema is read by other tools (the nox layer); keep it stable. Version 2 holds each
environment once and records refer to it by id (``environment_id``)::

    {"format": "pytest-persist-report", "format_version": 2,
     "environment": "env-1a2b3c4d5e6f",          # where the report was written
     "environments": {"env-1a2b3c4d5e6f": {...fingerprint...}, ...},
     "records": [Outcome.to_dict() + {"mode": "roundtrip" | "check",
                 "saved_environment": "<id>", "loaded_environment": "<id>"}, ...]}

A round trip's two ids are the run's; a check's are those its details held as
``saved_environment`` / ``loaded_environment`` dicts in version 1, where every record repeated
them. ``expand_environments`` turns either version into the version 1 shape, which is what
``read_json_report`` returns and the rest of the code (and the nox helpers) work on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .outcome import Outcome, OutcomeKind

__all__ = [
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "Record",
    "environment_id",
    "expand_environments",
    "has_something_to_say",
    "loaded_unsigned",
    "markdown_report",
    "read_json_report",
    "summary_lines",
    "write_json_report",
    "write_markdown_report",
]

REPORT_FORMAT = "pytest-persist-report"
REPORT_FORMAT_VERSION = 2
#: The versions ``read_json_report`` and ``expand_environments`` read.
REPORT_FORMAT_VERSIONS = (1, 2)
#: The details keys that become environment ids at record level in version 2.
ENVIRONMENT_KEYS = ("saved_environment", "loaded_environment")
MODES = ("roundtrip", "check")

_SYMBOLS = {
    OutcomeKind.PASSED: "✅",
    OutcomeKind.MISMATCH: "❌",
    OutcomeKind.DUMP_ERROR: "❌",
    OutcomeKind.LOAD_ERROR: "❌",
    OutcomeKind.METHOD_ERROR: "❌",
    OutcomeKind.UNSUPPORTED: "⚪",
    OutcomeKind.UNAVAILABLE: "⚪",
    OutcomeKind.USAGE_ERROR: "❌",
}


@dataclass
class Record:
    """One outcome and how it was obtained: an in-process ``roundtrip`` or a stored ``check``."""

    outcome: Outcome
    mode: str = "roundtrip"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: ``Outcome.to_dict()`` plus ``mode``."""
        return _json_safe({**self.outcome.to_dict(), "mode": self.mode})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        data = dict(data)
        mode = data.pop("mode", "roundtrip")
        data["differences"] = [
            {k: _number(v) if k in ("max_abs", "max_rel") else v for k, v in d.items()}
            for d in data.get("differences", [])
        ]
        return cls(Outcome.from_dict(data), mode)


def _number(value: Any) -> Any:
    """Undo ``_json_safe`` for a float field ("nan" -> nan)."""
    return float(value) if isinstance(value, str) else value


# ----------------------------------------------------------------------------------------------
# JSON


def environment_id(environment: dict[str, Any]) -> str:
    """A short stable id for an environment fingerprint: ``env-`` + 12 hex digits of the
    sha256 of its canonical JSON (sorted keys, no spaces), the same wherever it is computed."""
    canonical = json.dumps(environment, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "env-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def write_json_report(
    path: Path | str, records: Iterable[Record], environment: dict[str, str]
) -> Path:
    """Write the JSON report (format version 2) atomically; return its path."""
    environments: dict[str, dict[str, Any]] = {}

    def refer(env: dict[str, Any]) -> str:
        env = _json_safe(dict(env))
        key = environment_id(env)
        environments.setdefault(key, env)
        return key

    here = refer(environment)
    written = []
    for record in records:
        data = record.to_dict()
        if record.mode == "check":
            details = data["details"] = dict(data.get("details") or {})
            ids = {}
            for key in ENVIRONMENT_KEYS:
                env = details.pop(key, None)
                ids[key] = refer(env) if isinstance(env, dict) else None
            data["saved_environment"] = ids["saved_environment"]
            data["loaded_environment"] = ids["loaded_environment"]
        else:
            data["saved_environment"] = data["loaded_environment"] = here
        written.append(data)
    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "environment": here,
        "environments": environments,
        "records": written,
    }
    text = json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    return _write_atomic(Path(path), text)


def expand_environments(report: dict[str, Any]) -> dict[str, Any]:
    """A parsed report of any known version in the version 1 shape: ``environment`` a dict, and
    a check record's environments back in its ``details``. Raises ``ValueError`` for an unknown
    version or an environment id the report does not define."""
    version = report.get("format_version")
    if version not in REPORT_FORMAT_VERSIONS:
        known = ", ".join(map(str, REPORT_FORMAT_VERSIONS))
        raise ValueError(f"report format version {version!r} unknown (this reads {known})")
    if version == 1:
        return report
    environments = report.get("environments")
    if not isinstance(environments, dict):
        raise ValueError("'environments' is missing or not an object")

    def lookup(key: Any, where: str) -> dict[str, Any]:
        if key not in environments or not isinstance(environments[key], dict):
            raise ValueError(f"{where} refers to environment {key!r}, which is not defined")
        return dict(environments[key])

    records = report.get("records")
    expanded = []
    for index, record in enumerate(records if isinstance(records, list) else []):
        if not isinstance(record, dict):
            expanded.append(record)
            continue
        record = dict(record)
        ids = {key: record.pop(key, None) for key in ENVIRONMENT_KEYS}
        if record.get("mode") == "check":
            details = record["details"] = dict(record.get("details") or {})
            for key, env_id in ids.items():
                if env_id is not None:
                    details[key] = lookup(env_id, f"record {index}'s {key}")
        expanded.append(record)
    return {
        **{key: value for key, value in report.items() if key != "environments"},
        # where the report was written; a report merged from several runs may name none
        "environment": (
            lookup(report["environment"], "'environment'") if "environment" in report else {}
        ),
        "records": expanded if isinstance(records, list) else records,
    }


def read_json_report(path: Path | str) -> tuple[dict[str, str], list[Record]]:
    """(environment, records) of a report written by ``write_json_report``, version 1 or 2."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path}: not a {REPORT_FORMAT} file")
    try:
        data = expand_environments(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return data["environment"], [Record.from_dict(r) for r in data["records"]]


def _json_safe(value: Any) -> Any:
    """Strict JSON: non-finite floats become "nan"/"inf"/"-inf", unknown objects their str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and type(value).__module__ == "numpy":
        return _json_safe(tolist())
    return str(value)


# ----------------------------------------------------------------------------------------------
# tables


def _row_key(outcome: Outcome) -> tuple[str, str, str]:
    """(test file, test without its backend parameter, estimator): what makes a row.

    Two tests sharing a function name in two files are two rows.
    """
    test_id = outcome.test_id or ""
    path, _, test = test_id.rpartition("::") if "::" in test_id else ("", "", test_id)
    if test.endswith("]") and "[" in test:
        name, _, params = test[:-1].partition("[")
        backend = outcome.backend
        if params == backend:
            params = ""
        elif params.endswith("-" + backend):
            params = params[: -len(backend) - 1]
        elif params.startswith(backend + "-"):
            params = params[len(backend) + 1 :]
        test = f"{name}[{params}]" if params else name
    return path, test, outcome.estimator


def _row_labels(records: Sequence[Record]) -> dict[tuple[str, str, str], str]:
    """Each row's label: ``Estimator (test)``, or ``Estimator (file::test)`` where the short
    form would be shared by rows from different files or classes."""
    keys = {_row_key(r.outcome) for r in records}
    short: dict[str, list[tuple[str, str, str]]] = {}
    for key in keys:
        short.setdefault(_label(key, full=False), []).append(key)
    return {key: _label(key, full=len(short[_label(key, full=False)]) > 1) for key in sorted(keys)}


def _label(key: tuple[str, str, str], *, full: bool) -> str:
    path, test, estimator = key
    if full and path:
        test = f"{path}::{test}"
    return f"{estimator} ({test})" if test else estimator


def _cell(outcome: Outcome) -> str:
    text = outcome.kind.value + outcome.qualifier
    if outcome.version_warnings:
        text += f" ⚠{len(outcome.version_warnings)}"
    return text


def backend_columns(seen: Iterable[str], order: Sequence[str] | None = None) -> list[str]:
    """The backends in ``seen``, in ``order`` (the registry's; default: the built-in
    backends' order), then any others by name: the same columns whatever order records came in
    (serial or ``-n 2``)."""
    if order is None:
        from ..backends import builtin_backends

        order = [backend.name for backend in builtin_backends()]
    seen = set(seen)
    return [b for b in order if b in seen] + sorted(seen - set(order))


def _matrix(
    records: Sequence[Record], backend_order: Sequence[str] | None = None
) -> tuple[list[str], list[str], dict[tuple[str, str], list[Outcome]]]:
    """(row labels, backend columns, outcomes by (row, backend)); rows sorted by test file,
    test and estimator, so the table does not depend on the order tests finished in."""
    labels = _row_labels(records)
    cells: dict[tuple[str, str], list[Outcome]] = {}
    for record in records:
        outcome = record.outcome
        row = labels[_row_key(outcome)]
        cells.setdefault((row, outcome.backend), []).append(outcome)
    backends = backend_columns((r.outcome.backend for r in records), backend_order)
    return list(labels.values()), backends, cells


def _cell_text(outcomes: list[Outcome]) -> str:
    return ", ".join(_cell(o) for o in outcomes)


def _version_warnings(records: Sequence[Record]) -> list[tuple[str, str, str, int, list[str]]]:
    """(estimator, original, current, count, where) for every distinct warning."""
    labels = _row_labels(records)
    seen: dict[tuple[str, str, str], tuple[int, list[str]]] = {}
    for record in records:
        for warning in record.outcome.version_warnings:
            key = (warning.estimator, str(warning.original_version), str(warning.current_version))
            count, where = seen.get(key, (0, []))
            label = f"{labels[_row_key(record.outcome)]} [{record.outcome.backend}]"
            seen[key] = (count + 1, where if label in where else [*where, label])
    return [(*key, count, where) for key, (count, where) in seen.items()]


def has_something_to_say(records: Sequence[Record]) -> bool:
    """True when a summary is worth showing: a failure (a usage error too), a version warning,
    a pass that proves little (state only, identity) or any check."""
    return any(
        r.outcome.failed or r.outcome.version_warnings or r.outcome.vacuous or r.mode == "check"
        for r in records
    )


# ----------------------------------------------------------------------------------------------
# terminal


def summary_lines(
    records: Sequence[Record],
    *,
    always: bool = False,
    backend_order: Sequence[str] | None = None,
) -> list[str]:
    """Lines for the pytest terminal summary: one table per mode (estimator x backend, columns
    in ``backend_order``), then the version warnings; empty when there is nothing to say
    (unless ``always``)."""
    records = list(records)
    if not records or not (always or has_something_to_say(records)):
        return []
    lines: list[str] = []
    for mode, title in (("roundtrip", "round trips"), ("check", "stored artifacts checked")):
        chosen = [r for r in records if r.mode == mode]
        if not chosen:
            continue
        rows, backends, outcomes = _matrix(chosen, backend_order)
        cells = {key: _cell_text(found) for key, found in outcomes.items()}
        counts = _counts(chosen)
        lines.append(f"{title}: {counts}")
        width = max(len(r) for r in [*rows, "estimator (test)"])
        widths = [max(len(b), *(len(cells.get((r, b), "")) for r in rows)) for b in backends]
        header = "  ".join(b.ljust(w) for b, w in zip(backends, widths, strict=True))
        lines.append(f"  {'estimator (test)'.ljust(width)}  {header}".rstrip())
        for row in rows:
            shown = "  ".join(
                cells.get((row, b), "-").ljust(w) for b, w in zip(backends, widths, strict=True)
            )
            lines.append(f"  {row.ljust(width)}  {shown}".rstrip())
    warnings = _version_warnings(records)
    if warnings:
        lines.append("version warnings (estimator: saved with -> loaded with):")
        for estimator, original, current, count, where in warnings:
            times = f" x{count}" if count > 1 else ""
            lines.append(f"  {estimator}: {original} -> {current}{times} in {', '.join(where)}")
    return lines


def _counts(records: Sequence[Record]) -> str:
    """``82 passed, 1 passed (state only), 3 xfailed (2 dump_error, 1 method_error), 2 skipped
    (2 unsupported)``: grouped by what pytest made of each (``details.pytest_outcome``), so the
    numbers add up to pytest's own line; by kind alone for records that do not say (older
    reports)."""
    order = [k.value for k in OutcomeKind]
    by_result: dict[str, dict[str, int]] = {}
    for record in records:
        outcome = record.outcome
        kind = outcome.kind.value + outcome.qualifier
        result = outcome.details.get("pytest_outcome")
        if result is None or (result == "passed" and kind.startswith("passed")):
            result = kind  # a pass is its own group ("passed", "passed (state only)")
        group = by_result.setdefault(result, {})
        group[kind] = group.get(kind, 0) + 1

    def rank(result: str) -> tuple[int, str]:
        first = result.split(" ")[0]
        if first in order:
            return (order.index(first), result)
        return (len(order) + ["failed", "error", "xfailed", "skipped"].index(result), result)

    parts = []
    for result in sorted(by_result, key=rank):
        kinds = by_result[result]
        total = sum(kinds.values())
        if list(kinds) == [result]:
            parts.append(f"{total} {result}")
            continue
        inner = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: rank(kv[0])))
        parts.append(f"{total} {result} ({inner})")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# markdown


def markdown_report(
    records: Sequence[Record], *, backend_order: Sequence[str] | None = None
) -> str:
    """The markdown text of ``write_markdown_report``."""
    records = list(records)
    lines = ["## pytest-persist", ""]
    if not records:
        lines.append("No round trips or checks ran.")
        return "\n".join(lines) + "\n"
    for mode, title in (("roundtrip", "Round trips"), ("check", "Stored artifacts checked")):
        chosen = [r for r in records if r.mode == mode]
        if not chosen:
            continue
        rows, backends, outcomes = _matrix(chosen, backend_order)
        lines += [f"### {title}", "", f"{_counts(chosen)}", ""]
        lines.append("| estimator (test) | " + " | ".join(backends) + " |")
        lines.append("|---|" + "---|" * len(backends))
        for row in rows:
            shown = [
                f"{_symbol(outcomes[(row, b)])} {_md(_cell_text(outcomes[(row, b)]))}"
                if (row, b) in outcomes
                else ""
                for b in backends
            ]
            lines.append(f"| {_md(row)} | " + " | ".join(shown) + " |")
        lines.append("")
    warnings = _version_warnings(records)
    if warnings:
        lines += ["### Version warnings", ""]
        lines.append("| estimator | saved with | loaded with | times | where |")
        lines.append("|---|---|---|---|---|")
        for estimator, original, current, count, where in warnings:
            lines.append(
                f"| {_md(estimator)} | {_md(original)} | {_md(current)} | {count} | "
                f"{_md(', '.join(where))} |"
            )
        lines.append("")
    unsigned = loaded_unsigned(records)
    if unsigned:
        lines += [
            "### Loaded WITHOUT a trusted signature",
            "",
            f"{len(unsigned)} stored artifact(s) were unpickled only because of "
            "`--persist-trust-unsigned`: no key you trust signed them.",
            "",
            "| test | backend | why |",
            "|---|---|---|",
        ]
        for record in unsigned:
            outcome = record.outcome
            lines.append(
                f"| {_md(outcome.test_id)} | {_md(outcome.backend)} | "
                f"{_md(outcome.details['trust_warning'])} |"
            )
        lines.append("")
    problems = [r for r in records if r.outcome.failed]
    if problems:
        lines += ["### Problems", ""]
        for record in problems:
            outcome = record.outcome
            lines.append(f"<details><summary>{_html(outcome.headline())} ({record.mode})</summary>")
            lines += ["", "```", outcome.message().replace("```", "'''"), "```", "</details>", ""]
    return "\n".join(lines) + "\n"


def loaded_unsigned(records: Sequence[Record]) -> list[Record]:
    """The checks that loaded a stored entry no trusted key signed, because of
    ``--persist-trust-unsigned`` (their outcome's ``details["trust_warning"]`` says why)."""
    return [r for r in records if r.mode == "check" and "trust_warning" in r.outcome.details]


def write_markdown_report(
    path: Path | str, records: Sequence[Record], *, backend_order: Sequence[str] | None = None
) -> Path:
    """Write the markdown report (fit for ``$GITHUB_STEP_SUMMARY``) atomically."""
    return _write_atomic(Path(path), markdown_report(records, backend_order=backend_order))


def _symbol(outcomes: list[Outcome]) -> str:
    """The worst of a cell's outcomes: a failure, else a pass that compared nothing."""
    failed = [o for o in outcomes if o.failed]
    if failed:
        return _SYMBOLS[failed[0].kind]
    if any(o.vacuous for o in outcomes):
        return "🟡"
    return _SYMBOLS[outcomes[0].kind]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
        os.chmod(path, 0o644)  # mkstemp makes it private; a report is meant to be read
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return path
