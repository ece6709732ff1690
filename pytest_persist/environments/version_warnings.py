"""scikit-learn's version warnings while loading: recognised, recorded, or raised.

Nothing here imports scikit-learn: warnings are recognised by their attributes (scikit-learn
>= 1.3's ``InconsistentVersionWarning``) or their message (the ``UserWarning`` before it).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "VERSION_WARNING_MODES",
    "VersionSkewError",
    "VersionWarningRecord",
    "capture_version_warnings",
    "parse_version_warning",
]

VERSION_WARNING_MODES: tuple[str, ...] = ("record", "error")


@dataclass
class VersionWarningRecord:
    """One version warning raised while loading (InconsistentVersionWarning or the older one)."""

    estimator: str
    original_version: str | None
    current_version: str | None
    category: str
    message: str


# scikit-learn < 1.3 warned with a plain UserWarning built from this text (the version numbers
# themselves contain dots, so the current version ends at the ". This might" that follows it).
_OLD_STYLE = re.compile(
    r"Trying to unpickle estimator (?P<estimator>\S+) from version (?P<original>\S+?)"
    r" when using version (?P<current>\S+?)\.\s+This might lead to breaking code"
)


class VersionSkewError(Exception):
    """Raised in ``error`` mode at the first version warning seen while loading."""

    def __init__(self, record: VersionWarningRecord) -> None:
        self.record = record
        super().__init__(
            f"estimator {record.estimator} was saved with scikit-learn "
            f"{record.original_version} and is being loaded with scikit-learn "
            f"{record.current_version} (--persist-version-warning=error)"
        )


def parse_version_warning(
    message: Warning | str, category: type[Warning] | None = None
) -> VersionWarningRecord | None:
    """A record if ``message`` is a scikit-learn version warning, else None.

    Recognises ``InconsistentVersionWarning`` (scikit-learn >= 1.3) by its attributes and the
    plain ``UserWarning`` of older releases by its text.
    """
    if category is None:
        category = type(message) if isinstance(message, Warning) else UserWarning
    estimator = getattr(message, "estimator_name", None)
    original = getattr(message, "original_sklearn_version", None)
    current = getattr(message, "current_sklearn_version", None)
    text = str(message)
    if estimator is not None and (original is not None or current is not None):
        return VersionWarningRecord(
            estimator=str(estimator),
            original_version=None if original is None else str(original),
            current_version=None if current is None else str(current),
            category=category.__name__,
            message=text,
        )
    if not issubclass(category, UserWarning):
        return None
    match = _OLD_STYLE.search(text)
    if match is None:
        return None
    return VersionWarningRecord(
        estimator=match["estimator"],
        original_version=match["original"],
        current_version=match["current"],
        category=category.__name__,
        message=text,
    )


@contextmanager
def capture_version_warnings(
    mode: Literal["record", "error"] | str = "record",
    *,
    on_record: Callable[[VersionWarningRecord], None] | None = None,
) -> Iterator[list[VersionWarningRecord]]:
    """Collect every scikit-learn version warning raised inside the block.

    Yields a list that fills with one ``VersionWarningRecord`` per warning, repeats included
    (nested estimators each warn). In ``error`` mode the first one raises ``VersionSkewError``
    from the ``warnings.warn`` call, which aborts the load. ``on_record`` is called with each
    record as soon as it is seen (before raising), so a caller can persist it. Every other
    warning is re-emitted untouched, under the caller's filters, when the block ends.
    """
    if mode not in VERSION_WARNING_MODES:
        raise ValueError(
            f"unknown version-warning mode {mode!r}; expected one of {VERSION_WARNING_MODES}"
        )
    records: list[VersionWarningRecord] = []
    others: list[tuple[Any, ...]] = []

    def show(message: Any, category: type[Warning], filename: str, lineno: int, *rest: Any) -> None:
        record = parse_version_warning(message, category)
        if record is None:
            others.append((message, category, filename, lineno))
            return
        records.append(record)
        if on_record is not None:
            on_record(record)
        if mode == "error":
            raise VersionSkewError(record)

    failed = True
    try:
        with warnings.catch_warnings():
            # "always": a nested estimator warning from the same line must not be deduplicated.
            warnings.simplefilter("always")
            warnings.showwarning = show
            yield records
        failed = False
    finally:
        for message, category, filename, lineno in others:
            if not failed:
                warnings.warn_explicit(message, category, filename, lineno)
                continue
            # An exception is already on its way out: an "error" filter must not replace it.
            with contextlib.suppress(Warning):
                warnings.warn_explicit(message, category, filename, lineno)
