"""``pytest-persist check`` and the bad input of ``pytest-persist bisect``, through the real
command line: clear messages, non-zero exits, nothing written to the store."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from store_helpers import store_model

from pytest_persist.environments.installed import installed_set

CLI = [sys.executable, "-m", "pytest_persist.cli"]


def cli(*args, cwd=None, timeout=300):
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def passing_store(root, iris):
    X, y = iris
    store_model(root, LogisticRegression(max_iter=500).fit(X, y), X, y, backend="joblib")
    return root


def failing_store(root, iris, **save_options):
    """An entry whose artifact is another model than the one its outputs came from: the check
    here finds a mismatch."""
    X, y = iris
    other = pickle.dumps(LogisticRegression(C=0.01, max_iter=500).fit(X, y))
    store_model(
        root,
        LogisticRegression(max_iter=500).fit(X, y),
        X,
        y,
        backend="pickle",
        edit=lambda data: other,
        **save_options,
    )
    return root


@pytest.fixture
def project(tmp_path):
    """A project folder whose own test fails: check must not run it."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "test_project.py").write_text("def test_the_project():\n    assert False\n")
    (folder / "conftest.py").write_text("raise RuntimeError('the project conftest ran')\n")
    return folder


def test_check_runs_only_the_store_in_an_empty_folder(tmp_path, iris, project):
    store = passing_store(tmp_path / "store", iris)
    result = cli("check", store, "--persist-report=report.json", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "test_the_project" not in result.stdout and "conftest ran" not in result.stderr
    records = json.loads((project / "report.json").read_text())["records"]  # relative path
    assert [(r["mode"], r["kind"]) for r in records] == [("check", "passed")]


def test_check_exits_with_pytest_status(tmp_path, iris, project):
    store = failing_store(tmp_path / "store", iris)
    result = cli("check", store, "-q", cwd=project)
    assert result.returncode == 1, result.stdout
    assert "mismatch" in result.stdout


def test_check_bad_store(tmp_path):
    result = cli("check", tmp_path / "missing")
    assert result.returncode == 2 and "no such store directory" in result.stderr
    (tmp_path / "empty").mkdir()
    result = cli("check", tmp_path / "empty")
    assert result.returncode == 2 and "empty store" in result.stderr


def test_bisect_a_store_where_everything_passes(tmp_path, iris):
    store = passing_store(tmp_path / "store", iris)
    before = snapshot(store)
    result = cli("bisect", store, "--cache-dir", tmp_path / "cache")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "every entry checked here passes (1 checked): nothing to bisect" in result.stderr
    assert snapshot(store) == before
    result = cli("bisect", store, "-k", "no_such_entry", "--cache-dir", tmp_path / "cache")
    assert result.returncode == 2 and "ran no stored entry" in result.stderr


def test_bisect_without_uv(tmp_path, iris):
    store = failing_store(tmp_path / "store", iris)
    result = cli("bisect", store, "--uv", tmp_path / "no-uv-here")
    assert result.returncode == 2
    assert "builds environments with uv, which is not installed here" in result.stderr
    assert "pip install uv" in result.stderr


def test_bisect_without_an_interpreter_for_the_saving_python(tmp_path, iris):
    installed = {**installed_set(), "python": "3.99.0"}
    store = failing_store(tmp_path / "store", iris, installed=installed)
    before = snapshot(store)
    result = cli(
        "bisect", store, "--cache-dir", tmp_path / "cache", "--report", tmp_path / "r.json"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no interpreter for Python 3.99.0" in result.stdout
    assert "--python 3.99=PATH" in result.stdout
    assert snapshot(store) == before
    record = json.loads((tmp_path / "r.json").read_text())["records"][0]
    assert record["status"] == "no_interpreter" and record["environments"] == []
    assert record["failure_here"].startswith("mismatch")
    assert not (tmp_path / "cache" / "envs").exists()  # nothing was built


def test_bisect_bad_store(tmp_path):
    result = cli("bisect", tmp_path / "missing")
    assert result.returncode == 2 and "no such store directory" in result.stderr
    (tmp_path / "empty").mkdir()
    assert "empty store" in cli("bisect", tmp_path / "empty").stderr
    result = cli("bisect", tmp_path / "empty", "--python", "3.10")
    assert result.returncode == 2


def test_help_has_examples_for_every_command():
    result = cli("--help")
    assert result.returncode == 0 and "examples:" in result.stdout
    for command in ("inspect", "check", "bisect"):
        sub = cli(command, "--help")
        assert sub.returncode == 0, command
        assert "examples:" in sub.stdout and f"pytest-persist {command} " in sub.stdout
        assert "exit status" in sub.stdout
    assert cli().returncode == 2  # a command is required
