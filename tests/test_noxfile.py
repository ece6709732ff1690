"""The project's noxfile and the README's example noxfile, as nox lists them (nothing is built)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("nox")


def nox_list(folder: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "nox", "--json", "-l", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_tests_is_the_only_default_session() -> None:
    sessions = nox_list(ROOT)
    assert {s["name"] for s in sessions} == {"tests"}
    assert [s["python"] for s in sessions] == ["3.10", "3.11", "3.12", "3.13"]


def test_atlas_requires_compat_which_requires_save() -> None:
    from pytest_persist import nox as pn

    sessions = nox_list(ROOT, "-s", "atlas")
    names = [s["name"] for s in sessions]
    assert names[-1] == "atlas"
    assert names.index("compat") > max(i for i, n in enumerate(names) if n == "save")
    rows = [s["session"] for s in sessions if s["name"] == "save"]
    assert all(re.fullmatch(r"save\(py3\.\d+-skl1\.\d+-np[12]\.\d+\)", r) for r in rows)
    compat = [s for s in sessions if s["name"] == "compat"]
    assert len(compat) == len(rows) >= 4
    ids = {row.id for row in pn.default_rows()}
    assert all(s["session"][len("compat(") : -1] in ids for s in compat)
    matrix = nox_list(ROOT, "-s", "matrix")
    assert len(matrix) == len(pn.default_rows())


def test_readme_user_noxfile_lists_its_sessions(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(# noxfile\.py\n.*?)```", readme, re.S)
    assert match, "the README's example noxfile (a python block starting '# noxfile.py')"
    (tmp_path / "noxfile.py").write_text(match.group(1), encoding="utf-8")
    names = [s["name"] for s in nox_list(tmp_path, "-s", "atlas")]
    assert names[-1] == "atlas" and "save" in names and "compat" in names
    assert nox_list(tmp_path) == []  # nothing heavy by default
