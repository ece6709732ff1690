"""Environments built and wall time of one ``pytest-persist bisect``, with a cold and a warm
uv cache.

A store of two entries is saved in an environment built with uv (Python 3.11, scikit-learn
1.2.2, numpy 1.26.4): a RandomForestClassifier and a HistGradientBoostingClassifier, both
through joblib. Then it is bisected from this environment three times:

* cold: an empty uv cache (``UV_CACHE_DIR``) and an empty environment cache: every wheel is
  downloaded and every environment built;
* warm: uv's cache as the cold run left it, an empty environment cache: every environment is
  built again, from cached wheels;
* cached: both caches as the warm run left them: no environment is built.

    python benchmarks/bisect.py [--python /path/to/python3.11] [--keep DIR]

Needs uv, the network (PyPI) and an interpreter for Python 3.11.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on the path, and this file would stand in
# for the standard library's bisect (which tempfile's random imports).
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import json
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from pytest_persist.environments.rebuild import find_python, find_uv

ROOT = Path(__file__).resolve().parent.parent
SAVING_TESTS = textwrap.dedent(
    """
    import pytest
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    X, y = make_classification(n_samples=300, n_features=6, random_state=0)


    @pytest.mark.persist_roundtrip(backends=["joblib"])
    def test_forest(persist_roundtrip):
        persist_roundtrip(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), X, y)


    @pytest.mark.persist_roundtrip(backends=["joblib"])
    def test_boosting(persist_roundtrip):
        model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
        persist_roundtrip(model, X, y)
    """
)


def run(command: list[str], **options) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, **options)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="a Python 3.11 for the saving environment")
    parser.add_argument("--keep", help="keep the store and caches in this folder")
    args = parser.parse_args()
    uv = find_uv()
    if uv is None:
        raise SystemExit("needs uv: pip install uv")
    interpreter = args.python or (find_python("3.11", uv=uv) or [None])[0]
    if interpreter is None:
        raise SystemExit("needs a Python 3.11 (--python PATH)")
    with tempfile.TemporaryDirectory(prefix="bench-bisect-") as temp:
        work = Path(args.keep or temp)
        work.mkdir(parents=True, exist_ok=True)
        uv_cache = work / "uv-cache"
        environ = {**os.environ, "UV_CACHE_DIR": str(uv_cache)}
        started = time.perf_counter()
        run([uv, "build", "--wheel", "-q", "--out-dir", str(work / "wheels"), str(ROOT)])
        saver = work / "saver"
        run([uv, "venv", "-q", "--python", interpreter, str(saver)])
        run(
            [uv, "pip", "install", "-q", "--only-binary", ":all:",
             "--python", str(saver / "bin" / "python"), "scikit-learn==1.2.2", "numpy==1.26.4",
             str(next((work / "wheels").glob("*.whl")))],
            env={**os.environ, "UV_CACHE_DIR": str(work / "uv-cache-saver")},
        )  # fmt: skip
        (work / "test_saving.py").write_text(SAVING_TESTS)
        store = work / "store"
        run(
            [str(saver / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--persist-save={store}", "test_saving.py"],
            cwd=work,
        )  # fmt: skip
        print(f"saved the store in {time.perf_counter() - started:.1f} s (not counted)")
        print(f"{'run':8} {'built':>6} {'reused':>6} {'wall':>8}  lines")
        for name, envs in (("cold", "envs-1"), ("warm", "envs-2"), ("cached", "envs-2")):
            report = work / f"bisect-{name}.json"
            began = time.perf_counter()
            run(
                [sys.executable, "-m", "pytest_persist.cli", "bisect", str(store),
                 "--report", str(report), "--cache-dir", str(work / envs)],
                env=environ,
            )  # fmt: skip
            wall = time.perf_counter() - began
            data = json.loads(report.read_text())
            lines = [r["label"] + ": " + r["message"] for r in data["records"]]
            print(
                f"{name:8} {data['environments_built']:>6} {data['environments_reused']:>6} "
                f"{wall:>7.1f}s  " + " | ".join(lines)
            )
            for record in data["records"]:
                checks = [t["seconds"] for t in record["environments"]]
                print(
                    f"{'':8} {record['label']}: {len(checks)} environments tried, "
                    f"{sum(checks):.1f} s in them (build + check), {record['seconds']:.1f} s"
                )


if __name__ == "__main__":
    main()
