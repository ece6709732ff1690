"""The result of one round trip or one cross-environment check, kept pytest-free and JSON-able."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..environments.version_warnings import VersionWarningRecord


class OutcomeKind(str, enum.Enum):
    """How a round trip ended; the kinds are kept apart so users can tell them apart."""

    PASSED = "passed"
    MISMATCH = "mismatch"
    DUMP_ERROR = "dump_error"
    LOAD_ERROR = "load_error"
    METHOD_ERROR = "method_error"
    UNSUPPORTED = "unsupported"
    UNAVAILABLE = "unavailable"
    #: The check was asked for something it cannot do (a class instead of an instance, no
    #: backend, data the estimator cannot be fitted on): not a persistence failure, but a
    #: failed item all the same, recorded so that reports hold every item.
    USAGE_ERROR = "usage_error"

    @property
    def failed(self) -> bool:
        return self in FAILED_KINDS

    def __str__(self) -> str:
        return self.value


FAILED_KINDS = frozenset(
    {
        OutcomeKind.MISMATCH,
        OutcomeKind.DUMP_ERROR,
        OutcomeKind.LOAD_ERROR,
        OutcomeKind.METHOD_ERROR,
        OutcomeKind.USAGE_ERROR,
    }
)


@dataclass
class Difference:
    """One prediction method (or one part of its output) that differs after loading."""

    method: str
    message: str
    path: str = ""
    max_abs: float | None = None
    max_rel: float | None = None
    n_different: int | None = None
    n_total: int | None = None
    tolerated: bool = False

    def describe(self) -> str:
        where = f"{self.method}{self.path}"
        parts = [f"{where}: {self.message}"]
        if self.n_different is not None and self.n_total is not None:
            parts.append(f"{self.n_different} of {self.n_total} elements differ")
        if self.max_abs is not None:
            parts.append(f"max abs diff {self.max_abs:.3g}")
        if self.max_rel is not None:
            parts.append(f"max rel diff {self.max_rel:.3g}")
        return "; ".join(parts)


@dataclass
class Outcome:
    """Everything known about one estimator going through one backend."""

    kind: OutcomeKind
    estimator: str
    backend: str
    test_id: str = ""
    error: str = ""
    compared_methods: list[str] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    state_differences: list[str] = field(default_factory=list)
    version_warnings: list[VersionWarningRecord] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    #: The tolerances this comparison applied: rtol, atol, exact, max_label_flips.
    comparison: dict[str, Any] = field(default_factory=dict)
    dump_seconds: float | None = None
    load_seconds: float | None = None
    artifact_bytes: int | None = None
    loaded: Any = field(default=None, repr=False, compare=False)
    #: Where the artifact was written (a temporary file; not part of reports).
    artifact: Path | None = field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.kind.failed

    def headline(self) -> str:
        """One line naming estimator, backend and what happened."""
        return f"{self.estimator} via {self.backend}: {self.kind.value}{self.qualifier}"

    @property
    def state_only(self) -> str:
        """Why a pass compared no method (empty when it compared some, or did not pass)."""
        return str(self.details.get("state_only", "")) if self.kind is OutcomeKind.PASSED else ""

    @property
    def identity(self) -> str:
        """Why a pass compared only outputs equal to the input X (empty otherwise): the
        model may have done nothing, e.g. an encoder that found no column to encode."""
        return str(self.details.get("identity", "")) if self.kind is OutcomeKind.PASSED else ""

    @property
    def vacuous(self) -> str:
        """Why a pass proves little (state only, or identity); ``--persist-strict`` fails it."""
        return self.state_only or self.identity

    @property
    def qualifier(self) -> str:
        """`` (state only)`` or `` (identity)`` after a pass that proves little, else empty."""
        if self.state_only:
            return " (state only)"
        return " (identity)" if self.identity else ""

    def message(self) -> str:
        """A readable, multi-line explanation fit for a pytest failure."""
        lines = [self.headline()]
        if self.error:
            lines.append(f"  {self.error}")
        lines.extend(f"  {d.describe()}" for d in self.differences if not d.tolerated)
        lines.extend(f"  tolerated: {d.describe()}" for d in self.differences if d.tolerated)
        if self.state_differences:
            lines.append("  fitted state differs after loading (predictions on X may not show it):")
            lines.extend(f"    {path}" for path in self.state_differences[:20])
            if len(self.state_differences) > 20:
                lines.append(f"    ... and {len(self.state_differences) - 20} more")
        lines.extend(f"  {line}" for line in self.version_warning_lines())
        if self.compared_methods:
            lines.append(f"  compared: {', '.join(self.compared_methods)}")
        elif self.state_only:
            lines.append(f"  {self.state_only}")
        if self.identity:
            lines.append(f"  {self.identity}")
        grouped: dict[str, list[str]] = {}
        for method, reason in self.not_compared.items():
            grouped.setdefault(reason, []).append(method)
        for reason, methods in grouped.items():
            lines.append(f"  not compared: {', '.join(methods)} ({reason})")
        if self.versions:
            shown = ", ".join(f"{k} {v}" for k, v in self.versions.items())
            lines.append(f"  versions: {shown}")
        return "\n".join(lines)

    def version_warning_lines(self) -> list[str]:
        """The version warnings, one line per (original, current) pair: a 100-tree forest
        warns 102 times (the forest, its template tree and every tree), for one fact."""
        groups: dict[tuple[str | None, str | None], list[str]] = {}
        for warning in self.version_warnings:
            key = (warning.original_version, warning.current_version)
            groups.setdefault(key, []).append(warning.estimator)
        lines = []
        for (original, current), names in groups.items():
            counted = Counter(names)
            shown = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counted.items())
            lines.append(
                f"version warning: saved with scikit-learn {original}, loaded with {current} "
                f"({len(names)} warning(s): {shown})"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (the loaded model and the artifact path are left out)."""
        record = asdict(replace(self, loaded=None, artifact=None))  # no deep copy of the model
        record.pop("loaded", None)
        record.pop("artifact", None)
        record["kind"] = self.kind.value
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Outcome:
        data = dict(record)
        data["kind"] = OutcomeKind(data["kind"])
        data["differences"] = [Difference(**d) for d in data.get("differences", [])]
        data["version_warnings"] = [
            VersionWarningRecord(**w) for w in data.get("version_warnings", [])
        ]
        return cls(**data)


def by_reason(reasons: dict[str, str]) -> str:
    """``predict, predict_proba: ValueError: ...; score: ...``: methods that fail for the same
    reason are named together, so one cause reads once, not once per method."""
    grouped: dict[str, list[str]] = {}
    for method, reason in reasons.items():
        grouped.setdefault(reason, []).append(method)
    return "; ".join(f"{', '.join(methods)}: {reason}" for reason, methods in grouped.items())
