"""``pytest-persist adopt``: model files users already have, as store entries, through the real
command line; then checked like any entry by ``pytest --persist-load``."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

CLI = [sys.executable, "-m", "pytest_persist.cli", "adopt"]


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = load_iris(return_X_y=True)
    np.save("X.npy", X)
    np.save("y.npy", y)
    return tmp_path


def adopt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True)


def check(store: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", f"--persist-load={store}",
         "--persist-report=r.json", *args],
        capture_output=True,
        text=True,
    )  # fmt: skip


def only_entry(store: Path) -> Path:
    [entry] = [p for p in store.iterdir() if p.is_dir()]
    return entry


def test_a_joblib_forest_is_adopted_untouched_and_checks(here):
    X, y = load_iris(return_X_y=True)
    joblib.dump(RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y), "rf.joblib")
    done = adopt("rf.joblib", "--data", "X.npy", "--y", "y.npy", "--store", "store")
    assert done.returncode == 0, done.stderr
    assert "RandomForestClassifier via joblib" in done.stdout
    assert "this signature vouches for the file" in done.stdout
    entry = only_entry(here / "store")
    manifest = json.loads((entry / "entry.json").read_text())
    assert manifest["backend"] == "joblib" and manifest["test_id"] == "adopted::rf.joblib"
    assert manifest["methods"] == ["predict", "predict_proba", "predict_log_proba", "score"]
    digest = hashlib.sha256(Path("rf.joblib").read_bytes()).hexdigest()
    assert manifest["files"][manifest["artifact"]]["sha256"] == digest  # untouched
    assert manifest["extra"]["adopted_from"] == str(here / "rf.joblib")

    result = check("store")
    assert result.returncode == 0, result.stdout
    [record] = json.loads(Path("r.json").read_text())["records"]
    assert record["kind"] == "passed" and record["details"]["signature"]["status"] == "trusted"
    assert record["compared_methods"] == manifest["methods"]


def test_a_transformer_gets_transform_and_inverse_transform(here):
    X, _ = load_iris(return_X_y=True)
    with open("pca.pkl", "wb") as handle:
        pickle.dump(PCA(n_components=2).fit(X), handle, protocol=5)
    done = adopt("pca.pkl", "--data", "X.npy", "--store", "store")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((only_entry(here / "store") / "entry.json").read_text())
    assert manifest["backend"] == "pickle"
    assert {"transform", "inverse_transform", "score_samples"} <= set(manifest["methods"])
    assert check("store").returncode == 0


def test_a_text_model_reads_one_string_per_line(here):
    texts = ["good movie", "bad film", "great acting", "awful plot"] * 5
    labels = [1, 0, 1, 0] * 5
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)
    joblib.dump(model, "text.joblib", compress=3)
    Path("reviews.txt").write_text("\n".join(texts) + "\n")
    done = adopt("text.joblib", "--data", "reviews.txt", "--store", "store")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((only_entry(here / "store") / "entry.json").read_text())
    assert manifest["backend"] == "joblib-compressed"
    assert "predict_proba" in manifest["methods"]
    assert check("store").returncode == 0


def test_a_frame_keeps_its_column_names(here):
    pd = pytest.importorskip("pandas")
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0] * 5, "colour": ["r", "g", "b", "r"] * 5})
    target = [0, 1, 0, 1] * 5
    model = make_pipeline(
        make_column_transformer((StandardScaler(), ["size"]), (OneHotEncoder(), ["colour"])),
        LogisticRegression(),
    ).fit(frame, target)
    joblib.dump(model, "frame.joblib")
    frame.to_csv("frame.csv", index=False)
    done = adopt("frame.joblib", "--data", "frame.csv", "--store", "store")
    assert done.returncode == 0, done.stderr
    assert check("store").returncode == 0


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_file_that_would_run_code_is_refused_and_nothing_is_written(here, child_writable):
    marker = child_writable / "ran"
    Path("evil.pkl").write_bytes(pickle.dumps(_RunsCommand(f"touch {marker}"), protocol=5))
    done = adopt("evil.pkl", "--data", "X.npy", "--store", "store")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refusing to adopt it: it would run code it names: posix.system" in done.stderr
    assert "--trust" in done.stderr
    assert not marker.exists() and not (here / "store").exists()


def test_trust_adopts_a_cloudpickle_lambda_and_says_so(here):
    cloudpickle = pytest.importorskip("cloudpickle")
    from sklearn.preprocessing import FunctionTransformer

    X, _ = load_iris(return_X_y=True)
    model = FunctionTransformer(lambda data: data * 2).fit(X)
    Path("lambda.pkl").write_bytes(cloudpickle.dumps(model))
    refused = adopt("lambda.pkl", "--data", "X.npy", "--store", "store")
    assert refused.returncode == 1 and not (here / "store").exists()
    done = adopt("lambda.pkl", "--data", "X.npy", "--store", "store", "--trust")
    assert done.returncode == 0, done.stderr
    assert "adopted with --trust although it is dangerous" in done.stdout
    manifest = json.loads((only_entry(here / "store") / "entry.json").read_text())
    assert manifest["backend"] == "cloudpickle" and "transform" in manifest["methods"]
    assert check("store").returncode == 0


@pytest.mark.parametrize("problem", ["not-a-model", "wrong-width", "unknown-data", "short-y"])
def test_bad_input_is_a_clear_error_and_nothing_is_written(here, problem):
    X, y = load_iris(return_X_y=True)
    joblib.dump(RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), "rf.joblib")
    model, data, extra = "rf.joblib", "X.npy", []
    if problem == "not-a-model":
        Path("notes.pkl").write_text("just some text\n")
        model, said = "notes.pkl", "notes.pkl"
    elif problem == "wrong-width":
        np.save("narrow.npy", X[:, :3])
        data = "narrow.npy"
        said = "X has 3 features, but RandomForestClassifier is expecting 4 features"
    elif problem == "unknown-data":
        Path("X.xlsx").write_text("?")
        data, said = "X.xlsx", "unknown data format .xlsx"
    else:
        np.save("short.npy", y[:10])
        extra, said = ["--y", "short.npy"], "10 targets for the 150 rows of X.npy"
    done = adopt(model, "--data", data, *extra, "--store", "store")
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (here / "store").exists() or not any((here / "store").iterdir())
