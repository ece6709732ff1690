"""``pytest-persist bisect`` for real: a HistGradientBoostingClassifier saved by this test in
an environment it builds with uv (scikit-learn 1.2.2, numpy 1.26.4, Python 3.11), bisected
against this environment. scikit-learn 1.3.0 still loads and predicts it; 1.3.1, a patch
release, breaks predict ("Buffer dtype mismatch")."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sklearn
from packaging.version import Version

from pytest_persist.environments.rebuild import EnvironmentBuilder, find_python, find_uv

ROOT = Path(__file__).resolve().parent.parent
UV = find_uv()
needs_uv = pytest.mark.skipif(UV is None, reason="uv is not installed (pytest-persist[bisect])")

SAVING_TEST = textwrap.dedent(
    """
    import pytest
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier


    @pytest.mark.persist_roundtrip(backends=["joblib"])
    def test_boosting(persist_roundtrip):
        X, y = make_classification(n_samples=300, n_features=6, random_state=0)
        model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
        persist_roundtrip(model, X, y)
    """
)


def run(command, **options):
    result = subprocess.run(command, capture_output=True, text=True, **options)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@needs_uv
def test_environments_are_cached_by_their_resolved_set(tmp_path):
    builder = EnvironmentBuilder(UV, tmp_path)
    python = sys.executable
    version = ".".join(map(str, sys.version_info[:3]))
    first = builder.build(python, version, ["iniconfig"], {"iniconfig": "2.0.0"})
    assert first.installed == {"iniconfig": "2.0.0"} and not first.reused
    again = builder.build(python, version, ["iniconfig"], {"iniconfig": "2.0.0"})
    assert again.reused and again.path == first.path
    moved = builder.build(python, version, ["iniconfig==2.1.0"], {})
    assert moved.path != first.path and moved.installed == {"iniconfig": "2.1.0"}
    assert (builder.built, builder.reused) == (2, 1)
    run([first.python, "-c", "import iniconfig"])


@needs_uv
@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11) or Version(sklearn.__version__) < Version("1.4"),
    reason="the measured case: Python 3.11 here, and a scikit-learn here that fails the entry",
)
def test_bisect_finds_the_patch_release(tmp_path):
    interpreter = find_python("3.11", uv=UV)
    assert interpreter is not None
    wheels = tmp_path / "wheels"
    run([UV, "build", "--wheel", "--quiet", "--no-config", "--out-dir", str(wheels), str(ROOT)])
    saver = tmp_path / "saver"
    run([UV, "venv", "--quiet", "--no-config", "--python", interpreter[0], str(saver)])
    run(
        [
            UV, "pip", "install", "--quiet", "--no-config", "--only-binary", ":all:",
            "--python", str(saver / "bin" / "python"),
            "scikit-learn==1.2.2", "numpy==1.26.4", str(next(wheels.glob("*.whl"))),
        ]
    )  # fmt: skip
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_saving.py").write_text(SAVING_TEST)
    store = tmp_path / "store"
    saved = run(
        [str(saver / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--persist-save={store}", "test_saving.py"],
        cwd=project,
    )  # fmt: skip
    assert "saved 1 artifact" in saved.stdout
    entry = json.loads(next(store.glob("*/entry.json")).read_text())
    assert entry["installed"]["distributions"]["scikit-learn"] == "1.2.2"

    report = tmp_path / "bisect.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest_persist.cli", "bisect", str(store),
         "--report", str(report), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "HistGradientBoostingClassifier [joblib]: breaks at scikit-learn 1.3.1 "
        "(passes with 1.3.0)" in result.stdout
    ), result.stdout
    assert "pytest-persist bisect: [1] the saved environment, rebuilt" not in result.stdout
    assert "the saved environment, rebuilt ..." in result.stderr  # progress lines
    data = json.loads(report.read_text())
    assert data["format"] == "pytest-persist-bisect"
    (record,) = data["records"]
    assert record["test_id"] == "test_saving.py::test_boosting[joblib]"
    assert record["backend"] == "joblib"
    assert record["status"] == "found"
    assert record["first_bad"] == {"package": "scikit-learn", "version": "1.3.1"}
    assert record["last_good"] == {"package": "scikit-learn", "version": "1.3.0"}
    assert record["failure"]["last_good"] == "pass"
    assert "Buffer dtype mismatch" in record["failure"]["first_bad"]
    assert record["failure"]["here"].startswith(("load_error", "method_error"))
    tried = record["environments"]
    assert tried[0]["moves"] == {} and tried[0]["status"] == "pass"
    assert {"scikit-learn": "1.3.1"} in [t["moves"] for t in tried]
    for trial in tried:
        if trial["status"] != "broken":  # built, resolved as asked
            wanted = trial["moves"].get("scikit-learn", "1.2.2")
            assert trial["installed"]["scikit-learn"] == wanted, trial
    keys = {t["details"].get("key") for t in tried} - {None}
    assert data["environments_built"] == len(keys)  # a fresh cache: each built once
