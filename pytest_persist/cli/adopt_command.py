"""``pytest-persist adopt FILE --data X --store DIR``: a model file you already have, as a
store entry that ``pytest --persist-load=DIR`` checks anywhere.

The file goes into the entry untouched. What it is comes from ``inspect`` (never loading it):
a file that would run code it names is refused unless ``--trust`` says you vouch for it. The
expected outputs of every method it answers are computed here, from the data given, by
loading it in the same isolated, sandboxed loader child as any stored check; the entry records
this environment and is signed with your key: by signing, you vouch for the file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import EXIT_BAD_INPUT

__all__ = ["adopt", "read_data"]

_ADOPT_EXAMPLES = """\
examples:
  pytest-persist adopt model.joblib --data X_test.npy --y y_test.npy --store artifacts
  pytest-persist adopt pipeline.pkl --data holdout.parquet --store artifacts --test-id fraud
  pytest-persist adopt vectorizer.skops --data reviews.txt --store artifacts
  pytest --persist-load=artifacts        # then, anywhere: checks it like any entry

Data: .npy, .npz (its only array, or the one named X / y), .csv or .parquet (through pandas,
as a DataFrame: column names kept), .txt (one string per line, for text models). The file is
inspected first, without loading it; a file that would run code it names (a dangerous global,
cloudpickle's function builders) or that cannot be read to its end is refused unless --trust
says you vouch for it. The entry is signed with your key (--key-file, else PYTEST_PERSIST_KEY,
else the per-user key): signing it says you vouch for the file.

exit status: 0 adopted, 1 refused (the file would run code; --trust to vouch for it), 2 bad
input (not a model file, unreadable data, no method works on the data); nothing is written
to the store unless the entry is complete.
"""

#: The methods asked of an adopted model (those it answers are kept; inverse_transform comes
#: in a second pass, on transform's output).
_CANDIDATE_METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score_samples",
    "score",
)


class AdoptError(Exception):
    """What keeps a file from being adopted; ``refused`` when it is a trust decision."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def add_parser(commands: Any) -> None:
    """Add the command to ``commands`` (argparse sub-parsers)."""
    adopt_parser = commands.add_parser(
        "adopt",
        help="turn a model file you have into a store entry, checked anywhere",
        description=(
            "Turn an existing model file into a store entry, as it is: the expected outputs "
            "of every method it answers are computed here from the data given (loaded in the "
            "isolated loader), this environment is recorded, and the entry is signed with your "
            "key."
        ),
        epilog=_ADOPT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    adopt_parser.add_argument(
        "file", metavar="FILE", help="a pickle, joblib, cloudpickle, skops or ONNX file"
    )
    adopt_parser.add_argument("--data", required=True, metavar="X", help="the inputs to answer")
    adopt_parser.add_argument("--y", metavar="Y", help="the targets (adds score)")
    adopt_parser.add_argument("--store", required=True, metavar="DIR", help="the store to add to")
    adopt_parser.add_argument(
        "--test-id",
        metavar="ID",
        help="the entry's name in reports (default: adopted::FILE's name)",
    )
    adopt_parser.add_argument(
        "--trust",
        action="store_true",
        help="adopt a file that would run code it names (you vouch for it)",
    )
    adopt_parser.add_argument("--key-file", metavar="FILE", help="the key to sign with")
    adopt_parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="for the loader child"
    )
    adopt_parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        _, lines = adopt(
            Path(args.file),
            Path(args.data),
            Path(args.y) if args.y else None,
            Path(args.store),
            test_id=args.test_id,
            trust=args.trust,
            key_file=args.key_file,
            timeout=args.timeout,
        )
    except AdoptError as exc:
        print(f"pytest-persist adopt: {exc}", file=sys.stderr)
        return 1 if exc.refused else EXIT_BAD_INPUT
    for line in lines:
        print(line)
    return 0


def read_data(path: Path, *, what: str = "X") -> Any:
    """X (or y) from ``path``: .npy, .npz, .csv/.parquet (pandas), .txt (a string per line)."""
    import numpy as np

    suffix = path.suffix.lower()
    if not path.is_file():
        raise AdoptError(f"{path}: no such data file")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                name = what if what in names else names[0] if len(names) == 1 else None
                if name is None:
                    raise AdoptError(
                        f"{path}: holds {', '.join(names)}; name the array {what} or keep one"
                    )
                return archive[name]
        if suffix in (".csv", ".parquet"):
            import pandas as pd

            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            if what == "y":
                return frame.iloc[:, 0].to_numpy() if frame.shape[1] == 1 else frame
            return frame
        if suffix == ".txt":
            return np.array(path.read_text(encoding="utf-8").splitlines(), dtype=object)
    except AdoptError:
        raise
    except Exception as exc:  # a corrupt or pickled .npy, a bad csv...
        raise AdoptError(
            f"{path}: cannot read it as {what} ({type(exc).__name__}: {exc})"
        ) from None
    raise AdoptError(
        f"{path}: unknown data format {suffix or '(no suffix)'}; use .npy, .npz, .csv, "
        ".parquet or .txt"
    )


def adopt(
    file: Path,
    data: Path,
    target: Path | None,
    store: Path,
    *,
    test_id: str | None = None,
    trust: bool = False,
    key_file: str | None = None,
    timeout: float = 120.0,
) -> tuple[Path, list[str]]:
    """Adopt ``file`` into ``store``; return the entry's folder and what to print."""
    from ..artifacts.formats import NotAModelFile
    from ..artifacts.inspection import inspect_file
    from ..backends import BackendRegistry
    from ..environments.fingerprint import environment_fingerprint
    from ..store.entries import StoreError, save_entry
    from ..store.signing import SigningKeyError, own_key

    file = file.resolve()
    if not file.is_file():
        raise AdoptError(f"{file}: no such model file")
    try:
        inspection = inspect_file(file)
    except NotAModelFile as exc:
        raise AdoptError(str(exc)) from None
    backend_name = inspection.format
    registry = BackendRegistry()
    if backend_name not in registry or not registry[backend_name].is_available():
        raise AdoptError(f"{file}: a {backend_name} file, and that backend is not available here")
    if inspection.verdict != "clean" and not trust:
        why = (
            f"it would run code it names: {', '.join(inspection.dangerous)}"
            if inspection.dangerous
            else f"it cannot be read to its end ({inspection.error})"
        )
        raise AdoptError(
            f"{file}: refusing to adopt it: {why}. Run pytest-persist inspect {file} to see what "
            "it imports; if you trust it, adopt it with --trust (your signature vouches for it)",
            refused=True,
        )
    X = read_data(data)
    y = read_data(target, what="y") if target is not None else None
    if y is not None and len(y) != len(X):
        raise AdoptError(f"{target}: {len(y)} targets for the {len(X)} rows of {data}")
    try:
        key = own_key(key_file, create=True)
    except SigningKeyError as exc:
        raise AdoptError(f"cannot sign the entry: {exc}") from None
    description = _description(inspection)
    name = test_id or f"adopted::{file.name}"
    environment = {**environment_fingerprint(), **registry[backend_name].library_versions()}
    outputs, errors = _outputs_in_isolation(
        file, backend_name, X, y, description, registry, key, inspection, timeout=timeout
    )
    if not outputs:
        by_reason: dict[str, list[str]] = {}
        for method, reason in errors.items():
            by_reason.setdefault(reason, []).append(method)
        shown = "; ".join(f"{', '.join(ms)}: {r}" for r, ms in by_reason.items())
        raise AdoptError(
            f"{file}: no method of {description['name']} ({backend_name}) works on {data}: {shown}"
        )
    saved_with = sorted(inspection.sklearn_versions)
    try:
        entry = save_entry(
            store,
            test_id=name,
            backend_name=backend_name,
            estimator=None,
            estimator_description=description,
            artifact_path=file,
            X=X,
            y=y,
            expected_outputs=outputs,
            not_compared=errors,
            environment=environment,
            extra={"adopted_from": str(file), "saved_with_scikit_learn": saved_with},
            untrusted_types=inspection.untrusted_types,
            key=key,
        )
    except (StoreError, SigningKeyError, OSError) as exc:
        raise AdoptError(f"cannot write the entry into {store}: {exc}") from None
    lines = [
        f"adopted {file} as {entry}",
        f"  {description['name']} via {backend_name}, saved with scikit-learn "
        f"{', '.join(saved_with) or '(not recorded)'}; expected outputs computed here with "
        f"scikit-learn {environment.get('scikit-learn', '?')}",
        f"  methods: {', '.join(outputs)}"
        + (f" (not compared: {', '.join(errors)})" if errors else ""),
        f"  signed with key {key.key_id if key else '(none)'}: this signature vouches for the file",
        f"  check it anywhere: pytest --persist-load={store}",
    ]
    if inspection.verdict != "clean":
        lines.insert(1, f"  adopted with --trust although it is {inspection.verdict}")
    return entry, lines


def _description(inspection: Any) -> dict[str, Any]:
    """The estimator's description, as far as the file tells without loading it."""
    top = inspection.top_class or "unknown.Unknown"
    module, _, name = top.rpartition(".")
    return {"class": top, "name": name or top, "params": {}, "modules": [module] if module else []}


def _outputs_in_isolation(
    file: Path,
    backend_name: str,
    X: Any,
    y: Any,
    description: dict[str, Any],
    registry: Any,
    key: Any,
    inspection: Any,
    *,
    timeout: float,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The outputs of every method the model answers on X, computed by loading it in the
    isolated loader child (a provisional entry in a temporary store, signed with ``key``):
    ``inverse_transform`` in a second pass, on the ``transform`` output of the first."""
    import numpy as np

    from ..isolation.check import start_check
    from ..store.entries import read_entry, save_entry
    from ..store.signing import TrustPolicy

    placeholder = np.zeros(0)
    policy = TrustPolicy(keys=(key,) if key is not None else ())
    outputs: dict[str, Any] = {}
    errors: dict[str, str] = {}
    scratch = Path(tempfile.mkdtemp(prefix="pytest-persist-adopt-"))
    try:
        passes = [[m for m in _CANDIDATE_METHODS if y is not None or m != "score"]]
        for number in (1, 2):
            methods = passes[-1]
            expected = {m: placeholder for m in methods}
            if "inverse_transform" in methods:
                expected["transform"] = outputs["transform"]
            folder = save_entry(
                scratch / f"pass-{number}",
                test_id="adopting",
                backend_name=backend_name,
                estimator=None,
                estimator_description=description,
                artifact_path=file,
                X=X,
                y=y,
                expected_outputs=expected,
                not_compared={},
                environment={},
                untrusted_types=inspection.untrusted_types,
                key=key,
            )
            check = start_check(
                read_entry(folder),
                registry=registry,
                timeout=timeout,
                trust=policy,
                absent_is_error=False,
            )
            outcome = check.result()
            if outcome.details.get("refused") or (
                outcome.kind.value == "load_error" and not check.actual_outputs
            ):
                raise AdoptError(f"{file}: loading it as {backend_name} failed: {outcome.error}")
            outputs.update(
                {m: check.actual_outputs[m] for m in methods if m in check.actual_outputs}
            )
            errors.update(
                {m: r for m, r in outcome.details.get("method_errors", {}).items() if m in methods}
            )
            if number == 1 and "transform" in outputs:
                passes.append(["inverse_transform"])
            else:
                break
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return outputs, errors
