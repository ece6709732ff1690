"""Two real version rows: an artifact saved under scikit-learn 1.0 is checked under the newest.

Builds both environments with uv from wheels (the pyenv interpreters, never downloaded) through
the same ``pytest_persist.nox`` helpers the noxfile uses, driven by a small stand-in for nox's
session. Slow (about a minute warm): ``pytest -m slow``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_persist import nox as pn
from pytest_persist.results.report import expand_environments

ROOT = Path(__file__).resolve().parents[1]

SAVED_TESTS = """
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression


@pytest.mark.persist_roundtrip(backends=["joblib"])
@pytest.mark.parametrize("model", [
    LogisticRegression(max_iter=1000), RandomForestClassifier(n_estimators=5, random_state=0)
], ids=["logistic", "forest"])
def test_model(persist_roundtrip, model):
    X, y = load_iris(return_X_y=True)
    persist_roundtrip(model.fit(X, y), X, y)
"""


class VenvSession:
    """What the helpers ask of a nox session, run for real in one uv virtualenv."""

    def __init__(self, uv: str, python: str, interpreter: str, venv: Path) -> None:
        self.uv, self.python, self.venv = uv, python, venv
        self.cwd = venv.parent
        subprocess.run([uv, "venv", "-q", "--python", interpreter, str(venv)], check=True)

    def install(self, *args: str, env: dict[str, str] | None = None) -> None:
        python = str(self.venv / "bin" / "python")
        command = [self.uv, "pip", "install", "-q", "--python", python, *args]
        subprocess.run(command, check=True, env={**os.environ, **(env or {})})

    def run(self, *args: str, success_codes: list[int] | None = None) -> None:
        env = {**os.environ, "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        env.pop("PYTHONPATH", None)
        done = subprocess.run(args, cwd=self.cwd, env=env, capture_output=True, text=True)
        assert done.returncode in (success_codes or [0]), done.stdout[-3000:] + done.stderr[-3000:]

    def warn(self, message: str) -> None:
        raise AssertionError(f"unexpected warning: {message}")

    def error(self, message: str) -> None:
        raise AssertionError(message)

    def create_tmp(self) -> str:
        tmp = self.venv.parent / f"{self.venv.name}-tmp"
        tmp.mkdir(exist_ok=True)
        return str(tmp)

    @contextlib.contextmanager
    def chdir(self, path: str | os.PathLike[str]) -> Iterator[None]:
        before, self.cwd = self.cwd, Path(path)
        try:
            yield
        finally:
            self.cwd = before


def _interpreter(python: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # restored after the test
    pn.add_pyenv_to_path([python])
    found = shutil.which(f"python{python}")
    if found is None:
        pytest.skip(f"Python {python} not found (pyenv or PATH); this test never downloads one")
    return found


@pytest.mark.slow
def test_artifact_saved_in_an_old_row_is_checked_in_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("uv not found: put it on PATH or set UV=/path/to/uv")
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    rows = pn.default_rows()
    old, new = rows[0], rows[-1]  # scikit-learn 1.0 / numpy 1.21 and the newest on numpy 2
    sessions: dict[str, VenvSession] = {}
    for row in (old, new):
        interpreter = _interpreter(row.python, monkeypatch)
        session = VenvSession(uv, row.python, interpreter, tmp_path / row.id)
        pn.install_row(session, row, extras=(), project=str(ROOT))
        sessions[row.id] = session

    work = tmp_path / "saving"
    work.mkdir()
    (work / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (work / "test_saved.py").write_text(SAVED_TESTS, encoding="utf-8")
    saving = sessions[old.id]
    saving.cwd = work
    saved_report = tmp_path / "reports" / f"{old.id}__{old.id}.json"
    store = pn.save_artifacts(
        saving, old, tmp_path / "store", tests=["test_saved.py"], report_path=saved_report
    )
    assert len(list(store.iterdir())) == 2

    (checked,) = pn.check_artifacts(
        sessions[new.id], new, tmp_path / "store", tmp_path / "reports", saved=[old]
    )
    report = expand_environments(json.loads(checked.read_text(encoding="utf-8")))
    assert report["environment"]["scikit-learn"].startswith("1.9")
    records: list[dict[str, Any]] = report["records"]
    assert {r["test_id"] for r in records} == {
        "test_saved.py::test_model[joblib-logistic]",
        "test_saved.py::test_model[joblib-forest]",
    }
    assert {r["mode"] for r in records} == {"check"}  # nothing of the project was collected
    assert len(records) == 2
    for record in records:
        assert record["kind"] in {"passed", "mismatch", "load_error", "method_error"}, record
        saved_env = record["details"]["saved_environment"]
        assert saved_env["scikit-learn"] == "1.0.2"
        assert record["details"]["loaded_environment"]["scikit-learn"].startswith("1.9")
    forest = next(r for r in records if r["estimator"] == "RandomForestClassifier")
    warned = {(w["original_version"], w["current_version"][:3]) for w in forest["version_warnings"]}
    assert warned == {("1.0.2", "1.9")}, forest
    assert {w["estimator"] for w in forest["version_warnings"]} >= {"DecisionTreeClassifier"}

    atlas = pn.merge_reports([saved_report, checked], [old, new])
    assert f"{old.id} -> {new.id}" in atlas["pairs"]
    assert f"{old.id} -> {old.id}" in atlas["pairs"]


UNINSTALLABLE_NOXFILE = """
import nox
from pytest_persist import nox as persist

nox.options.default_venv_backend = "uv"
nox.options.download_python = "never"
persist.add_pyenv_to_path(["3.11"])
# Possible as far as the wheel tables know; the resolver finds no scipy older than 1.0 for it.
ROW = persist.VersionRow("3.11", "1.3", "1.26", pins=("scipy<1.0",), id="scipy-from-the-past")


@nox.session(python="3.11")
def bad(session):
    persist.install_row(session, ROW, extras=())
"""


@pytest.mark.slow
def test_a_row_that_cannot_install_fails_its_session_naming_row_and_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("nox")
    _interpreter("3.11", monkeypatch)
    (tmp_path / "noxfile.py").write_text(UNINSTALLABLE_NOXFILE, encoding="utf-8")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "nox", "-s", "bad"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    failed = next(line for line in output.splitlines() if "cannot be installed" in line)
    assert "row scipy-from-the-past cannot be installed from wheels" in failed
    assert "scipy" in failed.split("cannot be installed from wheels:")[1]  # the resolver's reason
