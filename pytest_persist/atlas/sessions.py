"""Session helpers for noxfiles: install a row, save artifacts in it, check stored ones.

Importing this module never imports nox: only ``parametrize_rows`` does, lazily.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .chain import CompatPair
from .rows import (
    DEFAULT_EXTRAS,
    RowInstall,
    VersionRow,
    _vtuple,
    row_install_args,
    validate_rows,
)

__all__ = [
    "COMPILE_BYTECODE",
    "IMPORT_CHECK",
    "add_pyenv_to_path",
    "check_artifacts",
    "install_row",
    "parametrize_rows",
    "progress",
    "run_seconds",
    "save_artifacts",
    "start_run",
]

#: uv (nox's default backend here) does not write ``.pyc`` files at install, unlike pip; with
#: ``PYTHONDONTWRITEBYTECODE`` set (as on CI machines) every interpreter of the row then compiles
#: scikit-learn, scipy and pandas from source: 7.7-9.8 s instead of 2.7 s to import what the
#: loader preloads. Compiling once at install pays that once per row.
COMPILE_BYTECODE = {"UV_COMPILE_BYTECODE": "1"}

IMPORT_CHECK = (
    "import sklearn, numpy, scipy; from sklearn.ensemble import RandomForestClassifier; "
    "print('scikit-learn', sklearn.__version__, 'numpy', numpy.__version__, "
    "'scipy', scipy.__version__)"
)


def parametrize_rows(rows: Sequence[VersionRow]) -> Any:
    """``@nox.parametrize("python,sklearn,numpy", ...)`` over ``rows``, with their ids."""
    import nox

    rows = validate_rows(rows)
    return nox.parametrize(
        "python,sklearn,numpy", [row.nox_params for row in rows], ids=[row.id for row in rows]
    )


def add_pyenv_to_path(
    pythons: Iterable[str], root: str | os.PathLike[str] | None = None
) -> list[str]:
    """Put the newest pyenv interpreter of each ``major.minor`` on PATH; return those missing.

    nox finds interpreters on PATH only; pyenv keeps them in ``$PYENV_ROOT/versions/X.Y.Z``.
    """
    base = Path(root or os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    path = os.environ.get("PATH", "").split(os.pathsep)
    missing: list[str] = []
    for python in dict.fromkeys(pythons):
        found = sorted(
            (p for p in base.glob(f"{python}.*") if (p / "bin" / f"python{python}").exists()),
            key=lambda p: _vtuple(p.name),
        )
        if not found:
            missing.append(python)
            continue
        folder = str(found[-1] / "bin")
        if folder not in path:
            path.insert(0, folder)
    os.environ["PATH"] = os.pathsep.join(path)
    return missing


def install_row(
    session: Any,
    row: VersionRow,
    extras: Iterable[str] = DEFAULT_EXTRAS,
    *,
    project: str = ".",
    packages: Sequence[str] = (),
) -> RowInstall:
    """Install ``row`` from wheels only, then ``project`` without its dependencies.

    ``packages`` are resolved together with the row (``"pytest-persist"`` in a user's project,
    whose own package is ``project``). Dropped extras are announced with ``session.warn``; their
    backends report ``unavailable``.
    """
    if session.python and str(session.python) != row.python:
        session.error(f"session runs Python {session.python} but row {row.id} needs {row.python}")
    plan = row_install_args(row, extras)
    for extra, reason in plan.dropped.items():
        session.warn(f"{row.id}: extra {extra!r} left out ({reason}); its backends are unavailable")
    _install_or_fail(session, row, ["--only-binary", ":all:", *plan.requirements, *packages])
    session.install("--no-deps", project, env=COMPILE_BYTECODE)
    session.run("python", "-c", IMPORT_CHECK)
    return plan


def _install_or_fail(session: Any, row: VersionRow, args: list[str]) -> None:
    """``session.install(*args)``; if the resolver refuses, fail naming the row and its reason."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
        try:
            try:
                session.install(*args, silent=False, stdout=output, env=COMPILE_BYTECODE)
            except TypeError:  # a stand-in session without nox's keywords
                session.install(*args)
        except Exception as exc:
            if type(exc).__name__ != "CommandFailed":
                raise
            output.seek(0)
            reason = _resolver_reason(output.read()) or str(exc)
            session.error(f"row {row.id} cannot be installed from wheels: {reason}")


def _resolver_reason(text: str) -> str:
    """The resolver's explanation from uv's or pip's output (from its first error line on)."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("\u00d7", "error:", "ERROR:")):
            return " ".join(part.strip(" ╰─▶│") for part in lines[index : index + 12]).strip()
    return " ".join(lines[-5:])


def save_artifacts(
    session: Any,
    row: VersionRow,
    store_root: str | os.PathLike[str],
    *pytest_args: str,
    tests: Sequence[str] = ("examples/compat",),
    report_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Run ``tests`` with ``--persist-save`` into a fresh ``store_root/<row id>``; return it.

    The folder is emptied first, so entries of tests deleted since never linger. Failed round
    trips are findings of that row (in the report), so they do not stop the session.
    """
    store = Path(store_root).resolve() / row.id
    if store.exists():
        shutil.rmtree(store)
    args = [
        "python",
        "-m",
        "pytest",
        *tests,
        "-p",
        "no:cacheprovider",
        "--persist-save",
        str(store),
    ]
    if report_path is not None:
        args += ["--persist-report", str(Path(report_path).resolve())]
    session.run(*args, *pytest_args, success_codes=[0, 1])
    return store


