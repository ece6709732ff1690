"""``pytest-persist inspect FILE|ENTRY``: what a model file is, without loading it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import fail

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


def add_parser(commands: Any) -> None:
    """Add the command to ``commands`` (argparse sub-parsers)."""
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
    inspect.set_defaults(run=run)


def _parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6,
             "mib": 1024**2, "g": 1e9, "gb": 1e9, "gib": 1024**3}  # fmt: skip
    value = text.strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number) :]
    if unit not in units:
        raise ValueError(f"{text!r}: not a size (e.g. 512MiB, 4GiB)")
    return int(float(number) * units[unit])


def run(args: argparse.Namespace) -> int:
    from ..artifacts.formats import NotAModelFile, PayloadTooLarge
    from ..artifacts.inspection import inspect_file

    try:
        max_bytes = _parse_size(args.max_bytes)
    except ValueError as exc:
        return fail(f"--max-bytes {exc}")
    path = Path(args.path)
    entry: dict[str, Any] | None = None
    if path.is_dir():
        entry, artifact, problem = _entry_artifact(path)
        if problem:
            return fail(problem)
        path = artifact
    try:
        inspection = inspect_file(path, max_bytes=max_bytes)
    except (NotAModelFile, PayloadTooLarge) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{path}: cannot be read ({exc})")
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
    from ..store.entries import ENTRY_FILE, StoreError, TamperedArtifactError, read_entry

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
    from ..store.signing import SigningKeyError, TrustPolicy

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
