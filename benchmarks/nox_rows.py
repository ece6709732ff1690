"""Time building each default version row with uv from wheels, cold and warm, and check it imports.

    python benchmarks/nox_rows.py [--rows all|ID,ID] [--out rows.json] [--warm-shared]

Cold: a fresh, empty uv cache (everything downloaded). Warm: a new venv from the same cache (what
nox does on a second run, or CI with a cached uv folder). ``--warm-shared`` then installs each
row once more with the user's own uv cache (``UV_CACHE_DIR`` or uv's default), so that a later
``nox -s atlas`` starts warm; its time is ``shared_s``. Rows install what the noxfile installs
(the default extras and pytest-xdist). Needs uv on PATH (or UV=...) and the row's interpreters
under ``$PYENV_ROOT/versions``; never downloads an interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_persist.nox import (
    DEFAULT_EXTRAS,
    IMPORT_CHECK,
    add_pyenv_to_path,
    default_rows,
    row_install_args,
)

PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas", "skops", "skl2onnx", "onnxruntime", "onnx")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return done.returncode, time.perf_counter() - start, done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="all")
    parser.add_argument("--out", default="")
    parser.add_argument("--warm-shared", action="store_true")
    args = parser.parse_args()
    rows = default_rows()
    if args.rows != "all":
        wanted = set(args.rows.split(","))
        rows = [row for row in rows if row.id in wanted]
    missing = add_pyenv_to_path(row.python for row in rows)
    if missing:
        print(f"no interpreter for Python {', '.join(missing)}", file=sys.stderr)
        return 2
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"
    results = []
    with tempfile.TemporaryDirectory(prefix="nox-rows-") as tmp:
        for row in rows:
            plan = row_install_args(row, [*DEFAULT_EXTRAS, "xdist"])
            cache = Path(tmp) / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            env = dict(os.environ, UV_CACHE_DIR=str(cache), UV_PYTHON_DOWNLOADS="never")
            result: dict[str, object] = {"row": row.id, "requirements": plan.requirements}
            shared = {k: v for k, v in os.environ.items() if k != "UV_CACHE_DIR"}
            shared["UV_PYTHON_DOWNLOADS"] = "never"
            passes = [("cold_s", env), ("warm_s", env)]
            if args.warm_shared:
                passes.append(("shared_s", shared))
            for label, env in passes:
                venv = Path(tmp) / "venv"
                shutil.rmtree(venv, ignore_errors=True)
                start = time.perf_counter()
                rc, _, out = _run([uv, "venv", "-q", "--python", row.python, str(venv)], env)
                if not rc:
                    python = str(venv / "bin" / "python")
                    install = [uv, "pip", "install", "-q", "--python", python]
                    rc, _, out = _run([*install, "--only-binary", ":all:", *plan.requirements], env)
                result[label] = round(time.perf_counter() - start, 1)
                if rc:
                    result["error"] = out[-2000:]
                    break
            if "error" not in result:
                rc, _, out = _run([python, "-W", "ignore", "-c", IMPORT_CHECK], env)
                result["imports"] = rc == 0
                listed = _run([uv, "pip", "list", "--python", python, "--format", "json"], env)[2]
                start = listed.find("[")
                versions = json.JSONDecoder().raw_decode(listed[start:])[0] if start >= 0 else []
                result["versions"] = {
                    p["name"]: p["version"] for p in versions if p["name"] in PACKAGES
                }
            results.append(result)
            shown = {k: v for k, v in result.items() if k != "requirements"}
            print(json.dumps(shown), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0 if all(r.get("imports") for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
