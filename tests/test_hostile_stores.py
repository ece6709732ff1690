"""Stores written by someone hostile: nothing an unverified entry names is imported, nothing
is imported from the store, and a loaded model cannot read the keys or write into the store.
Real artifacts, real ``pytest --persist-load`` processes."""

from __future__ import annotations

import json
import os
import pickle
import sys
import textwrap
from pathlib import Path

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from store_helpers import store_model

from pytest_persist.isolation.sandbox import landlock_abi
from pytest_persist.store.signing import SIGNATURE_FILE, load_key_file, user_key_path

needs_landlock = pytest.mark.skipif(
    landlock_abi() < 1, reason="the filesystem sandbox needs Linux's Landlock (kernel >= 5.13)"
)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def model(iris):
    X, y = iris
    return LogisticRegression(max_iter=300).fit(X, y)


def check_store(pytester: pytest.Pytester, store: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", f"--persist-load={store}", "--persist-report=r.json", *args
    )


def records(pytester: pytest.Pytester) -> list[dict]:
    return json.loads((pytester.path / "r.json").read_text())["records"]


PLANTED = textwrap.dedent(
    """
    # Planted in the store by its writer: proves it ran by writing where a child may write,
    # and tries to take the per-user key.
    import os, shutil
    with open({marker!r}, "a") as handle:
        handle.write(str(os.getpid()) + "\\n")
    try:
        shutil.copy({key!r}, {marker!r} + ".stolen-key")
    except OSError:
        pass

    class LogisticRegression:
        pass
    """
)


@pytest.mark.parametrize("backend", ["onnx", "skops"])
@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_a_class_named_by_an_unverified_entry_is_never_imported(
    pytester, model, iris, child_writable, backend, isolation
):
    """The store inside the project root (the README's ``--persist-save=artifacts``): a
    ``.py`` file planted in it would be importable as ``artifacts.<name>``."""
    X, y = iris
    root = pytester.path / "artifacts"
    entry = store_model(root, model, X, y, backend=backend, test_id="t.py::test_model")
    # An ONNX entry needs no signature; a skops one loads without it (trusting no extra type).
    (entry.path / SIGNATURE_FILE).unlink(missing_ok=True)
    marker = child_writable / "imported"
    key = user_key_path()
    assert key.is_file()  # store_model signed with it
    (root / "planted.py").write_text(PLANTED.format(marker=str(marker), key=str(key)))
    manifest = json.loads((entry.path / "entry.json").read_text())
    manifest["estimator"]["class"] = "artifacts.planted.LogisticRegression"
    manifest["estimator"]["modules"] = ["artifacts.planted", "sklearn.linear_model._logistic"]
    (entry.path / "entry.json").write_text(json.dumps(manifest, indent=2))

    result = check_store(pytester, "artifacts", f"--persist-load-isolation={isolation}")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"PASSED persist_load::t.py::test_model[[]{backend}[]]*"])
    assert not marker.exists(), marker.read_text()
    assert not Path(f"{marker}.stolen-key").exists()


PLANTED_MODEL = textwrap.dedent(
    """
    import os
    import numpy as np

    with open({marker!r}, "a") as handle:  # who imported this module
        handle.write(str(os.getpid()) + "\\n")

    class Planted:
        def fit(self, X, y=None):
            self.offset_ = 1.0
            return self

        def get_params(self, deep=True):
            return {{}}

        def predict(self, X):
            return np.asarray(X).sum(axis=1) + self.offset_
    """
)


