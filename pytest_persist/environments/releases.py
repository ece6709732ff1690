"""The releases of a package an interpreter can install, from an index's simple JSON API.

``GET {index}/{name}/`` with ``Accept: application/vnd.pypi.simple.v1+json`` (PEP 691) lists
every file; a release counts when it has a wheel this interpreter can install (its tags),
not yanked, whose ``requires-python`` admits the interpreter. Answers are cached for a day.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, platform_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

__all__ = ["PYPI_SIMPLE", "ReleaseError", "interpreter_tags", "project_files", "releases_between"]

PYPI_SIMPLE = "https://pypi.org/simple"
_ACCEPT = "application/vnd.pypi.simple.v1+json"
_CACHE_SECONDS = 24 * 3600


class ReleaseError(Exception):
    """The index could not be asked (offline, unknown package...)."""


@lru_cache(maxsize=16)
def interpreter_tags(python_version: str) -> frozenset[Tag]:
    """The wheel tags a CPython ``python_version`` ("3.11.7") on this machine installs."""
    major, minor = (int(p) for p in python_version.split(".")[:2])
    platforms = list(platform_tags())
    tags = set(cpython_tags((major, minor), platforms=platforms))
    tags.update(compatible_tags((major, minor), f"cp{major}{minor}", platforms=platforms))
    return frozenset(tags)


def project_files(
    name: str, *, index_url: str = PYPI_SIMPLE, cache_dir: Path | None = None
) -> list[dict[str, Any]]:
    """The files of ``name`` on the index (PEP 691 ``files``), cached for a day."""
    key = canonicalize_name(name)
    cached = cache_dir / f"{key}.json" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        try:
            data = json.loads(cached.read_text(encoding="utf-8"))
            if time.time() - data.get("fetched", 0) < _CACHE_SECONDS:
                return data["files"]
        except (OSError, ValueError, KeyError):
            pass
    request = urllib.request.Request(f"{index_url.rstrip('/')}/{key}/", headers={"Accept": _ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            files = json.load(answer)["files"]
    except Exception as exc:
        raise ReleaseError(f"cannot list the releases of {name} on {index_url}: {exc}") from None
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temp = cached.with_suffix(f".tmp{time.monotonic_ns()}")
        temp.write_text(json.dumps({"fetched": time.time(), "files": files}), encoding="utf-8")
        temp.replace(cached)
    return files


def installable_versions(files: Iterable[dict[str, Any]], python_version: str) -> list[Version]:
    """The versions with a wheel for this interpreter, not yanked, admitting its Python."""
    tags = interpreter_tags(python_version)
    python = Version(python_version)
    versions: set[Version] = set()
    for info in files:
        filename = str(info.get("filename", ""))
        if not filename.endswith(".whl") or info.get("yanked"):
            continue
        requires = info.get("requires-python")
        if requires:
            try:
                if python not in SpecifierSet(requires):
                    continue
            except InvalidSpecifier:
                continue
        try:
            _, version, _, wheel_tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if tags.isdisjoint(wheel_tags):
            continue
        versions.add(version)
    return sorted(versions)


def releases_between(
    name: str,
    start: str,
    end: str,
    python_version: str,
    *,
    index_url: str = PYPI_SIMPLE,
    cache_dir: Path | None = None,
) -> list[str]:
    """The releases from ``start`` to ``end`` (both included, in that order: an upgrade or a
    downgrade) this interpreter can install; pre-releases only when an end is one."""
    low, high = sorted((Version(start), Version(end)))
    pre = low.is_prerelease or high.is_prerelease
    files = project_files(name, index_url=index_url, cache_dir=cache_dir)
    between = [
        v
        for v in installable_versions(files, python_version)
        if low < v < high and (pre or not v.is_prerelease)
    ]
    ordered = [str(v) for v in between]
    if Version(start) > Version(end):
        ordered.reverse()
    return [start, *ordered, end]
