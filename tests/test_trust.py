"""Stores you can trust: signed entries, foreign keys refused, paths kept inside the store,
as users meet them: real pickles, real ``pytest --persist-load`` processes, with and without
xdist."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import secrets
import stat
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from store_helpers import MISBEHAVING, store_model

from pytest_persist.store.entries import iter_entries
from pytest_persist.store.signing import (
    SIGNATURE_FILE,
    SigningKey,
    own_key,
    sign_entry,
    user_key_path,
)

_SUMMARY = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR) persist_load::(\S+)", re.MULTILINE)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def model(iris):
    X, y = iris
    return LogisticRegression(max_iter=300).fit(X, y)


def load_store(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, str]]:
    """``pytest --persist-load store -rA`` in a subprocess; statuses by stored item name."""
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", "--persist-load", "store", *args
    )
    text = result.stdout.str()
    return result, {name: status for status, name in _SUMMARY.findall(text)}


def key_file(path: Path, secret: bytes | None = None, mode: int = 0o600) -> Path:
    path.write_text((secret or secrets.token_bytes(32)).hex() + "\n")
    path.chmod(mode)
    return path


def tamper(entry_dir: Path, payload: bytes) -> None:
    """Replace the artifact and update its sha256 and size, as someone without the key can."""
    manifest_file = entry_dir / "entry.json"
    manifest = json.loads(manifest_file.read_text())
    (entry_dir / manifest["artifact"]).write_bytes(payload)
    manifest["files"][manifest["artifact"]] = {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_RunsCommand(f"touch {marker}"), protocol=5)


def misbehaving_module(pytester, monkeypatch, marker: Path):
    """A module whose ``Misbehaving`` touches ``marker`` when unpickled, importable here and in
    the loader."""
    modules = pytester.path / "modules"
    modules.mkdir()
    (modules / "trust_misbehaving.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.setenv("PYTHONPATH", str(modules))
    # the loader's child gets a clean environment: the marker's path travels in a file
    (modules / "misbehave_marker.txt").write_text(str(marker))
    import trust_misbehaving

    return trust_misbehaving


# ----------------------------------------------------------------------------------------------
# signatures


def test_tampered_pickle_is_never_unpickled(pytester, model, iris, child_writable):
    X, y = iris
    entry = store_model(pytester.path / "store", model, X, y, test_id="t.py::test_evil")
    marker = child_writable / "MARKER"
    tamper(entry.path, evil_pickle(marker))

    result, statuses = load_store(pytester)
    assert statuses == {"t.py::test_evil[pickle]": "FAILED"}, result.stdout.str()
    text = result.stdout.str()
    assert "load_error" in text and "not signed by a trusted key" in text
    assert f"the MAC of key {entry_key_id(entry.path)} does not match" in text
    assert "--persist-trust-key" in text and "--persist-trust-unsigned" in text
    assert not marker.exists()

    # the same with the signature removed: unsigned, still refused
    (entry.path / SIGNATURE_FILE).unlink()
    result, statuses = load_store(pytester, "-n", "2")
    assert statuses == {"t.py::test_evil[pickle]": "FAILED"}, result.stdout.str()
    assert "not signed (no signature.json" in result.stdout.str()
    assert not marker.exists()

    # the tamper is real: told to load it anyway, the command runs
    result, _ = load_store(pytester, "--persist-trust-unsigned")
    assert marker.exists(), result.stdout.str()


def entry_key_id(path: Path) -> str:
    return json.loads((path / SIGNATURE_FILE).read_text())["key_id"]


def test_saving_creates_a_private_user_key_and_checks_need_no_flag(
    run_suite, pytester, monkeypatch, tmp_path
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "fresh-config"))
    assert not user_key_path().exists()
    source = """
        import pytest
        from sklearn.datasets import load_iris
        from sklearn.tree import DecisionTreeClassifier

        @pytest.mark.persist_roundtrip(backends=["pickle", "joblib"])
        def test_tree(persist_roundtrip):
            X, y = load_iris(return_X_y=True)
            persist_roundtrip(DecisionTreeClassifier(max_depth=2).fit(X, y), X, y)
    """
    run = run_suite(source, "-n", "2", "--persist-save", "store")
    assert run.result.ret == 0, run.text
    path = user_key_path()
    assert path.parent == tmp_path / "fresh-config" / "pytest-persist"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mine = own_key()
    assert mine is not None
    for entry in iter_entries(pytester.path / "store"):
        assert entry_key_id(entry.path) == mine.key_id
    result, statuses = load_store(pytester)
    assert result.ret == 0, result.stdout.str()
    assert set(statuses.values()) == {"PASSED"} and len(statuses) == 2


def test_ini_key_file_relative_to_the_ini_signs_and_checks(run_suite, pytester):
    secret = secrets.token_bytes(32)
    (pytester.path / "keys").mkdir()
    key_file(pytester.path / "keys" / "project.key", secret)
    source = """
        import pytest
        from sklearn.datasets import load_iris
        from sklearn.tree import DecisionTreeClassifier

        @pytest.mark.persist_roundtrip(backends=["pickle"])
        def test_tree(persist_roundtrip):
            X, y = load_iris(return_X_y=True)
            persist_roundtrip(DecisionTreeClassifier(max_depth=2).fit(X, y), X, y)
    """
    ini = "[pytest]\npersist_key_file = keys/project.key\n"
    run = run_suite(source, "--persist-save", "store", ini=ini)
    assert run.result.ret == 0, run.text
    [entry] = iter_entries(pytester.path / "store")
    assert entry_key_id(entry.path) == SigningKey(secret, "test").key_id
    assert entry_key_id(entry.path) != own_key(create=True).key_id
    result, statuses = load_store(pytester)  # the ini's key is this side's own key too
    assert result.ret == 0 and set(statuses.values()) == {"PASSED"}, result.stdout.str()
    result, statuses = load_store(pytester, "-o", "persist_key_file=")  # the user key only
    assert set(statuses.values()) == {"FAILED"}, result.stdout.str()
    assert "not signed by a trusted key" in result.stdout.str()


def test_store_signed_by_another_key_needs_that_key(
    pytester, model, iris, monkeypatch, child_writable
):
    X, y = iris
    ci_secret = secrets.token_bytes(32)
    ci = SigningKey(ci_secret, "ci")
    store_model(pytester.path / "store", model, X, y, test_id="t.py::test_ci", key=ci)
    marker = child_writable / "unpickled"
    misbehaving = misbehaving_module(pytester, monkeypatch, marker)
    store_model(
        pytester.path / "store",
        misbehaving.Misbehaving().fit(X),
        X,
        None,
        test_id="t.py::test_marker",
        key=ci,
    )

    result, statuses = load_store(pytester)
    assert statuses == {
        "t.py::test_ci[pickle]": "FAILED",
        "t.py::test_marker[pickle]": "FAILED",
    }, result.stdout.str()
    assert f"signed by key {ci.key_id}, which is not trusted here" in result.stdout.str()
    assert not marker.exists()

    ci_file = key_file(pytester.path / "ci.key", ci_secret)
    result, statuses = load_store(pytester, "-n", "2", f"--persist-trust-key={ci_file}")
    assert result.ret == 0, result.stdout.str()
    assert statuses == {"t.py::test_ci[pickle]": "PASSED", "t.py::test_marker[pickle]": "PASSED"}
    assert marker.exists()

    marker.unlink()
    pytester.makeini(f"[pytest]\npersist_trust_keys = {ci_file.name}\n")
    result, statuses = load_store(pytester)
    assert result.ret == 0 and set(statuses.values()) == {"PASSED"}, result.stdout.str()


def test_unsigned_store_from_before_signing(pytester, model, iris):
    X, y = iris
    entry = store_model(pytester.path / "store", model, X, y, test_id="t.py::test_old", sign=False)
    assert not (entry.path / SIGNATURE_FILE).exists()

    result, statuses = load_store(pytester)
    assert statuses == {"t.py::test_old[pickle]": "FAILED"}, result.stdout.str()
    assert "not signed by a trusted key: not signed (no signature.json" in result.stdout.str()

    result, statuses = load_store(
        pytester, "--persist-trust-unsigned", "--persist-report=r.json", "--persist-report-md=r.md"
    )
    assert result.ret == 0, result.stdout.str()
    markdown = (pytester.path / "r.md").read_text()  # a CI job summary says it too
    assert "### Loaded WITHOUT a trusted signature" in markdown
    assert "| t.py::test_old | pickle | loaded without a trusted signature (not signed" in markdown
    assert statuses == {"t.py::test_old[pickle]": "PASSED"}
    result.stdout.fnmatch_lines(
        [
            "pytest-persist: 1 stored artifact(s) loaded WITHOUT a trusted signature "
            "(--persist-trust-unsigned):",
            "  t.py::test_old [[]pickle[]]: loaded without a trusted signature (not signed*",
        ]
    )
    (record,) = json.loads((pytester.path / "r.json").read_text())["records"]
    assert record["details"]["signature"] == {
        "status": "unsigned",
        "key_id": None,
        "scheme": None,
        "loaded_anyway": "--persist-trust-unsigned",
    }


def test_onnx_needs_no_signature(pytester, model, iris):
    pytest.importorskip("onnxruntime")
    X, y = iris
    store_model(pytester.path / "store", model, X, y, backend="onnx", sign=False)
    result, statuses = load_store(pytester)
    assert result.ret == 0, result.stdout.str()
    assert set(statuses.values()) == {"PASSED"}


# ----------------------------------------------------------------------------------------------
# skops


def test_skops_entry_needing_a_type_nobody_trusted(pytester, iris):
    pytest.importorskip("skops")
    X, y = iris
    rounding = make_pipeline(FunctionTransformer(np.round), LogisticRegression(max_iter=300))
    rounding.fit(X, y)
    foreign = SigningKey(secrets.token_bytes(32), "elsewhere")
    entry = store_model(
        pytester.path / "store", rounding, X, y, backend="skops", test_id="t.py::s", key=foreign
    )
    assert entry.untrusted_types == ["numpy.round"]  # recorded at save

    # a skops entry needs no trusted signature, but then its recorded types are not trusted
    result, statuses = load_store(pytester)
    assert statuses == {"t.py::s[skops]": "FAILED"}, result.stdout.str()
    assert "UntrustedTypesError" in result.stdout.str() and "numpy.round" in result.stdout.str()
    assert "--persist-trusted=numpy.round" in result.stdout.str()

    result, statuses = load_store(pytester, "--persist-trusted=numpy.round")
    assert result.ret == 0 and statuses == {"t.py::s[skops]": "PASSED"}, result.stdout.str()

    # signed by a trusted key: the recorded types are trusted
    sign_entry(entry.path, own_key(create=True))
    result, statuses = load_store(pytester)
    assert result.ret == 0 and statuses == {"t.py::s[skops]": "PASSED"}, result.stdout.str()


# ----------------------------------------------------------------------------------------------
# paths


@pytest.mark.parametrize(
    ("key", "value"),
    [("artifact", "../../outside.pkl"), ("artifact", "/etc/passwd"), ("data", "../x.npz")],
)
def test_entry_naming_a_file_outside_its_folder_fails_naming_it(pytester, model, iris, key, value):
    X, y = iris
    entry = store_model(pytester.path / "store", model, X, y)
    manifest = json.loads(entry.entry_file.read_text())
    manifest[key] = value
    entry.entry_file.write_text(json.dumps(manifest))
    sign_entry(entry.path, own_key(create=True))  # even signed by the checking account itself
    result, statuses = load_store(pytester)
    assert list(statuses.values()) == ["FAILED"], result.stdout.str()
    assert str(entry.entry_file) in result.stdout.str()
    assert f"{value!r}, which points outside the entry" in result.stdout.str()


def test_symlinks_leading_out_of_an_entry_are_refused(pytester, model, iris, tmp_path):
    X, y = iris
    root = pytester.path / "store"
    inside = store_model(root, model, X, y, test_id="t.py::test_link")
    outside = tmp_path / "outside.pkl"
    outside.write_bytes((inside.path / "artifact.pkl").read_bytes())
    (inside.path / "artifact.pkl").unlink()
    (inside.path / "artifact.pkl").symlink_to(outside)  # same bytes, same sha256

    elsewhere = store_model(tmp_path / "other", model, X, y, test_id="t.py::test_dir")
    (root / elsewhere.path.name).symlink_to(elsewhere.path, target_is_directory=True)

    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result, statuses = load_store(pytester, "-n", "2")
    text = result.stdout.str()
    assert statuses == {
        "t.py::test_link[pickle]": "FAILED",
        elsewhere.path.name: "FAILED",
    }, text
    assert f"{inside.path / 'artifact.pkl'}: leads outside the entry" in text
    assert f"{root / elsewhere.path.name}: a symlink" in text
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


# ----------------------------------------------------------------------------------------------
# bad key inputs


@pytest.mark.parametrize("problem", ["corrupt", "readable", "missing-trust-key", "bad-env"])
def test_bad_key_input_is_a_usage_error_and_nothing_loads(
    pytester, iris, monkeypatch, problem, child_writable
):
    X, _ = iris
    marker = child_writable / "unpickled"
    misbehaving = misbehaving_module(pytester, monkeypatch, marker)
    store_model(pytester.path / "store", misbehaving.Misbehaving().fit(X), X, None)
    path = pytester.path / "my.key"
    if problem == "corrupt":
        path.write_text("this is not a key\n")
        path.chmod(0o600)
        args, named = [f"--persist-key-file={path}"], f"{path}: not a pytest-persist key"
    elif problem == "readable":
        key_file(path, mode=0o644)
        args, named = [f"--persist-key-file={path}"], f"{path}: key file is readable"
    elif problem == "missing-trust-key":
        args, named = [f"--persist-trust-key={path}"], f"{path}: no such key file"
    else:
        monkeypatch.setenv("PYTEST_PERSIST_KEY", "short")
        args, named = [], "environment variable PYTEST_PERSIST_KEY: not a pytest-persist key"
    result, statuses = load_store(pytester, "--persist-trust-unsigned", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert named in result.stderr.str()
    assert not statuses and not marker.exists()


# ----------------------------------------------------------------------------------------------
# saving again


SAVED_SUITE = """
import os
import pytest
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