@pytest.mark.parametrize("where", ["namespace", "top-level"])
def test_a_signed_pickle_never_imports_from_the_store(
    pytester, iris, child_writable, monkeypatch, where
):
    """Even a trusted pickle's classes come from the installed environment: a module that
    lies in the store is refused (reached through the project root) or not found (only the
    store's own folder would have found it), and the check says so."""
    X, _ = iris
    root = pytester.path / "artifacts"
    root.mkdir()
    marker = child_writable / "imported"
    (root / "planted_model.py").write_text(PLANTED_MODEL.format(marker=str(marker)))
    if where == "namespace":
        monkeypatch.syspath_prepend(str(pytester.path))
        module_name = "artifacts.planted_model"
    else:
        monkeypatch.syspath_prepend(str(root))
        module_name = "planted_model"
    module = __import__(module_name, fromlist=["Planted"])
    store_model(root, module.Planted().fit(X), X, None, test_id="t.py::test_planted")
    for name in [module_name, "artifacts"]:
        sys.modules.pop(name, None)
    assert marker.read_text().split() == [str(os.getpid())]  # this test imported it, once

    result = check_store(pytester, "artifacts", "-p", "no:randomly")
    assert result.ret == 1, result.stdout.str()
    [record] = records(pytester)
    assert record["kind"] == "load_error", record
    if where == "namespace":
        # the store's folder itself is refused, as the package its module would be found in
        assert "refusing to import 'artifacts'" in record["error"], record["error"]
        assert "lies inside" in record["error"] and str(root) in record["error"]
    else:
        assert "No module named 'planted_model'" in record["error"], record["error"]
    assert marker.read_text().split() == [str(os.getpid())]  # the child never imported it


class _Reads:
    """Unpickles to ``open(path, mode)``: what a signed but malicious model could try."""

    def __init__(self, path: str, mode: str) -> None:
        self.path, self.mode = path, mode

    def __reduce__(self):
        return (open, (self.path, self.mode))


@needs_landlock
@pytest.mark.parametrize("target", ["user-key", "key-file", "store-entry", "store-root"])
def test_a_loaded_model_cannot_read_keys_or_write_into_the_store(
    pytester, model, iris, target, tmp_path
):
    X, y = iris
    root = pytester.path / "store"
    good = store_model(root, model, X, y, test_id="t.py::test_good")
    args = []
    if target == "user-key":
        path, mode = str(user_key_path()), "rb"
    elif target == "key-file":  # a key of the project's, which signed the entries here
        key = tmp_path / "project.key"
        key.write_text(os.urandom(32).hex() + "\n")
        key.chmod(0o600)
        args = [f"--persist-key-file={key}"]
        path, mode = str(key), "rb"
        good = store_model(root, model, X, y, test_id="t.py::test_good", key=load_key_file(key))
    elif target == "store-entry":
        path, mode = str(good.artifact_path), "r+b"
    else:
        path, mode = str(root / "planted.py"), "w"
    artifact = tmp_path / "evil.pkl"
    artifact.write_bytes(pickle.dumps(_Reads(path, mode), protocol=5))
    backend_name = "pickle"
    from pytest_persist.backends import BackendRegistry
    from pytest_persist.environments.fingerprint import environment_fingerprint
    from pytest_persist.store.entries import save_entry

    key_arg = load_key_file(key) if target == "key-file" else None
    save_entry(
        root,
        test_id="t.py::test_evil",
        backend_name=backend_name,
        estimator=model,
        artifact_path=artifact,
        X=X,
        y=y,
        expected_outputs={},
        not_compared={},
        environment=environment_fingerprint(),
        key=key_arg,
    )
    assert BackendRegistry()[backend_name].runs_code_on_load  # so it had to be signed
    before = good.artifact_path.read_bytes()

    check_store(pytester, "store", *args)
    by_test = {r["test_id"]: r for r in records(pytester)}
    evil = by_test["t.py::test_evil"]
    assert evil["kind"] == "load_error", (evil, path)
    assert "PermissionError" in evil["error"] and path in evil["error"], evil["error"]
    assert by_test["t.py::test_good"]["kind"] == "passed"
    assert "landlock ABI" in by_test["t.py::test_good"]["details"]["sandbox"]
    assert good.artifact_path.read_bytes() == before
    assert not (root / "planted.py").exists()
