"""The on-disk store: layout, manifest, validation, checksums and atomic concurrent writes."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from pytest_persist.environments.fingerprint import environment_fingerprint
from pytest_persist.store import entries as store
from pytest_persist.store.entries import (
    STORE_FORMAT_VERSION,
    StoreError,
    TamperedArtifactError,
    entry_name,
    iter_entries,
    read_entry,
    save_entry,
)


@pytest.fixture(scope="module")
def fitted():
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(C=0.5, max_iter=500).fit(X, y), X, y


def save(root, fitted, tmp_path, *, test_id="tests/test_m.py::test_lr", backend="pickle", **kw):
    model, X, y = fitted
    artifact = tmp_path / f"model-{backend}.pkl"
    artifact.write_bytes(pickle.dumps(model, protocol=5))
    kw.setdefault("expected_outputs", {"predict": model.predict(X), "score": model.score(X, y)})
    return save_entry(
        root,
        test_id=test_id,
        backend_name=backend,
        estimator=model,
        artifact_path=artifact,
        X=X,
        y=y,
        not_compared=kw.pop("not_compared", {}),
        environment=environment_fingerprint(),
        **kw,
    )


def test_saved_entry_holds_everything(fitted, tmp_path):
    model, X, y = fitted
    root = tmp_path / "store"
    path = save(root, fitted, tmp_path, test_source="def test_lr(): ...", extra={"score": 0.97})
    assert sorted(p.name for p in path.iterdir()) == [
        "artifact.pkl",
        "attestation.json",
        "data.json",
        "data.npz",
        "entry.json",
        "signature.json",
    ]
    manifest = json.loads((path / "entry.json").read_text())
    assert manifest["format_version"] == STORE_FORMAT_VERSION
    assert manifest["test_id"] == "tests/test_m.py::test_lr"
    assert manifest["backend"] == "pickle"
    assert manifest["estimator"]["class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert manifest["estimator"]["params"]["C"] == "0.5"
    assert manifest["environment"]["scikit-learn"]
    assert manifest["methods"] == ["predict", "score"]
    assert manifest["test_source"] == "def test_lr(): ..."
    assert manifest["extra"] == {"score": 0.97}
    for name in ("artifact.pkl", "data.npz", "data.json"):
        info = manifest["files"][name]
        assert info["size"] == (path / name).stat().st_size
        assert info["sha256"] == store.sha256_file(path / name)

    [entry] = iter_entries(root)
    assert entry.path == path and entry.estimator_name == "LogisticRegression"
    entry.verify()
    data = entry.load_data()
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    np.testing.assert_array_equal(data.expected["predict"], model.predict(X))
    assert data.expected["score"] == model.score(X, y)
    with np.load(path / "data.npz", allow_pickle=False):
        pass


def test_extra_is_stored_json_safe(fitted, tmp_path):
    extra = {"score": np.float64(0.5), "nan": float("nan"), "arr": np.arange(2), "obj": object()}
    path = save(tmp_path / "s", fitted, tmp_path, extra=extra)
    stored = read_entry(path).extra
    assert stored["score"] == 0.5 and stored["nan"] == "nan" and stored["arr"] == [0, 1]
    assert stored["obj"].startswith("<object object")


@pytest.mark.parametrize(
    "test_id",
    [
        "tests/test_a.py::test_x[param-1]",
        "tests/test_a.py::test_x[param/1]",
        "tests/test_a.py::test_x[param:1]",
        "tests/test_a.py::test_x[" + "very long parameter " * 30 + "]",
        "tests/test_ü.py::test_日本[..]",
    ],
)
def test_entry_names_are_safe(test_id):
    name = entry_name(test_id, "joblib-mmap")
    assert "/" not in name and ":" not in name and not name.startswith(".")
    assert len(name) < 140
    assert name.isascii()


def test_entry_names_do_not_collide():
    ids = ["t.py::a[x/y]", "t.py::a[x_y]", "t.py::a[x:y]", "t.py::A[x/y]"]
    names = {entry_name(i, "pickle") for i in ids} | {entry_name(ids[0], "joblib")}
    assert len(names) == len(ids) + 1


def test_saving_twice_replaces_the_whole_entry(fitted, tmp_path):
    root = tmp_path / "store"
    first = save(root, fitted, tmp_path, extra={"run": 1})
    (first / "stray.txt").write_text("left over from the old entry")
    second = save(root, fitted, tmp_path, extra={"run": 2}, expected_outputs={"predict": [1]})
    assert first == second
    assert not (second / "stray.txt").exists()
    [entry] = iter_entries(root)
    assert entry.extra == {"run": 2} and entry.methods == ["predict"]
    assert [p.name for p in root.iterdir()] == [first.name]  # no temporary left


def test_failed_save_leaves_nothing(fitted, tmp_path):
    root = tmp_path / "store"
    with pytest.raises(TypeError, match="output of method 'predict'"):
        save(root, fitted, tmp_path, expected_outputs={"predict": object()})
    assert list(root.iterdir()) == []


def test_missing_artifact_is_a_store_error(fitted, tmp_path):
    model, X, _ = fitted
    with pytest.raises(StoreError, match="does not exist"):
        save_entry(
            tmp_path / "s",
            test_id="t",
            backend_name="pickle",
            estimator=model,
            artifact_path=tmp_path / "nope.pkl",
            X=X,
            y=None,
            expected_outputs={},
            not_compared={},
            environment={},
        )


# ----------------------------------------------------------------------------------------------
# invalid entries


def edit_manifest(path: Path, change) -> Path:
    manifest_file = path / "entry.json"
    manifest = json.loads(manifest_file.read_text())
    change(manifest)
    manifest_file.write_text(json.dumps(manifest))
    return manifest_file


def test_truncated_entry_json_names_the_file(fitted, tmp_path):
    path = save(tmp_path / "s", fitted, tmp_path)
    manifest_file = path / "entry.json"
    manifest_file.write_text(manifest_file.read_text()[:100])
    with pytest.raises(StoreError) as info:
        iter_entries(tmp_path / "s")
    assert str(manifest_file) in str(info.value)
    assert "not valid JSON" in str(info.value)


def test_newer_format_names_the_file_and_versions(fitted, tmp_path):
    path = save(tmp_path / "s", fitted, tmp_path)
    manifest_file = edit_manifest(path, lambda m: m.update(format_version=2))
    with pytest.raises(StoreError) as info:
        iter_entries(tmp_path / "s")
    message = str(info.value)
    assert str(manifest_file) in message and "version 2" in message and "Upgrade" in message


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: m.pop("test_id"), "missing key 'test_id'"),
        (lambda m: m.update(methods="predict"), "'methods' has type str"),
        (lambda m: m.update(format="something-else"), "'format'"),
        (lambda m: m.update(format_version="1"), "format_version"),
        (lambda m: m["files"]["artifact.pkl"].update(sha256="abc"), "valid sha256"),
        (lambda m: m.update(artifact="../../etc/passwd"), "points outside the entry"),
        (lambda m: m.update(artifact="/etc/passwd"), "points outside the entry"),
        (lambda m: m.update(data="sub\\..\\..\\x.npz"), "points outside the entry"),
        (lambda m: m.update(artifact="nothing.pkl"), "no checksum"),
        (lambda m: m.update(untrusted_types="numpy.round"), "untrusted_types"),
        (lambda m: m["files"].update({"../x": m["files"]["data.npz"]}), "outside the entry"),
        (lambda m: m["estimator"].pop("class"), "estimator.class"),
        (lambda m: m["estimator"].update(modules="sklearn.svm"), "estimator.modules"),
    ],
)
def test_hand_edited_entry_is_a_clear_error(change, fragment, fitted, tmp_path):
    path = save(tmp_path / "s", fitted, tmp_path)
    manifest_file = edit_manifest(path, change)
    with pytest.raises(StoreError) as info:
        read_entry(path)
    assert str(manifest_file) in str(info.value)
    assert fragment in str(info.value)


def test_not_an_object(tmp_path):
    (tmp_path / "s" / "e").mkdir(parents=True)
    (tmp_path / "s" / "e" / "entry.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match="expected a JSON object"):
        iter_entries(tmp_path / "s")


def test_directory_without_manifest(tmp_path):
    (tmp_path / "s" / "junk").mkdir(parents=True)
    with pytest.raises(StoreError, match=r"entry\.json: missing"):
        iter_entries(tmp_path / "s")


def test_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no such store directory"):
        iter_entries(tmp_path / "absent")


# ----------------------------------------------------------------------------------------------
# checksums


def test_tampered_artifact_names_file_and_both_hashes(fitted, tmp_path):
    path = save(tmp_path / "s", fitted, tmp_path)
    [entry] = iter_entries(tmp_path / "s")
    recorded = entry.manifest["files"]["artifact.pkl"]["sha256"]
    with open(path / "artifact.pkl", "ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(TamperedArtifactError) as info:
        entry.verify()
    message = str(info.value)
    assert str(path / "artifact.pkl") in message
    assert recorded in message
    assert store.sha256_file(path / "artifact.pkl") in message
    assert isinstance(info.value, StoreError)


def test_tampered_data_and_missing_files_are_refused(fitted, tmp_path):
    path = save(tmp_path / "s", fitted, tmp_path)
    entry = read_entry(path)
    (path / "data.json").write_text((path / "data.json").read_text().replace("predict", "xredict"))
    with pytest.raises(TamperedArtifactError, match=r"data\.json"):
        entry.verify()
    (path / "data.json").unlink()
    with pytest.raises(TamperedArtifactError, match="missing"):
        entry.verify()


# ----------------------------------------------------------------------------------------------
# temporary directories, interruptions, concurrency


def test_temporary_directories_are_ignored_and_cleaned(fitted, tmp_path):
    root = tmp_path / "s"
    save(root, fitted, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = store._temp_prefix().split("-")[1]
    leftover = root / f".tmp-{host}-{dead.pid}-abcd-half"
    leftover.mkdir()
    (leftover / "artifact.pkl").write_bytes(b"half")
    mine = root / f"{store._temp_prefix()}efgh-live"  # a live writer (this process)
    mine.mkdir()
    old = root / ".old-123-x"
    old.mkdir()
    entries = iter_entries(root)
    assert len(entries) == 1
    assert not leftover.exists() and not old.exists()
    assert mine.exists()


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, pickle, numpy as np
    from sklearn.linear_model import LinearRegression
    from pytest_persist.store.entries import save_entry
    root, artifact = sys.argv[1], sys.argv[2]
    X = np.ones((2_000_000, 8))  # 128 MB: a save takes long enough to be killed in the middle
    model = LinearRegression().fit(X[:100], X[:100, 0])
    open(artifact, "wb").write(pickle.dumps(model))
    print("ready", flush=True)
    for i in range(100):
        save_entry(root, test_id=f"t::k{i % 2}", backend_name="pickle", estimator=model,
                   artifact_path=artifact, X=X, y=None, expected_outputs={},
                   not_compared={}, environment={})
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_killed_save_leaves_no_visible_half_entry(tmp_path):
    root = tmp_path / "s"
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(root), str(tmp_path / "a.pkl")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill while a temporary directory is being filled
        if root.exists() and any(p.name.startswith(".tmp-") for p in root.iterdir()):
            break
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    left = [p.name for p in root.iterdir()]
    assert any(name.startswith(".tmp-") for name in left), left  # killed mid-save
    for entry in iter_entries(root):  # every visible entry is whole
        entry.verify()
    assert not any(p.name.startswith(".") for p in root.iterdir())  # cleaned: writer is dead


def _save_many(root: str, worker: int, rounds: int) -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    artifact = Path(root).parent / f"artifact-{worker}.pkl"
    artifact.write_bytes(pickle.dumps(model))
    for i in range(rounds):
        for test_id in ("shared::a", "shared::b", f"own-{worker}::c"):
            save_entry(
                root,
                test_id=test_id,
                backend_name="pickle",
                estimator=model,
                artifact_path=artifact,
                X=X,
                y=y,
                expected_outputs={"predict": model.predict(X)},
                not_compared={},
                environment={"worker": str(worker)},
                extra={"worker": worker, "round": i},
            )


def test_concurrent_saves_leave_valid_entries_only(tmp_path):
    root = tmp_path / "s"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(str(root), w, 10)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    entries = iter_entries(root)
    assert sorted(e.test_id for e in entries) == ["own-1::c", "own-2::c", "shared::a", "shared::b"]
    for entry in entries:
        entry.verify()
        # never a mix of two saves: the manifest's worker matches its own extra
        assert entry.environment["worker"] == str(entry.extra["worker"])
    assert not any(p.name.startswith(".") for p in root.iterdir())
