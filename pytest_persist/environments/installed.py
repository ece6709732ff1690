"""The complete installed set: every distribution and its version, as ``pip freeze`` lists
them, with Python, the platform and the package index where it is known.

``environment_fingerprint`` keeps the ten distributions a report shows; this is what an
environment can be rebuilt from (``pytest-persist bisect``). Read with ``importlib.metadata``
(nothing is imported); per distribution, ``direct_url.json`` (PEP 610) tells what was not
installed from an index: a local folder, an editable checkout, a VCS commit, an archive URL.
Which index a distribution came from is recorded nowhere by pip or uv, so the index is the
one this environment is configured with: ``UV_DEFAULT_INDEX`` / ``UV_INDEX_URL`` /
``UV_INDEX`` / ``UV_EXTRA_INDEX_URL``, ``PIP_INDEX_URL`` / ``PIP_EXTRA_INDEX_URL`` /
``PIP_FIND_LINKS``, else the ``[global]`` section of pip's configuration files (the
``PIP_CONFIG_FILE``, the site-wide, the user's and the virtual environment's). Credentials in
a URL (``user:password@``) are never recorded.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "canonical_name",
    "freeze_lines",
    "installed_set",
    "package_index",
    "read_installed",
]

#: Format of the record, for readers that one day need to tell two apart.
INSTALLED_FORMAT_VERSION = 1

_INDEX_VARIABLES = (
    ("UV_DEFAULT_INDEX", "index_url"),
    ("UV_INDEX_URL", "index_url"),
    ("PIP_INDEX_URL", "index_url"),
    ("UV_INDEX", "extra_index_urls"),
    ("UV_EXTRA_INDEX_URL", "extra_index_urls"),
    ("PIP_EXTRA_INDEX_URL", "extra_index_urls"),
    ("PIP_FIND_LINKS", "find_links"),
)


def canonical_name(name: str) -> str:
    """PEP 503's normalised name: ``Scikit_Learn`` -> ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=1)
def _installed_cached(path: tuple[str, ...]) -> str:
    return json.dumps(read_installed(), sort_keys=True)


def installed_set() -> dict[str, Any]:
    """This interpreter's installed set (computed once per ``sys.path``):

    ``{"format_version": 1, "python": "3.11.7", "implementation": "CPython", "platform": ...,
    "machine": "x86_64", "distributions": {"numpy": "1.26.4", ...}, "direct": {"pytest-persist":
    {"url": "file:///...", "editable": true}, ...}, "installers": {"uv": 12, "pip": 80},
    "index": {"index_url": ..., "extra_index_urls": [...], "find_links": [...],
    "sources": ["PIP_INDEX_URL", ...]}}``. Distribution names are canonical (PEP 503).
    """
    return json.loads(_installed_cached(tuple(sys.path)))


def read_installed(paths: list[str] | None = None) -> dict[str, Any]:
    """The installed set of the distributions found on ``paths`` (default ``sys.path``)."""
    distributions: dict[str, str] = {}
    direct: dict[str, dict[str, Any]] = {}
    installers: dict[str, int] = {}
    found = metadata.distributions(path=paths) if paths is not None else metadata.distributions()
    for dist in found:
        name = dist.metadata["Name"] if dist.metadata else None
        if not name:
            continue
        key = canonical_name(name)
        if key in distributions:  # shadowed by an earlier entry of the path, as pip sees it
            continue
        distributions[key] = dist.version
        url = _direct_url(dist)
        if url is not None:
            direct[key] = url
        installer = (dist.read_text("INSTALLER") or "").strip() or "unknown"
        installers[installer] = installers.get(installer, 0) + 1
    return {
        "format_version": INSTALLED_FORMAT_VERSION,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "distributions": dict(sorted(distributions.items())),
        "direct": dict(sorted(direct.items())),
        "installers": dict(sorted(installers.items())),
        "index": package_index(),
    }


def _direct_url(dist: metadata.Distribution) -> dict[str, Any] | None:
    """PEP 610's record of a distribution not installed from an index, credentials removed."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    record: dict[str, Any] = {"url": _without_credentials(data["url"])}
    dir_info, vcs_info = data.get("dir_info"), data.get("vcs_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        record["editable"] = True
    if isinstance(vcs_info, dict):
        record["vcs"] = str(vcs_info.get("vcs", ""))
        record["commit"] = str(vcs_info.get("commit_id", ""))
    return record


def freeze_lines(installed: dict[str, Any]) -> list[str]:
    """The installed set as ``pip freeze`` writes it: ``name==version``, ``name @ url`` for a
    direct install (``git+url@commit`` for a VCS one), ``-e url`` for an editable one."""
    lines = []
    direct = installed.get("direct") or {}
    for name, version in (installed.get("distributions") or {}).items():
        info = direct.get(name)
        if info is None:
            lines.append(f"{name}=={version}")
        elif info.get("editable"):
            lines.append(f"-e {info['url']}")
        elif info.get("vcs"):
            lines.append(f"{name} @ {info['vcs']}+{info['url']}@{info.get('commit', '')}")
        else:
            lines.append(f"{name} @ {info['url']}")
    return lines


def package_index() -> dict[str, Any]:
    """The index this environment installs from, where it says: pip's configuration files
    (a later one wins, as in pip), then uv's and pip's environment variables, which win over
    them. Empty when nothing is configured (the installers' default, PyPI). ``sources`` says
    where each value was read."""
    index: dict[str, Any] = {}
    sources: list[str] = []
    for path in _pip_config_files():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        if not parser.has_section("global"):
            continue
        section = parser["global"]
        for option, key in (
            ("index-url", "index_url"),
            ("extra-index-url", "extra_index_urls"),
            ("find-links", "find_links"),
        ):
            value = section.get(option, "").strip()
            if value:
                urls = [_without_credentials(u) for u in value.split()]
                index[key] = urls[0] if key == "index_url" else urls
                sources.append(str(path))
    from_environment: dict[str, Any] = {}
    for variable, key in _INDEX_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if not value:
            continue
        urls = [_without_credentials(u) for u in value.split()]
        if key == "index_url":
            from_environment.setdefault(key, urls[0])
        else:
            listed = from_environment.setdefault(key, [])
            listed.extend(u for u in urls if u not in listed)
        sources.append(variable)
    index.update(from_environment)
    if sources:
        index["sources"] = list(dict.fromkeys(sources))
    return index


def _pip_config_files() -> list[Path]:
    """pip's configuration files in the order pip reads them (later ones win)."""
    if os.environ.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    xdg = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in xdg if d] + [Path("/etc/pip.conf")]
    home = Path.home()
    files += [home / ".pip" / "pip.conf", home / ".config" / "pip" / "pip.conf"]
    if sys.prefix != sys.base_prefix:
        files.append(Path(sys.prefix) / "pip.conf")
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return [f for f in files if f.is_file()]


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
