"""``pytest-persist inspect`` through the real command line, on real files of fitted models and
on hostile ones: it says what each is, and never runs or imports what a file names."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from store_helpers import store_model

CLI = [sys.executable, "-m", "pytest_persist.cli"]


def inspect(path, *args, env=None):
    result = subprocess.run(
        [*CLI, "inspect", str(path), *args], capture_output=True, text=True, env=env, timeout=120
    )
    return result


def inspect_json(path, env=None):
    result = inspect(path, "--json", env=env)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def forest():
    X, y = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), X, y


@pytest.fixture(scope="module")
def files(tmp_path_factory, forest):
    """One real file per format, of a fitted forest (a pipeline with a lambda for
    cloudpickle)."""
    model, X, y = forest
    folder = tmp_path_factory.mktemp("model-files")
    made = {}
    made["pickle"] = folder / "forest.pkl"
    made["pickle"].write_bytes(pickle.dumps(model, protocol=5))
    made["joblib"] = folder / "forest.joblib"
    joblib.dump(model, made["joblib"])
    for compression in ("zlib", "gzip", "bz2", "xz", "lzma"):
        made[compression] = folder / f"forest.joblib.{compression}"
        joblib.dump(model, made[compression], compress=(compression, 3))
    import cloudpickle

    lam = make_pipeline(FunctionTransformer(lambda x: x + 1), LogisticRegression()).fit(X, y)
    made["cloudpickle-lambda"] = folder / "lambda.cloudpkl"
    made["cloudpickle-lambda"].write_bytes(cloudpickle.dumps(lam))
    import skops.io

    made["skops"] = folder / "forest.skops"
    skops.io.dump(model, made["skops"])
    from skl2onnx import to_onnx

    made["onnx"] = folder / "forest.onnx"
    made["onnx"].write_bytes(to_onnx(model, X[:1].astype(np.float32)).SerializeToString())
    return made


@pytest.mark.parametrize(
    ("name", "fmt", "compression"),
    [
        ("pickle", "pickle", None),
        ("joblib", "joblib", None),
        ("zlib", "joblib-compressed", "zlib"),
        ("gzip", "joblib-compressed", "gzip"),
        ("bz2", "joblib-compressed", "bz2"),
        ("xz", "joblib-compressed", "xz"),
        ("lzma", "joblib-compressed", "lzma"),
    ],
)
def test_pickle_family_files_say_what_they_are(files, name, fmt, compression):
    code, data = inspect_json(files[name])
    assert code == 0, data
    assert data["format"] == fmt and data["compression"] == compression
    assert data["verdict"] == "clean" and data["dangerous"] == []
    assert data["top_class"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert list(data["sklearn_versions"]) == [sklearn.__version__]
    assert "RandomForestClassifier" in data["sklearn_versions"][sklearn.__version__]
    imported = {(i["module"], i["name"]) for i in data["imports"]}
    assert ("sklearn.tree._tree", "Tree") in imported
    assert ("sklearn.tree._classes", "DecisionTreeClassifier") in imported


def test_joblib_globals_after_the_first_array_are_found(files):
    """picklescan's own reading stops at joblib's first raw array; the stand-in reader
    goes on, so the tree class, pickled after the arrays, is listed."""
    _, data = inspect_json(files["joblib"])
    tree = next(i for i in data["imports"] if i["name"] == "Tree")
    assert tree["seen_by"] == ["reader"]  # picklescan alone would not list it
    assert data["joblib_arrays"] > 1
    assert any("stopped at the first raw joblib array" in n for n in data["notes"])


def test_plain_pickle_agrees_with_picklescan(files):
    _, data = inspect_json(files["pickle"])
    assert all(i["seen_by"] == ["reader", "picklescan"] for i in data["imports"]), data


def test_terminal_text(files):
    result = inspect(files["joblib"])
    assert result.returncode == 0, result.stderr
    assert f"saved with scikit-learn {sklearn.__version__}" in result.stdout
    assert "joblib file" in result.stdout
    assert "verdict: clean" in result.stdout


def test_cloudpickle_with_a_lambda_would_run_code(files):
    code, data = inspect_json(files["cloudpickle-lambda"])
    assert code == 1
    assert data["format"] == "cloudpickle" and data["verdict"] == "dangerous"
    assert "cloudpickle.cloudpickle._make_function" in data["dangerous"]
    assert list(data["sklearn_versions"]) == [sklearn.__version__]


def test_skops_untrusted_types_and_version(files):
    code, data = inspect_json(files["skops"])
    assert code == 0, data
    assert data["format"] == "skops"
    assert data["untrusted_types"] == ["sklearn.tree._tree.Tree"]
    assert list(data["sklearn_versions"]) == [sklearn.__version__]
    assert data["top_class"] == "sklearn.ensemble._forest.RandomForestClassifier"


def test_onnx_opsets_operators_producer(files):
    import skl2onnx

    code, data = inspect_json(files["onnx"])
    assert code == 0, data
    assert data["format"] == "onnx"
    assert data["onnx"]["producer"] == f"skl2onnx {skl2onnx.__version__}"
    assert "ai.onnx.ml" in data["onnx"]["opsets"] and "ai.onnx" in data["onnx"]["opsets"]
    assert "ai.onnx.ml.TreeEnsembleClassifier" in data["onnx"]["operators"]
    assert data["sklearn_versions"] == {}
    assert any("do not record the scikit-learn version" in n for n in data["notes"])


# ----------------------------------------------------------------------------------------------
# hostile files: a marker file proves whether anything ran


EVIL = textwrap.dedent(
    """
    import os, pickle, sys
    import joblib
    import numpy as np

    MARKER = sys.argv[1]
    OUT = sys.argv[2]

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {MARKER}",))

    X = np.arange(40.0).reshape(10, 4)
    with open(f"{OUT}/evil.pkl", "wb") as f:
        pickle.dump({"model": Evil()}, f, protocol=5)
    # after a raw array in the joblib stream, where picklescan stops reading
    joblib.dump({"X": X, "then": Evil()}, f"{OUT}/evil_after_array.joblib")
    # inside an object array: joblib writes it as a nested pickle after the array wrapper
    holder = np.empty(2, dtype=object)
    holder[0], holder[1] = "fine", Evil()
    joblib.dump({"X": X, "objects": holder}, f"{OUT}/evil_object_array.joblib")
    joblib.dump({"X": X, "then": Evil()}, f"{OUT}/evil_compressed.joblib", compress=3)
    """
)
LOADERS = {
    "evil.pkl": "import pickle; pickle.load(open({path!r}, 'rb'))",
    "evil_after_array.joblib": "import joblib; joblib.load({path!r})",
    "evil_object_array.joblib": "import joblib; joblib.load({path!r})",
    "evil_compressed.joblib": "import joblib; joblib.load({path!r})",
}


def make_evil(folder: Path) -> Path:
    """The hostile files in ``folder``; returns the marker their command would create."""
    marker = folder / "RAN"
    script = folder / "make_evil.py"
    script.write_text(EVIL)
    subprocess.run([sys.executable, str(script), str(marker), str(folder)], check=True)
    assert not marker.exists()
    return marker


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_file_that_would_run_code_exits_non_zero_and_never_runs(tmp_path, name):
    marker = make_evil(tmp_path)
    result = inspect(tmp_path / name)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DANGEROUS" in result.stdout and "posix.system" in result.stdout
    assert "loading this file would run code" in result.stdout
    assert not marker.exists(), "inspect ran the file"
    # the file is real: loading it the ordinary way does run the command
    load = LOADERS[name].format(path=str(tmp_path / name))
    subprocess.run([sys.executable, "-c", load], check=False, capture_output=True)
    assert marker.exists()


def test_what_picklescan_alone_misses_after_a_joblib_array_is_found(tmp_path):
    """Why the stand-in reader is there: picklescan's scan of the same file reports no
    dangerous global at all; inspect finds os.system, listed as seen by the reader alone."""
    from picklescan.scanner import scan_file_path

    make_evil(tmp_path)
    path = tmp_path / "evil_after_array.joblib"
    assert not any(g.safety.value == "dangerous" for g in scan_file_path(str(path)).globals)
    code, data = inspect_json(path)
    assert code == 1 and data["dangerous"] == ["posix.system"]
    system = next(i for i in data["imports"] if i["name"] == "system")
    assert system["seen_by"] == ["reader"]


MODULE = textwrap.dedent(
    """
    import pathlib, os
    pathlib.Path(os.environ["IMPORT_MARKER"]).write_text("imported")
    from sklearn.base import BaseEstimator

    class Thing(BaseEstimator):
        def __init__(self, a=1):
            self.a = a

        def fit(self, X, y=None):
            self.fitted_ = True
            return self
    """
)


def test_nothing_a_file_names_is_imported(tmp_path):
    """A pickle and a skops file of a class whose module leaves a marker when imported:
    inspect lists the class and the marker never appears."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "markermod.py").write_text(MODULE)
    marker = tmp_path / "IMPORTED"
    path = os.pathsep.join(p for p in (str(lib), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "IMPORT_MARKER": str(marker)}
    make = (
        "import pickle, skops.io, markermod\n"
        "m = markermod.Thing().fit([[0]])\n"
        f"pickle.dump(m, open({str(tmp_path / 'thing.pkl')!r}, 'wb'))\n"
        f"skops.io.dump(m, {str(tmp_path / 'thing.skops')!r})\n"
    )
    subprocess.run([sys.executable, "-c", make], check=True, env=env)
    marker.unlink()
    for name in ("thing.pkl", "thing.skops"):
        code, data = inspect_json(tmp_path / name, env=env)
        assert code == 0, data
        assert ("markermod", "Thing") in {(i["module"], i["name"]) for i in data["imports"]}
        assert not marker.exists(), f"inspect imported markermod for {name}"
    assert data["untrusted_types"] == ["markermod.Thing"]


# ----------------------------------------------------------------------------------------------
# bad input


def test_not_a_model_file(tmp_path):
    cases = {
        "notes.txt": b"In 2020 I trained a model\n",
        "archive.zip": None,
        "array.npy": None,
        "empty.bin": b"",
    }
    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as archive:
        archive.writestr("weights.bin", b"\0" * 10)
    np.save(tmp_path / "array.npy", np.arange(3))
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        result = inspect(tmp_path / name)
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert result.stdout == ""
        assert "pytest-persist:" in result.stderr
    assert "not a model file" in inspect(tmp_path / "notes.txt").stderr
    assert "without schema.json" in inspect(tmp_path / "archive.zip").stderr
    assert "numpy .npy" in inspect(tmp_path / "array.npy").stderr
    assert "no such file" in inspect(tmp_path / "missing.pkl").stderr
    assert "not a store entry" in inspect(tmp_path).stderr


def test_a_truncated_pickle_is_incomplete(tmp_path, files):
    data = files["joblib"].read_bytes()
    cut = tmp_path / "cut.joblib"
    cut.write_bytes(data[: len(data) // 2])
    result = inspect(cut)
    assert result.returncode == 3, result.stdout
    assert "INCOMPLETE" in result.stdout


def test_a_decompression_bomb_is_capped(tmp_path, forest):
    model, _, _ = forest
    path = tmp_path / "big.joblib"
    joblib.dump({"model": model, "zeros": np.zeros(2_000_000)}, path, compress=9)
    result = inspect(path, "--max-bytes", "1MiB")
    assert result.returncode == 2, result.stdout
    assert "decompresses to more than" in result.stderr
    assert inspect(path).returncode == 0


# ----------------------------------------------------------------------------------------------
# store entries


def test_inspect_an_entry_shows_its_environment(tmp_path, forest):
    model, X, y = forest
    entry = store_model(tmp_path / "store", model, X, y, backend="joblib")
    result = inspect(entry.path)
    assert result.returncode == 0, result.stderr
    assert f"store entry of {entry.test_id} [joblib]" in result.stdout
    assert f"scikit-learn {sklearn.__version__}" in result.stdout
    assert "installed set:" in result.stdout and "distributions recorded" in result.stdout
    assert "every file matches its sha256" in result.stdout
    assert "joblib file" in result.stdout
    _, data = inspect_json(entry.path)
    assert data["entry"]["installed"]["distributions"]["scikit-learn"] == sklearn.__version__
    assert data["entry"]["test_id"] == entry.test_id


def test_inspect_a_tampered_entry_says_so(tmp_path, forest):
    model, X, y = forest
    entry = store_model(tmp_path / "store", model, X, y, backend="pickle")
    shutil.copyfile(entry.artifact_path, tmp_path / "copy")
    entry.artifact_path.write_bytes(pickle.dumps(LogisticRegression()))
    result = inspect(entry.path)
    assert "TAMPERED" in result.stdout
    assert "LogisticRegression" in result.stdout


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "pytest-persist"
    if not script.exists():
        pytest.skip("pytest-persist is not installed in this environment (only importable)")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("inspect", "check", "bisect"):
        assert command in result.stdout
        sub = subprocess.run([str(script), command, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0 and "examples:" in sub.stdout, command
