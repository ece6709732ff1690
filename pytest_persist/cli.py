"""``pytest-persist``: the command line, for the model files users already have.

``inspect`` says what a model file (or a store entry) is without loading it; ``check`` runs
``pytest --persist-load`` on a store in an empty folder; ``bisect`` finds the package release
that broke each entry failing here. argparse, from the standard library: the three commands
need subcommands, help and examples, no more (click would add 1.1 MB to every install of a
pytest plugin, typer 26 MB and Python >= 3.11).

It imports no pytest: ``check`` and ``bisect`` run pytest in child processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main"]

#: Exit codes of every command besides its own (``check`` exits with pytest's code).
EXIT_BAD_INPUT = 2

_INSPECT_EXAMPLES = """\
examples:
  pytest-persist inspect model.joblib
  pytest-persist inspect artifacts/test_models.py--test_forest--joblib-1a2b3c4d5e6f7a8b
  pytest-persist inspect model.pkl --json > model.json

It never loads the file: pickles are read with inert stand-ins for every class they name (past
joblib's raw arrays and inside its object arrays), skops files through their schema.json and
skops.io.get_untrusted_types, ONNX files through the onnx package's protobuf parser. Which
classes and functions are dangerous is picklescan's verdict (its safety lists).

exit status: 0 nothing dangerous, 1 the file would run code it names (dangerous globals),
2 not a model file (or no such file / not an entry), 3 the file could not be read to its end.
"""

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

_BISECT_EXAMPLES = """\
examples:
  pytest-persist bisect artifacts
  pytest-persist bisect artifacts -k forest --report bisect.json
  pytest-persist bisect artifacts --python 3.10=/opt/py310/bin/python

For every entry that fails here (checked here first, with pytest --persist-load): rebuild
the environment it was saved in with uv from the installed set its entry.json records, check
it passes there (else: cannot be reproduced), then move the packages that differ, dependents
first, towards their versions here, and bisect the releases (patch releases included; from
PyPI's simple API, with wheels for the interpreter) of the one whose move breaks it. The
resolver moves what a pinned release needs; the report says what else moved. Environments
are cached under the user cache directory (--cache-dir); pytest-persist itself is installed
in each from the checkout or wheel this command runs from.

exit status: 0 the breaking release of every failing entry was found, 1 some entry could
not be bisected (not reproducible, no installed set recorded, an environment failed),
2 bad input (no store, no entry failing here, no uv, no interpreter for the saving Python).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-persist",
        description=(
            "The model files you already have: what a file is (inspect), whether a store of "
            "saved models still checks here (check), and which package release broke them "
            "(bisect)."
        ),
        epilog=(
            "examples:\n  pytest-persist inspect model.joblib\n  pytest-persist check artifacts\n"
            "  pytest-persist bisect artifacts --report bisect.json\n\n"
            "pytest-persist COMMAND --help shows each command's options and examples."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"pytest-persist {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    inspect = commands.add_parser(
        "inspect",
        help="what a model file or store entry is, without loading it",
        description=(
            "Say what a model file is without loading it: its format, the scikit-learn version "
            "it was saved with, the classes and functions it imports and which of those are "
            "dangerous; skops' untrusted types; ONNX opsets and operators. Given a store entry "
            "(a folder with entry.json), inspect its artifact and show the environment it was "
            "saved in."
        ),
        epilog=_INSPECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("path", metavar="FILE|ENTRY", help="a model file or a store entry folder")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead")
    inspect.add_argument(
        "--max-bytes",
        default="4GiB",
        metavar="SIZE",
        help="read at most this much of a compressed file's content (default 4GiB)",
    )
    inspect.set_defaults(run=_run_inspect)

    check = commands.add_parser(
        "check",
        help="pytest --persist-load=STORE, in an empty folder",
        description="Check every entry of STORE here: pytest --persist-load=STORE [ARGS...].",
        epilog=_CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("store", metavar="STORE", help="a store directory (--persist-save's)")
    check.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="ARGS", help="for pytest")
    check.set_defaults(run=_run_check)

    bisect = commands.add_parser(
        "bisect",
        help="find the package release that breaks each entry failing here",
        description=(
            "For every entry of STORE that fails here, find which package, and which release of "
            "it, breaks it, rebuilding environments with uv."
        ),
        epilog=_BISECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bisect.add_argument("store", metavar="STORE", help="a store directory (--persist-save's)")
    bisect.add_argument(
        "-k", dest="keyword", metavar="EXPR", help="only the entries pytest -k selects"
    )
    bisect.add_argument("--report", metavar="FILE.json", help="write one record per failing entry")
    bisect.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="VERSION=PATH",
        help="the interpreter to use for a Python version (repeatable); by default uv finds "
        "them (it never downloads one), and pyenv's are looked at",
    )
    bisect.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where environments are kept (default: the user cache directory's "
        "pytest-persist/environments)",
    )
    bisect.add_argument(
        "--max-environments",
        type=int,
        default=40,
        metavar="N",
        help="give up on an entry after building N environments for it (default 40)",
    )
    bisect.add_argument(
        "--timeout", type=float, default=600, metavar="SECONDS", help="per check (default 600)"
    )
    bisect.set_defaults(run=_run_bisect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("pytest-persist: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"pytest-persist: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# ----------------------------------------------------------------------------------------------
# inspect


def _parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6,
             "mib": 1024**2, "g": 1e9, "gb": 1e9, "gib": 1024**3}  # fmt: skip
    value = text.strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number) :]
    if unit not in units:
        raise ValueError(f"{text!r}: not a size (e.g. 512MiB, 4GiB)")
    return int(float(number) * units[unit])


def _run_inspect(args: argparse.Namespace) -> int:
    from .artifacts.formats import NotAModelFile, PayloadTooLarge
    from .artifacts.inspection import inspect_file

    try:
        max_bytes = _parse_size(args.max_bytes)
    except ValueError as exc:
        return _fail(f"--max-bytes {exc}")
    path = Path(args.path)
    entry: dict[str, Any] | None = None
    if path.is_dir():
        entry, artifact, problem = _entry_artifact(path)
        if problem:
            return _fail(problem)
        path = artifact
    try:
        inspection = inspect_file(path, max_bytes=max_bytes)
    except (NotAModelFile, PayloadTooLarge) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{path}: cannot be read ({exc})")
    if args.json:
        data = inspection.to_dict()
        if entry is not None:
            data["entry"] = entry
        print(json.dumps(data, indent=2))
    else:
        if entry is not None:
            print("\n".join(_entry_lines(entry)))
        print("\n".join(inspection.lines()))
        if entry is not None and entry["backend"] != inspection.format:
            print(f"  note: the entry's backend is {entry['backend']}")
    return inspection.exit_code


def _entry_artifact(directory: Path) -> tuple[dict[str, Any] | None, Path, str]:
    """The entry in ``directory`` (described), its artifact, or what is wrong."""
    from .store.entries import ENTRY_FILE, StoreError, TamperedArtifactError, read_entry

    if not (directory / ENTRY_FILE).is_file():
        return (
            None,
            directory,
            (
                f"{directory}: a folder without {ENTRY_FILE}, so not a store entry; inspect a "
                "model file, or one entry folder of a store"
            ),
        )
    try:
        entry = read_entry(directory)
    except StoreError as exc:
        return None, directory, str(exc)
    try:
        entry.verify()
        integrity = "every file matches its sha256 in entry.json"
    except TamperedArtifactError as exc:
        integrity = f"TAMPERED: {exc}"
    artifact = entry.artifact_path
    if artifact.is_dir():
        return None, artifact, f"{artifact}: the entry's artifact is a folder, not a model file"
    from .store.signing import SigningKeyError, TrustPolicy

    try:
        signature = TrustPolicy.from_options().check(entry.path, entry.raw).describe()
    except SigningKeyError as exc:
        signature = f"cannot be checked here ({exc})"
    manifest = entry.manifest
    described = {
        "entry": str(entry.path),
        "test_id": entry.test_id,
        "backend": entry.backend,
        "estimator": entry.estimator_class,
        "created": entry.created,
        "environment": entry.environment,
        "installed": manifest.get("installed"),
        "methods": entry.methods,
        "integrity": integrity,
        "signature": signature,
    }
    return described, artifact, ""


def _entry_lines(entry: dict[str, Any]) -> list[str]:
    lines = [
        f"{entry['entry']}: store entry of {entry['test_id']} [{entry['backend']}]",
        f"  estimator: {entry['estimator']}, methods {', '.join(entry['methods']) or 'none'}",
        f"  saved {entry['created']} in: "
        + ", ".join(f"{k} {v}" for k, v in entry["environment"].items()),
    ]
    installed = entry.get("installed")
    if installed:
        count = len(installed.get("distributions") or {})
        direct = ", ".join(installed.get("direct") or {}) or "none"
        lines.append(
            f"  installed set: {count} distributions recorded (not from an index: {direct})"
        )
    else:
        lines.append("  installed set: not recorded (saved before pytest-persist recorded it)")
    lines.append(f"  integrity: {entry['integrity']}")
    lines.append(f"  signature: {entry['signature']}")
    return lines


# ----------------------------------------------------------------------------------------------
# check


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


def _run_check(args: argparse.Namespace) -> int:
    store = Path(args.store).resolve()
    from .store.entries import StoreError, entry_dirs

    try:
        if not entry_dirs(store):
            return _fail(f"{store}: an empty store, nothing to check")
    except StoreError as exc:
        return _fail(str(exc))
    with tempfile.TemporaryDirectory(prefix="pytest-persist-check-") as folder:
        ini = Path(folder) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        command = check_command(store, [f"--rootdir={folder}", "-c", str(ini), *args.pytest_args])
        command.append(folder)  # collect nothing from the current folder
        return subprocess.call(command)


# ----------------------------------------------------------------------------------------------
# bisect


def _run_bisect(args: argparse.Namespace) -> int:
    from .bisecting import run_bisect

    return run_bisect(args)


if __name__ == "__main__":
    sys.exit(main())
