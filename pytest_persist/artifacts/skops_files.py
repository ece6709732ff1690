"""A skops file's own description (``schema.json``), read without constructing anything.

The types it needs trusted come from ``skops.io.get_untrusted_types(file=...)``, which walks
the schema's nodes and imports none of the modules they name; the types it holds and the
``_sklearn_version`` of each estimator come from the schema itself, a JSON tree.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SkopsReading", "read_skops"]

_MAX_SCHEMA_BYTES = 256 * 1024**2


@dataclass
class SkopsReading:
    top_class: str | None = None
    protocol: Any = None
    skops_version: str | None = None
    #: Every (module, class) the schema names, in the order it first does.
    types: list[tuple[str, str]] = field(default_factory=list)
    #: version -> the classes whose state recorded it
    sklearn_versions: dict[str, list[str]] = field(default_factory=dict)
    #: what loading it needs trusted beyond skops' defaults (None: skops not installed here)
    untrusted_types: list[str] | None = None
    error: str | None = None


def read_skops(path: Path | str) -> SkopsReading:
    reading = SkopsReading()
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("schema.json")
            if info.file_size > _MAX_SCHEMA_BYTES:
                raise ValueError(f"schema.json is {info.file_size} bytes, too large to read")
            schema = json.loads(archive.read("schema.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        reading.error = f"schema.json unreadable: {exc}"
        return reading
    if not isinstance(schema, dict):
        reading.error = "schema.json is not a JSON object"
        return reading
    reading.protocol = schema.get("protocol")
    version = schema.get("_skops_version")
    reading.skops_version = version if isinstance(version, str) else None
    if isinstance(schema.get("__module__"), str) and isinstance(schema.get("__class__"), str):
        reading.top_class = f"{schema['__module__']}.{schema['__class__']}"
    _walk(schema, reading)
    try:
        import skops.io
    except ImportError:
        return reading
    try:
        reading.untrusted_types = sorted(skops.io.get_untrusted_types(file=str(path)))
    except Exception as exc:  # a schema this skops cannot read
        reading.error = f"skops {getattr(skops, '__version__', '?')} cannot read it: {exc}"
    return reading


def _walk(schema: Any, reading: SkopsReading) -> None:
    seen: set[tuple[str, str]] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        module, name = node.get("__module__"), node.get("__class__")
        if isinstance(module, str) and isinstance(name, str):
            if (module, name) not in seen:
                seen.add((module, name))
                reading.types.append((module, name))
            version = _sklearn_version(node)
            if version is not None:
                reading.sklearn_versions.setdefault(version, []).append(name)
        stack.extend(reversed([v for v in node.values() if isinstance(v, (dict, list))]))


def _sklearn_version(node: dict[str, Any]) -> str | None:
    """An ObjectNode's state ``content.content._sklearn_version``: a JsonNode whose
    ``content`` is the version as a JSON string."""
    state = node.get("content")
    attributes = state.get("content") if isinstance(state, dict) else None
    version = attributes.get("_sklearn_version") if isinstance(attributes, dict) else None
    if not isinstance(version, dict) or not isinstance(version.get("content"), str):
        return None
    try:
        value = json.loads(version["content"])
    except ValueError:
        return None
    return value if isinstance(value, str) else None