#: What a loading row's pytest sees: no project conftest, no tests, only the stored entries.
_EMPTY_INI = "[pytest]\n# pytest-persist: checking stored artifacts only\n"


def check_artifacts(
    session: Any,
    row: VersionRow,
    store_root: str | os.PathLike[str],
    report_path: str | os.PathLike[str],
    *pytest_args: str,
    saved: Sequence[VersionRow] = (),
    workers: int | None = None,
    on_report: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Check, in ``row``, the artifacts each row in ``saved`` stored under ``store_root``.

    pytest runs in an empty folder, with its empty ``pytest.ini`` as ``-c`` and ``--rootdir``
    (a path argument would otherwise lead pytest to the project's ini), so nothing of the
    project (its tests, conftest or ini options) is used: only the stored entries. One run per saved
    row, each writing ``report_path`` (a folder) / ``<saved id>__<row id>.json``; ``workers``
    adds ``-n`` (pytest-xdist, the ``xdist`` extra). Failures are the atlas' findings, so they do
    not stop the session; a saved row with no store is reported with ``session.warn``.
    ``on_report(path)`` is called after each report is written (progress of a long run).
    """
    reports: list[Path] = []
    out = Path(report_path).resolve()
    out.mkdir(parents=True, exist_ok=True)
    empty = Path(session.create_tmp()).resolve() / "persist-check"
    if empty.exists():
        shutil.rmtree(empty)
    empty.mkdir(parents=True)
    (empty / "pytest.ini").write_text(_EMPTY_INI, encoding="utf-8")
    parallel = ["-n", str(workers)] if workers and workers > 1 else []
    for saved_row in saved:
        store = Path(store_root).resolve() / saved_row.id
        if not store.is_dir():
            session.warn(f"no artifacts saved under {saved_row.id} in {store}; skipped")
            continue
        report = out / f"{saved_row.id}__{row.id}.json"
        with session.chdir(empty):
            session.run(
                "python",
                "-m",
                "pytest",
                "-c",
                str(empty / "pytest.ini"),
                "--rootdir",
                str(empty),
                "-p",
                "no:cacheprovider",
                *parallel,
                f"--persist-load={store}",
                "--persist-report",
                str(report),
                *pytest_args,
                success_codes=[0, 1],
            )
        reports.append(report)
        if on_report is not None:
            on_report(report)
    return reports


# ---------------------------------------------------------------------------------------------
# Progress of a long atlas run, shared by its sessions through files in the work folder

_STARTED = "run-started"


def start_run(work: str | os.PathLike[str]) -> None:
    """Mark the start of an atlas run in ``work``; earlier reports are removed (never merged)."""
    folder = Path(work)
    shutil.rmtree(folder / "reports", ignore_errors=True)
    (folder / "reports").mkdir(parents=True, exist_ok=True)
    (folder / _STARTED).write_text(f"{time.time()}\n", encoding="utf-8")


def run_seconds(work: str | os.PathLike[str]) -> float | None:
    """Seconds since ``start_run(work)``, or None if no run was started there."""
    try:
        return time.time() - float((Path(work) / _STARTED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def progress(work: str | os.PathLike[str], chain: Sequence[CompatPair]) -> str:
    """``"rows saved 3/11, pairs checked 12/65, 8.0 min so far, about 20 min left"``.

    Counts the reports ``save_artifacts`` and ``check_artifacts`` wrote into ``work/reports``
    since ``start_run``. The time left is estimated per kind of step: saves from the saves done
    (until the last save report was written), checks from the time since then per pair checked
    (before any check, a check is assumed to take as long as a save).
    """
    reports = Path(work) / "reports"
    rows = list(dict.fromkeys(row.id for pair in chain for row in pair))
    save_reports = [reports / f"{r}__{r}.json" for r in rows]
    saved_times = [path.stat().st_mtime for path in save_reports if path.is_file()]
    saved = len(saved_times)
    checked = sum((reports / f"{p.saved.id}__{p.loaded.id}.json").is_file() for p in chain)
    elapsed = run_seconds(work)
    text = f"rows saved {saved}/{len(rows)}, pairs checked {checked}/{len(chain)}"
    if elapsed is None:
        return text
    text += f", {elapsed / 60:.1f} min so far"
    saves_left, checks_left = len(rows) - saved, len(chain) - checked
    if saved and (saves_left or checks_left):
        started = time.time() - elapsed
        saving = max(max(saved_times) - started, 0.0)
        per_save = saving / saved
        per_check = (elapsed - saving) / checked if checked else per_save
        left = per_save * saves_left + per_check * checks_left
        text += f", about {left / 60:.0f} min left"
    return text
