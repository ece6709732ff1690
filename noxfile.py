"""nox sessions for pytest-persist.

``nox`` runs the tests on every Python. Across versions (default=False, see the README):
``nox -s matrix`` runs the examples in every version row; ``nox -s atlas`` saves the compat
set in every row, checks it in the rows the chain says and writes ``docs/atlas/``.
nox never downloads an interpreter here; the pyenv ones are put on PATH.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent))  # this checkout's helpers, not an installed copy
from pytest_persist import nox as persist

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
ROWS = persist.default_rows()
# The atlas covers every row; PERSIST_ATLAS_ROWS=id,id narrows it (and PERSIST_ATLAS_ESTIMATORS
# the estimator set, see examples/compat) for a quick run, which then writes atlas/ instead of
# the published docs/atlas/.
_WANTED = [r for r in os.environ.get("PERSIST_ATLAS_ROWS", "").split(",") if r]
_UNKNOWN = sorted(set(_WANTED) - {row.id for row in ROWS})
if _UNKNOWN:
    raise SystemExit(
        f"PERSIST_ATLAS_ROWS: no row {', '.join(_UNKNOWN)}; rows: {[r.id for r in ROWS]}"
    )
COMPAT_ROWS = [r for r in ROWS if not _WANTED or r.id in _WANTED]
CHAIN = persist.compat_chain(COMPAT_ROWS)
WORK = Path(__file__).parent / ".persist"  # store/, reports/ and the run's start time
FULL = not _WANTED and os.environ.get("PERSIST_ATLAS_ESTIMATORS", "all") == "all"
ATLAS_OUT = Path(__file__).parent / ("docs/atlas" if FULL else "atlas")
MISSING = persist.add_pyenv_to_path([*PYTHONS, *(row.python for row in ROWS)])
EXTRAS = [*persist.DEFAULT_EXTRAS, "xdist"]


def _row(session: nox.Session, sklearn: str, numpy: str) -> persist.VersionRow:
    row = persist.row_for(ROWS, str(session.python), sklearn, numpy)
    if row.python in MISSING:
        session.error(f"row {row.id} needs Python {row.python}: not on PATH nor under pyenv")
    return row


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite and the bundled examples, on every supported Python."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)
    session.run("pytest", "examples", "-p", "no:cacheprovider")


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(default=False)
@persist.parametrize_rows(ROWS)
def matrix(session: nox.Session, sklearn: str, numpy: str) -> None:
    """The examples with the plugin in one version row (same-environment round trips)."""
    persist.install_row(session, _row(session, sklearn, numpy), EXTRAS)
    session.run("python", "-m", "pytest", "examples", "-p", "no:cacheprovider", *session.posargs)


@nox.session(default=False)
@persist.parametrize_rows(COMPAT_ROWS)
def save(session: nox.Session, sklearn: str, numpy: str) -> None:
    """Save the compat set (examples/compat) under one row, with its round-trip report."""
    row = _row(session, sklearn, numpy)
    if row.id == COMPAT_ROWS[0].id:  # the first session of an atlas run
        persist.start_run(WORK)
    start = time.perf_counter()
    persist.install_row(session, row, EXTRAS)
    installed = time.perf_counter()
    report = WORK / "reports" / f"{row.id}__{row.id}.json"
    session.env["PERSIST_ATLAS_ESTIMATORS"] = os.environ.get("PERSIST_ATLAS_ESTIMATORS", "all")
    persist.save_artifacts(
        session, row, WORK / "store", "-n", "2", *session.posargs, report_path=report
    )
    done = time.perf_counter()
    session.log(
        f"atlas: {row.id} installed in {installed - start:.0f} s, saved in "
        f"{done - installed:.0f} s; {persist.progress(WORK, CHAIN)}"
    )


@nox.session(default=False, requires=["save"])
@persist.parametrize_rows(COMPAT_ROWS)
def compat(session: nox.Session, sklearn: str, numpy: str) -> None:
    """Check, under one row, the artifacts of the rows the chain loads into it."""
    row = _row(session, sklearn, numpy)
    persist.install_row(session, row, EXTRAS)
    saved = persist.loads_into(row, CHAIN)
    persist.check_artifacts(
        session,
        row,
        WORK / "store",
        WORK / "reports",
        *session.posargs,
        saved=saved,
        workers=2,
        on_report=lambda path: session.log(
            f"atlas: checked {path.stem.replace('__', ' -> ')}; {persist.progress(WORK, CHAIN)}"
        ),
    )


def _publish(session: nox.Session) -> None:
    reports, missing = persist.chain_reports(WORK / "reports", CHAIN)
    for path in missing:
        session.warn(f"no report {path.name}: run its save/compat session")
    seconds = persist.run_seconds(WORK)
    written = persist.write_atlas(reports, ATLAS_OUT, COMPAT_ROWS, run_seconds=seconds)
    session.log("atlas: " + ", ".join(str(path) for path in written.values()))
    if FULL and not missing:
        changed = persist.update_readme(written["json"], Path(__file__).parent / "README.md")
        session.log(f"README.md findings {'regenerated' if changed else 'unchanged'}")


@nox.session(python=False, default=False, requires=["compat"])
def atlas(session: nox.Session) -> None:
    """Save in every row, check every pair, write the atlas (docs/atlas/ for the full run)."""
    _publish(session)


@nox.session(python=False, default=False)
def publish(session: nox.Session) -> None:
    """Write the atlas from the reports already in .persist/reports (CI's assembling job)."""
    _publish(session)
