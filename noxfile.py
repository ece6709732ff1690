"""nox sessions for pytest-persist.

``nox`` runs the tests on every Python. Across versions (default=False, see the README):
``nox -s matrix`` runs the examples in every version row; ``nox -s atlas`` saves the compat
models in every compat row, checks them in the rows the chain says and writes ``atlas/``.
nox never downloads an interpreter here; the pyenv ones are put on PATH.
"""

from __future__ import annotations

import os
import sys
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
# Every check is a fresh interpreter importing scikit-learn (~5 s here), so the chain runs over
# six of the rows: 1.0, 1.2 (old tree format), 1.4, 1.6 on numpy 2, the newest on numpy 1 and 2.
COMPAT_ROWS = [r for r in ROWS if r.sklearn in {"1.0", "1.2", "1.4", "1.6", "1.9"}]
CHAIN = persist.compat_chain(COMPAT_ROWS)
WORK = Path(__file__).parent / ".persist"  # store/ and reports/; the atlas goes to atlas/
MISSING = persist.add_pyenv_to_path([*PYTHONS, *(row.python for row in ROWS)])
EXTRAS = [*persist.DEFAULT_EXTRAS, "xdist"]


def _row(session: nox.Session, sklearn: str, numpy: str) -> persist.VersionRow:
    return persist.row_for(ROWS, str(session.python), sklearn, numpy)


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
    """Save the compat models (examples/compat) under one row, with their round-trip report."""
    row = _row(session, sklearn, numpy)
    persist.install_row(session, row, EXTRAS)
    report = WORK / "reports" / f"{row.id}__{row.id}.json"
    persist.save_artifacts(session, row, WORK / "store", *session.posargs, report_path=report)


@nox.session(default=False, requires=["save"])
@persist.parametrize_rows(COMPAT_ROWS)
def compat(session: nox.Session, sklearn: str, numpy: str) -> None:
    """Check, under one row, the artifacts of the rows the chain loads into it."""
    row = _row(session, sklearn, numpy)
    persist.install_row(session, row, EXTRAS)
    saved = persist.loads_into(row, CHAIN)
    persist.check_artifacts(
        session, row, WORK / "store", WORK / "reports", *session.posargs, saved=saved, workers=2
    )


@nox.session(python=False, default=False, requires=["compat"])
def atlas(session: nox.Session) -> None:
    """Merge the reports into atlas/atlas.md, atlas.html and atlas.json."""
    reports, missing = persist.chain_reports(WORK / "reports", CHAIN)
    for path in missing:
        session.warn(f"no report {path.name}: run its save/compat session")
    written = persist.write_atlas(reports, "atlas", COMPAT_ROWS)
    session.log("atlas: " + ", ".join(str(path) for path in written.values()))