@pytest.mark.persist_roundtrip(backends=["pickle"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_tree(persist_roundtrip, persist_extra, depth):
    X, y = load_iris(return_X_y=True)
    persist_extra["run"] = os.environ["RUN"]
    persist_roundtrip(DecisionTreeClassifier(max_depth=depth).fit(X, y), X, y)
"""


def test_saving_again_replaces_only_the_tests_that_ran(run_suite, pytester, monkeypatch):
    monkeypatch.setenv("RUN", "first")
    run = run_suite(SAVED_SUITE, "--persist-save", "store")
    assert run.result.ret == 0, run.text
    store = pytester.path / "store"
    assert re.search(
        rf"pytest-persist: saved 3 artifacts \([0-9.]+ MB\) to {re.escape(str(store))} "
        r"\(0 replaced\)",
        run.text,
    ), run.text

    monkeypatch.setenv("RUN", "second")
    run = run_suite(SAVED_SUITE, "-n", "2", "--persist-save", "store", "-k", "1 or 3")
    assert run.result.ret == 0, run.text
    assert re.search(
        rf"pytest-persist: saved 2 artifacts \([0-9.]+ MB\) to {re.escape(str(store))} "
        r"\(2 replaced\)",
        run.text,
    ), run.text
    runs = {e.test_id: e.extra["run"] for e in iter_entries(store)}
    assert runs == {
        "test_suite.py::test_tree[pickle-1]": "second",
        "test_suite.py::test_tree[pickle-2]": "first",
        "test_suite.py::test_tree[pickle-3]": "second",
    }
    result, statuses = load_store(pytester)
    assert result.ret == 0 and len(statuses) == 3, result.stdout.str()


# ----------------------------------------------------------------------------------------------
# everything at once, under xdist


def test_mixed_store_under_xdist(pytester, model, iris, tmp_path, child_writable):
    X, y = iris
    root = pytester.path / "store"
    ci_secret = secrets.token_bytes(32)
    ci = SigningKey(ci_secret, "ci")
    for backend in ("pickle", "joblib", "cloudpickle"):
        store_model(root, model, X, y, backend=backend, test_id="t.py::test_mine")
        store_model(root, model, X, y, backend=backend, test_id="t.py::test_ci", key=ci)
        store_model(root, model, X, y, backend=backend, test_id="t.py::test_old", sign=False)
    marker = child_writable / "MARKER"
    evil = store_model(root, model, X, y, test_id="t.py::test_evil")
    tamper(evil.path, evil_pickle(marker))

    ci_file = key_file(tmp_path / "ci.key", ci_secret)
    result, statuses = load_store(pytester, "-n", "2", f"--persist-trust-key={ci_file}")
    expected = {
        f"t.py::{test}[{backend}]": "PASSED" if test in ("test_mine", "test_ci") else "FAILED"
        for test in ("test_mine", "test_ci", "test_old")
        for backend in ("pickle", "joblib", "cloudpickle")
    }
    expected["t.py::test_evil[pickle]"] = "FAILED"
    assert statuses == expected, result.stdout.str()
    assert result.stdout.str().count("not signed by a trusted key") >= 4
    assert not marker.exists()
