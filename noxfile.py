"""nox sessions for pytest-persist.

The pyenv interpreters are found when their ``bin`` folders are on PATH (see the README);
nox never downloads an interpreter here (``--download-python never`` is the default below).
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


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
