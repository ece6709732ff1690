"""Writing the atlas: ``atlas.json``, ``atlas.md`` and ``atlas.html`` side by side."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .atlas import merge_reports
from .atlas_html import render_atlas_html
from .atlas_markdown import render_atlas_markdown
from .version_rows import VersionRow

__all__ = ["write_atlas"]


def write_atlas(
    reports: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    rows: Sequence[VersionRow] = (),
) -> dict[str, Path]:
    """Merge ``reports``; write ``atlas.json``, ``atlas.md`` and ``atlas.html`` into ``out_dir``."""
    atlas = merge_reports(reports, rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "json": out / "atlas.json",
        "markdown": out / "atlas.md",
        "html": out / "atlas.html",
    }
    contents = {
        "json": json.dumps(atlas, indent=1, sort_keys=False, default=str),
        "markdown": render_atlas_markdown(atlas),
        "html": render_atlas_html(atlas),
    }
    for key, path in written.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(contents[key], encoding="utf-8")
        tmp.replace(path)
    return written
