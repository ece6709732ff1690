"""The result of one round trip or one cross-environment check, kept pytest-free and JSON-able."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any


class OutcomeKind(str, enum.Enum):
    """How a round trip ended; the kinds are kept apart so users can tell them apart."""

    PASSED = "passed"
    MISMATCH = "mismatch"
    DUMP_ERROR = "dump_error"
    LOAD_ERROR = "load_error"
    METHOD_ERROR = "method_error"
    UNSUPPORTED = "unsupported"
    UNAVAILABLE = "unavailable"

    @property
    def failed(self) -> bool:
        return self in FAILED_KINDS

    def __str__(self) -> str:
        return self.value


FAILED_KINDS = frozenset(
    {OutcomeKind.MISMATCH, OutcomeKind.DUMP_ERROR, OutcomeKind.LOAD_ERROR, OutcomeKind.METHOD_ERROR}
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
class VersionWarningRecord:
    """One version warning raised while loading (InconsistentVersionWarning or the older one)."""

    estimator: str
    original_version: str | None
    current_version: str | None
    category: str
    message: str


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
    dump_seconds: float | None = None
    load_seconds: float | None = None
    artifact_bytes: int | None = None
    loaded: Any = field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.kind.failed

    def headline(self) -> str:
        """One line naming estimator, backend and what happened."""
        return f"{self.estimator} via {self.backend}: {self.kind.value}"

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
        for warning in self.version_warnings:
            lines.append(
                f"  version warning from {warning.estimator}: saved with "
                f"{warning.original_version}, loaded with {warning.current_version}"
            )
        if self.compared_methods:
            lines.append(f"  compared: {', '.join(self.compared_methods)}")
        for method, reason in self.not_compared.items():
            lines.append(f"  not compared: {method} ({reason})")
        if self.versions:
            shown = ", ".join(f"{k} {v}" for k, v in self.versions.items())
            lines.append(f"  versions: {shown}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (the loaded model is left out)."""
        record = asdict(replace(self, loaded=None))  # asdict would deep-copy the model
        record.pop("loaded", None)
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
