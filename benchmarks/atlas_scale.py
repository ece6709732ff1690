"""The published atlas at full size, from synthetic reports: merge time, file sizes, page load.

    python benchmarks/atlas_scale.py [--estimators 150] [--out DIR] [--screenshot PNG]

Writes one JSON report per saved -> loaded pair of the default rows' chain (plus each row's own
round trips), shaped as ``pytest --persist-report`` writes them: every estimator through every
backend, a few percent failing with messages drawn from a small set (as real failures repeat).
Then merges them with ``write_atlas`` and prints the time, the three files' sizes and, when
Debian's ``chromium`` is installed, how long headless Chromium takes to load and draw the page.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_persist.nox import compat_chain, default_rows, write_atlas

BACKENDS = ["joblib", "skops", "cloudpickle", "onnx"]
ERRORS = [
    "AttributeError: Can't get attribute '_loss' on <module 'sklearn._loss'>",
    "ModuleNotFoundError: No module named 'sklearn.ensemble._gb_losses'",
    "ValueError: node array from the pickle has an incompatible dtype",
    "TypeError: __init__() got an unexpected keyword argument 'monotonic_cst'",
]


def environment(row) -> dict[str, str]:
    patch = {"1.0": "1.0.2", "1.1": "1.1.3", "1.2": "1.2.2", "1.3": "1.3.2", "1.4": "1.4.2"}
    return {
        "python": f"{row.python}.1",
        "scikit-learn": patch.get(row.sklearn, f"{row.sklearn}.1"),
        "numpy": f"{row.numpy}.4",
        "scipy": "1.15.3",
        "joblib": "1.5.2",
    }


def record(estimator: str, backend: str, kind: str, mode: str, saved, rng) -> dict:
    base = {
        "kind": kind,
        "estimator": estimator,
        "backend": backend,
        "test_id": f"examples/compat/test_compat_estimators.py::test_estimator[{backend}-"
        f"{estimator}]",
        "error": rng.choice(ERRORS) if kind in ("load_error", "method_error") else "",
        "differences": [],
        "version_warnings": [],
        "details": {"saved_environment": environment(saved)} if mode == "check" else {},
        "mode": mode,
    }
    if kind == "mismatch":
        base["differences"] = [
            {
                "method": "predict_proba",
                "message": "values differ beyond tolerance",
                "n_different": rng.randint(1, 60),
                "n_total": 180,
                "max_abs": rng.random(),
            }
        ]
    return base


def write_reports(folder: Path, n_estimators: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    rows = default_rows()
    chain = compat_chain(rows)
    estimators = [f"Estimator{i:03d}" for i in range(n_estimators)]
    written = 0
    for saved, loaded in [(r, r) for r in rows] + [(p.saved, p.loaded) for p in chain]:
        mode = "roundtrip" if saved is loaded else "check"
        records = []
        for estimator in estimators:
            for backend in BACKENDS:
                roll = rng.random()
                kind = (
                    "passed"
                    if roll < 0.9
                    else "unsupported"
                    if roll < 0.95
                    else rng.choice(["load_error", "method_error", "mismatch"])
                )
                records.append(record(estimator, backend, kind, mode, saved, rng))
        report = {
            "format": "pytest-persist-report",
            "format_version": 1,
            "environment": environment(loaded),
            "records": records,
        }
        name = f"{saved.id}__{loaded.id}.json"
        (folder / name).write_text(json.dumps(report), encoding="utf-8")
        written += len(records)
    return written


def chromium_load(page: Path, screenshot: str) -> dict[str, float]:
    chromium = shutil.which("chromium")
    if chromium is None:
        return {}
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    result = {}
    with tempfile.TemporaryDirectory() as profile:
        base = [chromium, *flags, f"--user-data-dir={profile}"]
        start = time.perf_counter()
        subprocess.run(
            [*base, "--dump-dom", page.as_uri()], capture_output=True, check=True, timeout=120
        )
        result["chromium_dump_dom_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        subprocess.run([*base, "about:blank", "--dump-dom"], capture_output=True, timeout=120)
        result["chromium_blank_s"] = round(time.perf_counter() - start, 2)
        if screenshot:
            subprocess.run(
                [*base, "--window-size=1366,900", f"--screenshot={screenshot}", page.as_uri()],
                capture_output=True,
                timeout=120,
            )
    result["page_load_s"] = round(result["chromium_dump_dom_s"] - result["chromium_blank_s"], 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--estimators", type=int, default=150)
    parser.add_argument("--out", default="")
    parser.add_argument("--screenshot", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reports, out = Path(tmp) / "reports", Path(args.out or Path(tmp) / "atlas")
        reports.mkdir()
        n_records = write_reports(reports, args.estimators)
        start = time.perf_counter()
        written = write_atlas([reports], out, default_rows(), run_seconds=1800.0)
        merge_s = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size for p in written.values()}
        atlas = json.loads(written["json"].read_text(encoding="utf-8"))
        figures = {
            "records": n_records,
            "pairs": len(atlas["pairs"]),
            "cells": len(atlas["cells"]),
            "messages": len(atlas["messages"]),
            "merge_and_render_s": round(merge_s, 2),
            **{f"{name}_MB": round(size / 1e6, 2) for name, size in sizes.items()},
            "total_MB": round(sum(sizes.values()) / 1e6, 2),
            **chromium_load(written["html"], args.screenshot),
        }
        print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
