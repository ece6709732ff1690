"""``inspect_file``: what a model file is and what loading it would import, read statically.

A file that would run code when loaded (a global on picklescan's dangerous list: ``os.system``,
``builtins.eval``, ``subprocess``, cloudpickle's function builders...) gets the verdict
``dangerous``; one whose pickle stream could not be read to its end gets ``incomplete``
(nothing can be said of what follows); every other gets ``clean``, which means "imports
nothing known to be dangerous", not "safe": loading a pickle still runs the code of every
class it names (listed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import formats, pickles

__all__ = ["EXIT_CODES", "Inspection", "inspect_file"]

#: The exit code of ``pytest-persist inspect`` for each verdict.
EXIT_CODES = {"clean": 0, "dangerous": 1, "incomplete": 3}


@dataclass
class Inspection:
    path: str
    size: int
    #: the backend that reads it: pickle, joblib, joblib-compressed, cloudpickle, skops, onnx
    format: str
    compression: str | None = None
    pickle_protocol: int | None = None
    top_class: str | None = None
    #: scikit-learn version -> the classes whose state recorded it
    sklearn_versions: dict[str, list[str]] = field(default_factory=dict)
    #: what loading imports: {"module", "name", "safety", "seen_by": ["reader", "picklescan"]}
    imports: list[dict[str, Any]] = field(default_factory=list)
    #: skops: the types loading needs trusted beyond skops' defaults
    untrusted_types: list[str] | None = None
    onnx: dict[str, Any] | None = None
    joblib_arrays: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def dangerous(self) -> list[str]:
        return [f"{i['module']}.{i['name']}" for i in self.imports if i["safety"] == "dangerous"]

    @property
    def verdict(self) -> str:
        if self.dangerous:
            return "dangerous"
        return "incomplete" if self.error else "clean"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict, "dangerous": self.dangerous}

    def lines(self) -> list[str]:
        """The terminal description."""
        what = f"{self.format} file"
        if self.compression:
            what += f" ({self.compression}-compressed)"
        if self.pickle_protocol is not None:
            what += f", pickle protocol {self.pickle_protocol}"
        if self.joblib_arrays:
            what += f", {self.joblib_arrays} raw numpy array(s) in the stream"
        lines = [f"{self.path}: {what}, {_size(self.size)}"]
        if self.top_class:
            lines.append(f"  top-level object: built by {self.top_class}")
        if self.sklearn_versions:
            for version, classes in self.sklearn_versions.items():
                lines.append(f"  saved with scikit-learn {version} ({_counted(classes)})")
        elif self.format != "onnx":
            lines.append("  scikit-learn version: not recorded in the file")
        if self.onnx is not None:
            lines.extend(_onnx_lines(self.onnx))
        if self.imports:
            if self.format == "skops":
                lines.append(f"  constructs {len(self.imports)} type(s):")
            else:
                lines.append(f"  imports {len(self.imports)} global(s) (classes and functions):")
            lines.extend(f"    {_import_line(item)}" for item in self.imports)
        if self.untrusted_types is not None:
            if self.untrusted_types:
                lines.append(
                    f"  skops: loading needs {len(self.untrusted_types)} type(s) trusted: "
                    + ", ".join(self.untrusted_types)
                )
            else:
                lines.append("  skops: loads with skops' default trusted types alone")
        lines.extend(f"  note: {note}" for note in self.notes)
        if self.error:
            lines.append(f"  INCOMPLETE: {self.error}")
        lines.append("  " + _verdict_line(self))
        return lines


_SAFETY = {"dangerous": "dangerous", "innocuous": "safe list", "suspicious": "neither list"}


def _import_line(item: dict[str, Any]) -> str:
    flag = "DANGEROUS " if item["safety"] == "dangerous" else ""
    said = [f"picklescan: {_SAFETY.get(item['safety'], item['safety'])}"]
    if item.get("seen_by") == ["picklescan"]:
        said.append("seen by picklescan alone")
    if "trusted_by_default" in item:
        said.insert(0, "skops trusts it" if item["trusted_by_default"] else "needs trusting")
    return f"{flag}{item['module']}.{item['name']} ({'; '.join(said)})"


def _verdict_line(inspection: Inspection) -> str:
    if inspection.verdict == "dangerous":
        return (
            "verdict: DANGEROUS: loading this file would run code it names ("
            + ", ".join(inspection.dangerous)
            + "); do not load it unless you trust whoever made it"
        )
    if inspection.verdict == "incomplete":
        return (
            "verdict: INCOMPLETE: the file could not be read to its end, so nothing is known of "
            "the rest"
        )
    if inspection.format == "onnx":
        return "verdict: clean: ONNX runs no Python code when loaded"
    if inspection.format == "skops":
        return "verdict: clean: skops constructs only the types it trusts (see above)"
    return (
        "verdict: clean: nothing on picklescan's dangerous list; loading still imports and runs "
        "the code of the globals above"
    )


def _onnx_lines(info: dict[str, Any]) -> list[str]:
    lines = []
    if info.get("producer"):
        lines.append(f"  producer: {info['producer']} (IR version {info.get('ir_version')})")
    if info.get("opsets"):
        shown = ", ".join(f"{domain} {version}" for domain, version in info["opsets"].items())
        lines.append(f"  opsets: {shown}")
    if info.get("operators"):
        shown = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in info["operators"].items())
        lines.append(f"  operators: {shown}")
    if info.get("functions"):
        lines.append(f"  functions: {', '.join(info['functions'])}")
    return lines


def _counted(names: list[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def inspect_file(path: Path | str, *, max_bytes: int = formats.DEFAULT_MAX_BYTES) -> Inspection:
    """Describe the model file at ``path`` without loading it.

    Raises ``formats.NotAModelFile`` for a file that is none of the formats (saying what it
    is) and ``formats.PayloadTooLarge`` past ``max_bytes`` decompressed.
    """
    path = Path(path)
    kind = formats.detect(path)
    size = path.stat().st_size
    if kind.container == "skops":
        return _inspect_skops(path, size)
    if kind.container == "onnx":
        return _inspect_onnx(path, size, kind)
    return _inspect_pickle(path, size, kind, max_bytes)


def _inspect_pickle(path: Path, size: int, kind: formats.FileKind, max_bytes: int) -> Inspection:
    with formats.open_payload(path, kind, max_bytes=max_bytes) as stream:
        reading = pickles.read_stream(stream)
        scanned, scanned_whole = pickles.picklescan_globals(stream)
    backend = "joblib-compressed" if kind.compression else reading.flavour
    inspection = Inspection(
        path=str(path),
        size=size,
        format=backend,
        compression=kind.compression,
        pickle_protocol=kind.protocol,
        top_class=reading.top_class,
        sklearn_versions=reading.sklearn_versions(),
        joblib_arrays=reading.joblib_arrays,
        error=reading.error,
    )
    verdicts = pickles.classify(reading.globals)
    by_scanner = {(m, n): safety for m, n, safety in scanned}
    for module, name in reading.globals:
        seen_by = ["reader", "picklescan"] if (module, name) in by_scanner else ["reader"]
        inspection.imports.append(
            {"module": module, "name": name, "safety": verdicts[(module, name)], "seen_by": seen_by}
        )
    extra = [pair for pair in by_scanner if pair not in verdicts]
    for module, name in extra:  # never expected: the reader runs every opcode picklescan reads
        safety = by_scanner[(module, name)]
        inspection.imports.append(
            {"module": module, "name": name, "safety": safety, "seen_by": ["picklescan"]}
        )
    if extra:
        inspection.notes.append(
            f"picklescan found {len(extra)} global(s) the reader did not reach; they count"
        )
    if reading.globals and not scanned_whole:
        missed = sum(pair not in by_scanner for pair in reading.globals)
        where = "at the first raw joblib array" if reading.joblib_arrays else "early"
        inspection.notes.append(
            f"picklescan's own reading stopped {where} and missed {missed} of these globals; "
            "the reader went on past the arrays"
        )
    if reading.object_arrays:
        inspection.notes.append(
            f"{reading.object_arrays} joblib object array(s): nested pickles, read the same way"
        )
    if reading.old_joblib_arrays:
        inspection.notes.append(
            "written by joblib before 0.10: its arrays are in side files (.npy) beside it, "
            "not inspected"
        )
    if reading.persistent_ids:
        inspection.notes.append(
            f"{reading.persistent_ids} persistent id(s): the loader that reads it supplies "
            "those objects (a plain pickle.load refuses it)"
        )
    if len(reading.roots) > 1:
        inspection.notes.append(
            f"{len(reading.roots)} pickles stacked in one file (pickle.load reads the first)"
        )
    if reading.trailing:
        inspection.notes.append(reading.trailing)
    if backend == "cloudpickle":
        inspection.notes.append("cloudpickle: needs cloudpickle installed to load")
    if not inspection.sklearn_versions and any(m.startswith("sklearn") for m, _ in reading.globals):
        inspection.notes.append(
            "scikit-learn classes without _sklearn_version: saved before scikit-learn 0.18, or "
            "by a class that does not record it"
        )
    return inspection


def _inspect_skops(path: Path, size: int) -> Inspection:
    from .skops_files import read_skops

    reading = read_skops(path)
    inspection = Inspection(
        path=str(path),
        size=size,
        format="skops",
        top_class=reading.top_class,
        sklearn_versions=reading.sklearn_versions,
        untrusted_types=reading.untrusted_types,
        error=reading.error,
    )
    verdicts = pickles.classify(reading.types)
    untrusted = set(reading.untrusted_types or [])
    for module, name in reading.types:
        inspection.imports.append(
            {
                "module": module,
                "name": name,
                # skops constructs only what is trusted: picklescan's list says what it is
                "safety": verdicts[(module, name)],
                "seen_by": ["schema"],
                "trusted_by_default": f"{module}.{name}" not in untrusted,
            }
        )
    if reading.skops_version:
        inspection.notes.append(
            f"written by skops {reading.skops_version} (schema protocol {reading.protocol})"
        )
    if reading.untrusted_types is None and reading.error is None:
        inspection.notes.append(
            "skops is not installed here: the types it would need trusted are not known "
            "(pip install skops)"
        )
    return inspection


def _inspect_onnx(path: Path, size: int, kind: formats.FileKind) -> Inspection:
    from .onnx_files import read_onnx

    reading = read_onnx(path)
    info = asdict(reading)
    error = info.pop("error")
    inspection = Inspection(path=str(path), size=size, format="onnx", onnx=info)
    if error and not kind.confirmed:
        inspection.notes.append(f"ONNX by its first bytes and its name; {error}")
    elif error:
        inspection.error = error
    inspection.notes.append(
        "ONNX files do not record the scikit-learn version (skl2onnx writes only its own)"
    )
    if reading.external_data:
        inspection.notes.append("some tensors live in external data files (not read)")
    return inspection
