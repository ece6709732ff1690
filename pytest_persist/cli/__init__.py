"""``pytest-persist``: the command line, for the model files users already have.

One module per command: ``inspect`` says what a model file (or a store entry) is without
loading it; ``adopt`` turns a model file into a store entry; ``check`` runs
``pytest --persist-load`` on a store in an empty folder; ``bisect`` finds the package release
that broke each entry failing here. argparse, from the standard library: the three commands
need subcommands, help and examples, no more (click would add 1.1 MB to every install of a
pytest plugin, typer 26 MB and Python >= 3.11).

It imports no pytest: ``check`` and ``bisect`` run pytest in child processes.
"""

from __future__ import annotations

import argparse
import sys

from . import adopt_command, bisect_command, check_command, inspect_command

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-persist",
        description=(
            "The model files you already have: what a file is (inspect), a file as a store "
            "entry checked anywhere (adopt), whether a store of saved models still checks here "
            "(check), and which package release broke them (bisect)."
        ),
        epilog=(
            "examples:\n  pytest-persist inspect model.joblib\n"
            "  pytest-persist adopt model.joblib --data X.npy --store artifacts\n"
            "  pytest-persist check artifacts\n"
            "  pytest-persist bisect artifacts --report bisect.json\n\n"
            "pytest-persist COMMAND --help shows each command's options and examples."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"pytest-persist {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    for command in (inspect_command, adopt_command, check_command, bisect_command):
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("pytest-persist: interrupted", file=sys.stderr)
        return 130
