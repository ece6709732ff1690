"""Session helpers for noxfiles: install a row, save artifacts in it, check stored ones.

Importing this module never imports nox: only ``parametrize_rows`` does, lazily.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .version_rows import (
    DEFAULT_EXTRAS,
    RowInstall,
    VersionRow,
    _vtuple,
    row_install_args,
    validate_rows,
)

__all__ = [
    "IMPORT_CHECK",
    "add_pyenv_to_path",
    "check_artifacts",
    "install_row",
    "parametrize_rows",
    "save_artifacts",
]

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
    session.install("--only-binary", ":all:", *plan.requirements, *packages)
    session.install("--no-deps", project)
    session.run("python", "-c", IMPORT_CHECK)
    return plan


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
) -> list[Path]:
    """Check, in ``row``, the artifacts each row in ``saved`` stored under ``store_root``.

    pytest runs in an empty folder, with its empty ``pytest.ini`` as ``-c`` and ``--rootdir``
    (a path argument would otherwise lead pytest to the project's ini), so nothing of the
    project (its tests, conftest or ini options) is used: only the stored entries. One run per saved
    row, each writing ``report_path`` (a folder) / ``<saved id>__<row id>.json``; ``workers``
    adds ``-n`` (pytest-xdist, the ``xdist`` extra). Failures are the atlas' findings, so they do
    not stop the session; a saved row with no store is reported with ``session.warn``.
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
    return reports
