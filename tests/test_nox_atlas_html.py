"""The atlas page in a real headless Chromium (Debian's ``chromium``): it loads from file://
without console errors, shows the break-point tables and draws the grid with its script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_persist import nox as pn

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
]
OLD = {"python": "3.10.13", "scikit-learn": "1.0.2", "numpy": "1.21.6", "scipy": "1.11.4"}
NEW = {"python": "3.13.0", "scikit-learn": "1.9.1", "numpy": "2.5.5", "scipy": "1.18.1"}
ROWS = [pn.VersionRow("3.10", "1.0", "1.21"), pn.VersionRow("3.13", "1.9", "2.5")]


def _report(path: Path, environment: dict, records: list[dict]) -> Path:
    report = {"format": "pytest-persist-report", "format_version": 1}
    report |= {"environment": environment, "records": records}
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def _record(kind: str, estimator: str, backend: str, saved: dict | None = None) -> dict:
    record = {"kind": kind, "estimator": estimator, "backend": backend, "mode": "roundtrip"}
    record["test_id"] = f"t.py::test[{backend}-{estimator}]"
    if kind == "load_error":
        record["error"] = "ModuleNotFoundError: No module named 'sklearn.ensemble._gb_losses'"
    if saved is not None:
        record |= {"mode": "check", "details": {"saved_environment": saved}}
    return record


def _atlas(folder: Path) -> Path:
    estimators = [f"Estimator{i}" for i in range(20)]
    backends = ["joblib", "skops", "cloudpickle", "onnx"]
    for env, name in ((OLD, "old"), (NEW, "new")):
        own = [_record("passed", e, b) for e in estimators for b in backends]
        _report(folder / f"{name}.json", env, own)
    for saved, loaded, name in ((OLD, NEW, "up"), (NEW, OLD, "down")):
        checks = [
            _record("load_error" if i % 7 == 0 else "passed", e, b, saved)
            for i, e in enumerate(estimators)
            for b in backends
        ]
        _report(folder / f"{name}.json", loaded, checks)
    written = pn.write_atlas([folder], folder / "atlas", ROWS, generated="test")
    return written["html"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get)")
def test_atlas_page_loads_in_chromium_without_console_errors(tmp_path: Path) -> None:
    page = _atlas(tmp_path)
    profile = tmp_path / "profile"
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    dom = done.stdout
    assert 'id="break-table-upgrades"' in dom
    assert 'id="break-table-downgrades"' in dom
    assert "Estimator0" in dom.split('id="grid-section"')[0]  # a break point, statically
    # the script ran: it drew the grid (20 estimators x 4 pairs for the first backend)
    assert re.search(r'data-ready-ms="\d+"', dom)
    assert len(re.findall(r'<td class="c[^"]*" style="background:[^"]+" data-k=', dom)) == 80


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get)")
def test_console_errors_are_seen(tmp_path: Path) -> None:
    """The check above can fail: a page whose script throws shows up in the log."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><script>undefinedFunction()</script>", encoding="utf-8")
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert any(
        "CONSOLE" in line and "undefinedFunction" in line for line in done.stderr.splitlines()
    )
