"""After ``--persist-save`` the terminal says how many artifacts were saved, how big, and where:
serially and under xdist, where the controller counts what the workers saved."""

from __future__ import annotations

import re

import pytest

from pytest_persist.store.entries import entry_dirs

SUITE = """
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

IRIS = load_iris(return_X_y=True)


@pytest.mark.persist_roundtrip(backends=["pickle", "joblib"])
@pytest.mark.parametrize("depth", [2, 3])
def test_tree(persist_roundtrip, depth):
    X, y = IRIS
    persist_roundtrip(DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_linear(persist_roundtrip):
    X, y = IRIS
    persist_roundtrip(LogisticRegression(max_iter=500).fit(X, y), X, y)


@pytest.mark.persist_roundtrip(backends=["pickle"])
def test_fails_before_saving(persist_roundtrip):
    X, y = IRIS
    persist_roundtrip(DecisionTreeClassifier().fit(X, y), X, y)
    raise AssertionError("after the round trip")
"""

LINE = re.compile(
    r"^pytest-persist: saved (\d+) artifacts \((\S+) MB\) to (.+) \((\d+) replaced\)$", re.MULTILINE
)


def _store_megabytes(store) -> str:
    total = sum(
        path.stat().st_size
        for entry in entry_dirs(store)
        for path in entry.rglob("*")
        if path.is_file()
    )
    return f"{total / 1e6:.3g}"


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_save_prints_count_size_and_directory(run_suite, pytester, xdist):
    run = run_suite(SUITE, *xdist, "--persist-save", "store")
    store = pytester.path / "store"
    saved = entry_dirs(store)
    # 2 trees x 2 backends + 1 linear + the one whose test failed after its round trip
    assert len(saved) == 6
    (line,) = LINE.findall(run.text)
    count, megabytes, directory, replaced = line
    assert int(count) == len(saved) and replaced == "0"
    assert megabytes == _store_megabytes(store)
    assert directory == str(store.resolve())


def test_no_line_without_persist_save(run_suite):
    run = run_suite(SUITE, "-k", "test_linear")
    assert "pytest-persist: saved" not in run.text
