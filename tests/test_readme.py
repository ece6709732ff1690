"""The README tells the truth: its Python blocks run, its Layout and its links are real.

Sybil parses README.md; each ```python block is one test here, run in a fresh directory:
a block defining ``test_*`` functions runs as a test module under ``python -m pytest`` with
the plugin (every function must be collected and every item pass), a block defining
``pytest_persist_*`` hooks runs as a ``conftest.py`` under a round trip that uses what it
adds, any other block runs as a script. ``<!-- skip: next -->`` in the README excludes a
block, with its reason in the comment above it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, SkipParser

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"

# The round trips a conftest block's hooks are exercised with: its backends on a classifier,
# its ONNX converters on the estimator it defines.
BACKEND_HOOK_USER = """\
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


@pytest.mark.persist_roundtrip
def test_uses_the_hook(persist_roundtrip):
    X, y = load_iris(return_X_y=True)
    persist_roundtrip(LogisticRegression(max_iter=1000).fit(X, y), X, y)
"""
ONNX_HOOK_USER = """\
import pytest
from sklearn.datasets import load_diabetes

from conftest import {name}


@pytest.mark.persist_roundtrip
def test_uses_the_hook(persist_roundtrip):
    X, y = load_diabetes(return_X_y=True)
    persist_roundtrip({name}().fit(X, y), X, y)
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _junit_cases(path: Path) -> list[tuple[str, str]]:
    """(test name, result) for every test case of a junit XML report."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        results = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        cases.append((case.get("name", ""), results[0] if results else "passed"))
    return cases


def _run_pytest(directory: Path, *args: str) -> list[tuple[str, str]]:
    junit = directory / "junit.xml"
    run = _run(["-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *args], directory)
    assert run.returncode == 0, run.stdout + run.stderr
    return _junit_cases(junit)


def evaluate_block(example: Example) -> None:
    source = example.parsed
    directory = Path(example.namespace["tmp_path"])
    example.namespace["ran"] = example.start
    functions = re.findall(r"^def (test_\w+)", source, re.MULTILINE)
    hooks = re.findall(r"^def (pytest_persist_\w+)", source, re.MULTILINE)
    if functions:
        (directory / "test_readme_block.py").write_text(source)
        cases = _run_pytest(directory)
        ran = {name.split("[", 1)[0] for name, _ in cases}
        assert ran == set(functions), f"collected {sorted(ran)}, the block defines {functions}"
        failed = [(name, result) for name, result in cases if result not in ("passed", "skipped")]
        assert not failed, failed
        assert any(result == "passed" for _, result in cases), cases
    elif "pytest_persist_add_backends" in hooks:
        (directory / "conftest.py").write_text(source)
        (directory / "test_hook_user.py").write_text(BACKEND_HOOK_USER)
        added = re.findall(r'^\s+name = "([\w-]+)"', source, re.MULTILINE)
        assert added, "a backend hook block names no backend"
        cases = _run_pytest(directory, f"--persist-backends={','.join(added)}")
        assert sorted(cases) == sorted((f"test_uses_the_hook[{n}]", "passed") for n in added)
    elif "pytest_persist_register_onnx_converters" in hooks:
        (directory / "conftest.py").write_text(source)
        (name,) = re.findall(r"^class (\w+)", source, re.MULTILINE)
        (directory / "test_hook_user.py").write_text(ONNX_HOOK_USER.format(name=name))
        cases = _run_pytest(directory, "--persist-backends=onnx")
        assert cases == [("test_uses_the_hook[onnx]", "passed")], cases
    elif hooks:
        raise AssertionError(f"no round trip here exercises the hooks {hooks}")
    else:
        (directory / "readme_block.py").write_text(source)
        run = _run(["readme_block.py"], directory)
        assert run.returncode == 0, run.stdout + run.stderr


SYBIL = Sybil(parsers=[CodeBlockParser("python", evaluator=evaluate_block), SkipParser()])


def _blocks() -> list[tuple[int, int]]:
    """(line, offset) of every ```python block of the README."""
    document = SYBIL.parse(README)
    return [
        (document.text.count("\n", 0, e.start) + 1, e.start)
        for e in document
        if e.region.evaluator is evaluate_block
    ]


BLOCKS = _blocks()


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 6, "sybil found too few ```python blocks in README.md"


@pytest.mark.parametrize("start", [s for _, s in BLOCKS], ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block(start, tmp_path):
    # A fresh parse per block, its preceding skip directives applied, so that the blocks are
    # independent tests (any order, any xdist worker).
    for example in SYBIL.parse(README):
        if example.region.evaluator is evaluate_block and example.start != start:
            continue
        example.namespace["tmp_path"] = tmp_path
        example.evaluate()
        if example.start == start:
            break
    if example.namespace.get("ran") != start:
        pytest.skip(f"README.md:{example.line}: excluded by a skip directive (reason beside it)")


def _layout_modules() -> list[str]:
    section = README.read_text(encoding="utf-8").split("\n## Layout\n", 1)[1]
    block = section.split("```", 2)[1]
    names = []
    for line in block.splitlines():
        match = re.match(r"\s+(\S+)", line)
        if match and not line.startswith("pytest_persist/"):
            names.append(match[1])
    return names


def test_the_layout_lists_every_room_once():
    """Layout names each top-level module and each subpackage (``name/``), not every file."""
    listed = _layout_modules()
    package = ROOT / "pytest_persist"
    present = sorted(
        [p.name for p in package.iterdir() if p.is_file() and p.suffix in (".py", ".typed")]
        + [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()]
    )
    duplicated = sorted({name for name in listed if listed.count(name) > 1})
    assert not duplicated, f"listed twice in Layout: {duplicated}"
    assert sorted(listed) == present, {
        "missing from Layout": sorted(set(present) - set(listed)),
        "listed but absent": sorted(set(listed) - set(present)),
    }


def test_every_relative_link_points_to_a_committed_file():
    try:
        files = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell which files are committed")
    committed = set(files)
    committed_dirs: set[str] = set()
    for name in files:
        committed_dirs.update(str(parent) for parent in Path(name).parents)
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text(encoding="utf-8"))
    relative = [link.split("#", 1)[0] for link in links if not re.match(r"\w+:|#", link)]
    assert relative, "the README has no relative link: this test checks nothing"
    missing = [link for link in relative if link.rstrip("/") not in committed | committed_dirs]
    assert not missing, f"README links to files that are not committed: {missing}"
