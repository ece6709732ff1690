"""Rebuilding environments with uv: resolve, install into a fresh virtual environment, cache.

An environment is asked for as *requirements* (the packages pinned on purpose, the others by
name) and *preferences* (the versions to keep where the resolver can: ``uv pip compile``
prefers the versions already in its output file). So pinning one package lets the resolver
move the ones it must, and only those; the resolved set says what moved. Each resolved set is
installed once (``uv venv`` + ``uv pip sync``, wheels only) under the cache directory, in a
folder named by the sha256 of the interpreter's version and the resolved set, and reused by
every later request that resolves to the same set. uv never downloads an interpreter here.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BuiltEnvironment",
    "EnvironmentBuilder",
    "RebuildError",
    "find_python",
    "find_uv",
    "parse_resolved",
]

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


class RebuildError(Exception):
    """An environment that cannot be resolved or installed; the message says why."""


def find_uv() -> str | None:
    """uv on ``PATH``, else the one the ``uv`` package installed beside this interpreter."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return None


def _python_version(executable: str) -> str | None:
    try:
        result = subprocess.run(
            [executable, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def find_python(
    version: str, given: dict[str, str] | None = None, uv: str | None = None
) -> tuple[str, str] | None:
    """An interpreter for ``version`` ("3.11.7" or "3.11") and its exact version: one
    ``given`` for that version, this interpreter, pyenv's, ``pythonX.Y`` on ``PATH``, or what
    uv finds (never downloading). The exact version first, the same ``X.Y`` else."""
    minor = ".".join(version.split(".")[:2])
    candidates: list[str] = []
    for key in (version, minor):
        if given and key in given:
            candidates.append(given[key])
    candidates.append(getattr(sys, "_base_executable", sys.executable) or sys.executable)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        exact = pyenv / version / "bin" / "python"
        if exact.exists():
            candidates.append(str(exact))
        candidates.extend(
            str(p / "bin" / "python")
            for p in sorted(pyenv.glob(f"{minor}.*"), reverse=True)
            if (p / "bin" / "python").exists()
        )
    on_path = shutil.which(f"python{minor}")
    if on_path:
        candidates.append(on_path)
    if uv:
        try:
            found = subprocess.run(
                [uv, "python", "find", "--no-python-downloads", version],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
            )
            if found.returncode == 0 and found.stdout.strip():
                candidates.append(found.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    same_minor = None
    for candidate in dict.fromkeys(candidates):
        actual = _python_version(candidate)
        if actual is None:
            continue
        chosen = bool(given) and candidate in given.values()
        if actual == version or (chosen and ".".join(actual.split(".")[:2]) == minor):
            return candidate, actual
        if same_minor is None and ".".join(actual.split(".")[:2]) == minor:
            same_minor = (candidate, actual)
    return same_minor


def parse_resolved(lines: list[str]) -> dict[str, str]:
    """``name==version`` lines (and ``name @ url``) as {canonical name: version or url}."""
    resolved = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if " @ " in line:
            name, url = line.split(" @ ", 1)
            resolved[_canonical(name.split("[")[0])] = url.strip()
        elif "==" in line:
            name, version = line.split("==", 1)
            resolved[_canonical(name.split("[")[0])] = version.split(";")[0].strip()
    return resolved


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


@dataclass
class BuiltEnvironment:
    """A virtual environment built (or found in the cache) for one resolved set."""

    path: Path
    python_version: str
    #: canonical name -> version (or URL), exactly what is installed
    installed: dict[str, str]
    key: str
    reused: bool = False
    resolve_seconds: float = 0.0
    install_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "path": str(self.path),
            "python": self.python_version,
            "installed": self.installed,
            "reused": self.reused,
            "resolve_seconds": round(self.resolve_seconds, 3),
            "install_seconds": round(self.install_seconds, 3),
        }


class EnvironmentBuilder:
    """Builds environments with ``uv`` under ``cache_dir`` (see the module docstring)."""

    def __init__(
        self,
        uv: str,
        cache_dir: Path,
        *,
        only_binary: bool = True,
        uv_environment: dict[str, str] | None = None,
    ) -> None:
        self.uv = uv
        self.cache_dir = Path(cache_dir)
        self.only_binary = only_binary
        self.environ = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", **(uv_environment or {})}
        for variable in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT"):
            self.environ.pop(variable, None)
        self.built = 0  # environments installed (not found in the cache) by this builder
        self.reused = 0

    def _uv(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        binary = ["--only-binary", ":all:"] if self.only_binary else []
        command = [self.uv, *args[:2], *binary, *args[2:]]
        try:
            return subprocess.run(
                command, capture_output=True, text=True, env=self.environ, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise RebuildError(f"{' '.join(command[:3])} took over {timeout:.0f} s") from None

    def resolve(
        self, python: str, requirements: list[str], preferences: dict[str, str]
    ) -> list[str]:
        """The resolved set (``name==version`` lines) for ``requirements`` on the
        interpreter ``python``, keeping ``preferences`` wherever the resolver can."""
        with tempfile.TemporaryDirectory(prefix="pytest-persist-resolve-") as folder:
            wanted = Path(folder) / "requirements.in"
            output = Path(folder) / "requirements.txt"
            wanted.write_text("\n".join(requirements) + "\n", encoding="utf-8")
            output.write_text(
                "".join(f"{name}=={version}\n" for name, version in preferences.items()),
                encoding="utf-8",
            )
            result = self._uv(
                "pip",
                "compile",
                str(wanted),
                "-o",
                str(output),
                "--python",
                python,
                "--no-header",
                "--no-annotate",
                "--quiet",
                "--no-config",
            )
            if result.returncode != 0:
                raise RebuildError(_uv_error(result))
            return [
                line.strip()
                for line in output.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]

    def build(
        self,
        python: str,
        python_version: str,
        requirements: list[str],
        preferences: dict[str, str],
    ) -> BuiltEnvironment:
        """Resolve, then install the resolved set in its own cached virtual environment."""
        started = time.perf_counter()
        lines = self.resolve(python, requirements, preferences)
        resolved_at = time.perf_counter()
        key = hashlib.sha256(
            "\n".join([python_version, platform.machine(), *sorted(lines)]).encode()
        ).hexdigest()[:20]
        folder = self.cache_dir / "envs" / key
        record = folder / "pytest-persist-env.json"
        installed = parse_resolved(lines)
        if record.is_file() and (folder / "bin" / "python").exists():
            self.reused += 1
            return BuiltEnvironment(
                folder, python_version, installed, key, True, resolved_at - started
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=folder.parent))
        try:
            self._install(python, temp, lines)
            record_data = {"python": python_version, "resolved": lines, "created": time.time()}
            (temp / "pytest-persist-env.json").write_text(
                json.dumps(record_data, indent=1), encoding="utf-8"
            )
            try:
                os.rename(temp, folder)
            except OSError:  # built meanwhile by another run: use that one
                shutil.rmtree(temp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self.built += 1
        finished = time.perf_counter()
        return BuiltEnvironment(
            folder,
            python_version,
            installed,
            key,
            False,
            resolved_at - started,
            finished - resolved_at,
        )

    def _install(self, python: str, target: Path, lines: list[str]) -> None:
        shutil.rmtree(target)
        made = subprocess.run(
            [self.uv, "venv", "--quiet", "--no-config", "--python", python, str(target)],
            capture_output=True,
            text=True,
            env=self.environ,
        )
        if made.returncode != 0:
            raise RebuildError(_uv_error(made))
        requirements = target / "pytest-persist-requirements.txt"
        requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = self._uv(
            "pip",
            "sync",
            str(requirements),
            "--python",
            str(target / "bin" / "python"),
            "--quiet",
            "--no-config",
        )
        if result.returncode != 0:
            raise RebuildError(_uv_error(result))

    def requires(self, environment: BuiltEnvironment) -> dict[str, set[str]]:
        """What each distribution installed in ``environment`` requires (names only, the
        requirements that apply there: markers evaluated, extras left out)."""
        script = (
            "import json, re\nfrom importlib import metadata\n"
            "try:\n    from packaging.requirements import Requirement\nexcept ImportError:\n"
            "    Requirement = None\n"
            "canon = lambda n: re.sub(r'[-_.]+', '-', n).lower()\nout = {}\n"
            "for d in metadata.distributions():\n"
            "    names = set()\n"
            "    for text in d.requires or []:\n"
            "        if Requirement is None:\n"
            "            if 'extra' not in text.partition(';')[2]:\n"
            "                names.add(canon(re.split(r'[ ;<>=!~\\[(]', text, 1)[0]))\n"
            "            continue\n"
            "        r = Requirement(text)\n"
            "        if r.marker is None or r.marker.evaluate({'extra': ''}):\n"
            "            names.add(canon(r.name))\n"
            "    out[canon(d.metadata['Name'])] = sorted(names)\n"
            "print(json.dumps(out))\n"
        )
        try:
            result = subprocess.run(
                [environment.python, "-c", script], capture_output=True, text=True, timeout=120
            )
            return {k: set(v) for k, v in json.loads(result.stdout).items()}
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return {}


def _uv_error(result: subprocess.CompletedProcess[str]) -> str:
    """uv's message, without its hints' blank lines, at most 15 lines."""
    lines = [line.rstrip() for line in (result.stderr or result.stdout).splitlines()]
    lines = [line for line in lines if line.strip()]
    text = "\n".join(lines[:15]) + ("\n..." if len(lines) > 15 else "")
    return text or f"uv exited with status {result.returncode}"
