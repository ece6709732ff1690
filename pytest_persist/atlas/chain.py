"""The save -> load chain: which row's artifacts each row checks, and the reports that makes."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, NamedTuple

from .rows import RowError, VersionRow, _series

__all__ = ["CompatPair", "chain_reports", "compat_chain", "loads_into"]


class CompatPair(NamedTuple):
    """Artifacts saved under ``saved`` are loaded and checked under ``loaded``."""

    saved: VersionRow
    loaded: VersionRow

    @property
    def id(self) -> str:
        return f"{self.saved.id}->{self.loaded.id}"


def compat_chain(
    rows: Iterable[VersionRow], mode: Literal["forward", "all"] = "forward"
) -> list[CompatPair]:
    """Which row's artifacts each row loads.

    ``"all"``: every ordered pair of distinct rows. ``"forward"``: every older row into every
    newer one (ordered by scikit-learn, then numpy, then Python), the newest into every older
    one (the downgrades users attempt when an upgrade goes wrong), and both directions between rows
    sharing a scikit-learn series (numpy 2 -> 1 alone breaks some models).
    """
    ordered = sorted(rows, key=VersionRow.sort_key)
    ids = Counter(row.id for row in ordered)
    duplicated = [row_id for row_id, count in ids.items() if count > 1]
    if duplicated:
        raise RowError(f"duplicate row ids in the chain: {', '.join(duplicated)}")
    if mode == "all":
        return [CompatPair(a, b) for a in ordered for b in ordered if a is not b]
    if mode != "forward":
        raise ValueError(f"unknown chain mode {mode!r}; use 'forward' or 'all'")
    pairs = [CompatPair(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]]
    pairs.extend(CompatPair(ordered[-1], older) for older in ordered[:-1])
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if _series(a.sklearn) == _series(b.sklearn):
                pairs.append(CompatPair(b, a))
    return list(dict.fromkeys(pairs))


def loads_into(row: VersionRow, chain: Iterable[CompatPair]) -> list[VersionRow]:
    """The rows whose artifacts ``row`` checks, in chain order."""
    return [pair.saved for pair in chain if pair.loaded.id == row.id]


def chain_reports(
    report_dir: str | os.PathLike[str], chain: Iterable[CompatPair]
) -> tuple[list[Path], list[Path]]:
    """The reports a chain writes into ``report_dir``, as (present, missing).

    One ``<row id>__<row id>.json`` per row (its saving run) and one ``<saved>__<loaded>.json``
    per pair, as ``save_artifacts`` and ``check_artifacts`` name them in the noxfiles; reports
    of rows or pairs no longer in the chain are left out.
    """
    folder = Path(report_dir)
    chain = list(chain)
    rows = {row.id: row for pair in chain for row in pair}
    names = [f"{i}__{i}.json" for i in rows] + [f"{p.saved.id}__{p.loaded.id}.json" for p in chain]
    paths = [folder / name for name in dict.fromkeys(names)]
    return [p for p in paths if p.is_file()], [p for p in paths if not p.is_file()]
