"""``pytest-persist check STORE``: ``pytest --persist-load=STORE`` in an empty folder."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import fail

_CHECK_EXAMPLES = """\
examples:
  pytest-persist check artifacts
  pytest-persist check artifacts -k forest --persist-report=report.json
  pytest-persist check artifacts --persist-trust-key=ci.key -n 2

Everything after STORE goes to pytest as it is. pytest runs with an empty temporary folder
as its root (an empty pytest.ini there), so the tests and the configuration of the project
in the current folder do not run; relative paths in the arguments are relative to the
current folder, as usual. The exit status is pytest's.
"""


def add_parser(commands: Any) -> None:
    """Add the command to ``commands`` (argparse sub-parsers)."""
    check = commands.add_parser(
        "check",
        help="pytest --persist-load=STORE, in an empty folder",
        description="Check every entry of STORE here: pytest --persist-load=STORE [ARGS...].",
        epilog=_CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("store", metavar="STORE", help="a store directory (--persist-save's)")
    check.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="ARGS", help="for pytest")
    check.set_defaults(run=run)


def check_command(store: Path, pytest_args: list[str], *, python: str | None = None) -> list[str]:
    """The command line of ``check``, to run from an empty folder: ``pytest --persist-load``
    whose root is that folder, with an empty pytest.ini (no project configuration)."""
    return [
        python or sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--persist-load={store}",
        *pytest_args,
    ]


def run(args: argparse.Namespace) -> int:
    store = Path(args.store).resolve()
    from ..store.entries import StoreError, entry_dirs

    try:
        if not entry_dirs(store):
            return fail(f"{store}: an empty store, nothing to check")
    except StoreError as exc:
        return fail(str(exc))
    with tempfile.TemporaryDirectory(prefix="pytest-persist-check-") as folder:
        ini = Path(folder) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        command = check_command(store, [f"--rootdir={folder}", "-c", str(ini), *args.pytest_args])
        command.append(folder)  # collect nothing from the current folder
        return subprocess.call(command)
