"""Writing the atlas (``atlas.json``, ``atlas.md``, ``atlas.html``) and the README's findings.

    python -m pytest_persist.atlas.publish findings docs/atlas/atlas.json README.md

rewrites the region of README.md between ``<!-- atlas-findings:start -->`` and
``<!-- atlas-findings:end -->`` from the atlas, so the README says what the atlas found.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .aggregate import ATLAS_FORMAT, aggregate, merge_reports, status_of
from .break_points import group_break_points
from .html_page import render_atlas_html
from .markdown_page import render_atlas_markdown
from .rows import VersionRow

__all__ = ["FINDINGS_END", "FINDINGS_START", "render_findings", "update_readme", "write_atlas"]

FINDINGS_START = "<!-- atlas-findings:start (generated from the atlas; do not edit) -->"
FINDINGS_END = "<!-- atlas-findings:end -->"


def write_atlas(
    reports: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    rows: Sequence[VersionRow] = (),
    *,
    run_seconds: float | None = None,
    generated: str | None = None,
) -> dict[str, Path]:
    """Merge ``reports``; write ``atlas.json``, ``atlas.md`` and ``atlas.html`` into ``out_dir``.

    ``generated`` defaults to now (UTC); ``run_seconds`` is the measured time of the run.
    """
    stamp = generated or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    atlas = aggregate(merge_reports(reports, rows), generated=stamp, run_seconds=run_seconds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "json": out / "atlas.json",
        "markdown": out / "atlas.md",
        "html": out / "atlas.html",
    }
    contents = {
        # one cell per line: reviewable diffs, a small file
        "json": _json_lines(atlas),
        "markdown": render_atlas_markdown(atlas),
        "html": render_atlas_html(atlas),
    }
    for key, path in written.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(contents[key], encoding="utf-8")
        tmp.replace(path)
    return written


def _json_lines(atlas: Mapping[str, Any]) -> str:
    """JSON with each top-level key, message, cell and break point on a line of its own."""
    parts = []
    for key, value in atlas.items():
        if isinstance(value, list) and value and key in ("cells", "messages"):
            body = ",\n".join(json.dumps(v, ensure_ascii=False) for v in value)
            parts.append(f"{json.dumps(key)}: [\n{body}\n]")
        elif key == "break_points":
            inner = []
            for sub, entries in value.items():
                if isinstance(entries, list):
                    body = ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries)
                    inner.append(f"{json.dumps(sub)}: [\n{body}\n]")
                else:
                    inner.append(f"{json.dumps(sub)}: {json.dumps(entries)}")
            parts.append(f"{json.dumps(key)}: {{\n" + ",\n".join(inner) + "\n}")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def read_atlas(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A published ``atlas.json``; ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    try:
        atlas = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable atlas.json ({exc})") from None
    if not isinstance(atlas, dict) or atlas.get("format") != ATLAS_FORMAT:
        raise ValueError(f"{path}: not a pytest-persist atlas (no format {ATLAS_FORMAT!r})")
    return atlas


def render_findings(atlas: Mapping[str, Any], link: str = "docs/atlas/atlas.md") -> str:
    """The README's findings section, as markdown, from a published atlas."""
    rows = list(atlas.get("environments", {}))
    points = atlas.get("break_points", {})
    checked = points.get("checked", {})
    statuses = Counter(status_of(cell[3]) for cell in atlas.get("cells", []))
    seconds = atlas.get("run_seconds")
    took = f" in {seconds / 60:.0f} minutes" if isinstance(seconds, int | float) else ""
    out = [
        f"From the atlas generated {atlas.get('generated', '?')}{took} ([atlas.md]({link}), "
        f"[atlas.html]({link.replace('.md', '.html')})): {len(rows)} rows "
        f"({', '.join(rows)}), {len(atlas.get('pairs', []))} saved -> loaded pairs, "
        f"{len(atlas.get('estimators', []))} estimators, {len(atlas.get('backends', []))} "
        f"backends ({', '.join(atlas.get('backends', []))}): {len(atlas.get('cells', []))} "
        "cells, "
        + ", ".join(f"{count} {status}" for status, count in statuses.most_common())
        + ".",
        "",
    ]
    for key, what in (("upgrades", "upgrading"), ("downgrades", "downgrading from the newest")):
        entries = points.get(key, [])
        out.append(
            f"- **{what.capitalize()}:** {len(entries)} of {checked.get(key, 0)} (estimator, "
            "backend, saved-under row) that pass where saved stop passing"
            + (":" if entries else ".")
        )
        groups = group_break_points(entries, rows)
        biggest = sorted(groups, key=lambda g: -len(g.estimators))[:6]
        for group in biggest:
            names = ", ".join(group.estimators[:5])
            more = f" and {len(group.estimators) - 5} more" if len(group.estimators) > 5 else ""
            out.append(
                f"  - {group.backend}, saved under {group.saved}: {group.how} under "
                f"{group.breaks_at} (last passed under {group.last_passed}) for "
                f"{len(group.estimators)} estimators ({names}{more})"
            )
        if len(groups) > len(biggest):
            out.append(f"  - and {len(groups) - len(biggest)} smaller groups in the atlas")
    by_backend: dict[str, Counter[str]] = {}
    backends = atlas.get("backends", [])
    pairs = atlas.get("pairs", [])
    for pair, _est, be, code, _m, _n in atlas.get("cells", []):
        if pairs[pair][0] != pairs[pair][1]:
            by_backend.setdefault(backends[be], Counter())[status_of(code)] += 1
    if by_backend:
        out.append("- **Across rows, by backend** (cells of pairs between different rows):")
        for backend, counts in by_backend.items():
            total = sum(counts.values())
            passing = counts["passed"] + counts["warned"]
            rest = ", ".join(f"{n} {s}" for s, n in counts.most_common() if s != "passed")
            out.append(
                f"  - {backend}: {passing} of {total} pass (passed or warned)"
                + (f"; {rest}" if rest else "")
            )
    return "\n".join(out) + "\n"


def update_readme(atlas_path: str | os.PathLike[str], readme: str | os.PathLike[str]) -> bool:
    """Replace the findings region of ``readme`` with ``render_findings``; True if it changed.

    Raises ``ValueError`` naming the README if it has no (or a broken) findings region.
    """
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(FINDINGS_START), text.find(FINDINGS_END)
    if start < 0 or end < start:
        raise ValueError(
            f"{readme}: no findings region ({FINDINGS_START!r} ... {FINDINGS_END!r}) to replace"
        )
    body = render_findings(read_atlas(atlas_path))
    new = text[: start + len(FINDINGS_START)] + "\n" + body + text[end:]
    if new == text:
        return False
    readme.write_text(new, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_persist.atlas.publish")
    commands = parser.add_subparsers(dest="command", required=True)
    findings = commands.add_parser("findings", help="regenerate the README's findings")
    findings.add_argument("atlas_json")
    findings.add_argument("readme")
    build = commands.add_parser("build", help="merge reports (files or folders) into an atlas")
    build.add_argument("reports", nargs="+")
    build.add_argument("--out", required=True)
    build.add_argument("--run-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    if args.command == "findings":
        changed = update_readme(args.atlas_json, args.readme)
        print(f"{args.readme}: findings {'updated' if changed else 'unchanged'}")
    else:
        written = write_atlas(args.reports, args.out, run_seconds=args.run_seconds)
        print("atlas: " + ", ".join(map(str, written.values())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
