"""Helpers for the project's and users' noxfiles: ``from pytest_persist import nox as persist``.

A thin re-export of the modules that do the work, one per concern:

- ``version_rows``: version rows, what each installs, which rows are impossible;
- ``compat_chain``: which row's artifacts each row checks;
- ``atlas``: reading reports and merging them into the atlas, aggregation and break points;
- ``atlas_markdown`` / ``atlas_html``: rendering it; ``atlas_publish``: writing it;
- ``nox_sessions``: installing a row, saving and checking artifacts in a nox session.

Importing this module never imports nox: only ``parametrize_rows`` does, lazily.
"""

from __future__ import annotations

from .atlas.aggregate import (
    ATLAS_FORMAT,
    REPORT_FORMAT,
    ReportError,
    aggregate,
    describe_record,
    merge_reports,
    read_report,
)
from .atlas.break_points import break_points
from .atlas.chain import CompatPair, chain_reports, compat_chain, loads_into
from .atlas.html_page import render_atlas_html
from .atlas.markdown_page import render_atlas_markdown
from .atlas.publish import render_findings, update_readme, write_atlas
from .atlas.rows import (
    BASE_REQUIREMENTS,
    DEFAULT_EXTRAS,
    EXTRA_BACKENDS,
    EXTRA_PACKAGES,
    EXTRA_REQUIREMENTS,
    RowError,
    RowInstall,
    VersionRow,
    default_rows,
    row_for,
    row_install_args,
    row_problems,
    validate_rows,
)
from .atlas.sessions import (
    IMPORT_CHECK,
    add_pyenv_to_path,
    check_artifacts,
    install_row,
    parametrize_rows,
    progress,
    run_seconds,
    save_artifacts,
    start_run,
)

__all__ = [
    "ATLAS_FORMAT",
    "BASE_REQUIREMENTS",
    "DEFAULT_EXTRAS",
    "EXTRA_BACKENDS",
    "EXTRA_PACKAGES",
    "EXTRA_REQUIREMENTS",
    "IMPORT_CHECK",
    "REPORT_FORMAT",
    "CompatPair",
    "ReportError",
    "RowError",
    "RowInstall",
    "VersionRow",
    "add_pyenv_to_path",
    "aggregate",
    "break_points",
    "chain_reports",
    "check_artifacts",
    "compat_chain",
    "default_rows",
    "describe_record",
    "install_row",
    "loads_into",
    "merge_reports",
    "parametrize_rows",
    "progress",
    "read_report",
    "render_atlas_html",
    "render_atlas_markdown",
    "render_findings",
    "row_for",
    "row_install_args",
    "row_problems",
    "run_seconds",
    "save_artifacts",
    "start_run",
    "update_readme",
    "validate_rows",
    "write_atlas",
]
