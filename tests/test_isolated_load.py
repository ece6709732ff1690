"""Checking stored artifacts in a subprocess: every outcome, with real pickles and processes."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from store_helpers import MISBEHAVING, REGISTRY, skew_versions, store_model

from pytest_persist.backends import BackendRegistry
from pytest_persist.backends.pickle_protocol import PickleBackend
from pytest_persist.isolation.check import check_entry
from pytest_persist.results.outcome import OutcomeKind
from pytest_persist.store.entries import read_entry
from pytest_persist.store.signing import own_key, sign_entry


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.mark.parametrize("backend", REGISTRY.names)
def test_same_environment_passes_for_every_backend(backend, iris, tmp_path):
    X, y = iris
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    entry = store_model(tmp_path / "store", model, X, y, backend=backend)
    outcome = check_entry(entry, registry=REGISTRY)
    assert outcome.kind is OutcomeKind.PASSED, outcome.message()
    methods = ["predict", "predict_proba", "predict_log_proba", "decision_function", "score"]
    if REGISTRY[backend].preserves_objects:
        assert outcome.compared_methods == methods
    else:  # a converted model answers fewer methods: the others are listed, not failed
        assert outcome.compared_methods == ["predict", "predict_proba"]
        assert set(outcome.not_compared) == set(methods) - {"predict", "predict_proba"}
    if backend == "skops":
        assert "untrusted_types" in outcome.details
    assert not outcome.differences and not outcome.version_warnings
    assert outcome.test_id == entry.test_id and outcome.backend == backend
    assert outcome.estimator == "Pipeline"
    assert outcome.details["saved_environment"] == outcome.details["loaded_environment"]
    assert outcome.versions["scikit-learn"] == sklearn.__version__
    assert outcome.load_seconds is not None and outcome.artifact_bytes > 0


def test_transform_and_inverse_transform(iris, tmp_path):
    X, _ = iris
    entry = store_model(tmp_path / "store", PCA(n_components=2).fit(X), X, None)
    outcome = check_entry(entry, registry=REGISTRY)
    assert outcome.kind is OutcomeKind.PASSED, outcome.message()
    assert {"transform", "inverse_transform", "score_samples"} <= set(outcome.compared_methods)


def test_version_skew_is_recorded_beside_a_pass(iris, tmp_path):
    X, y = iris
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    entry = store_model(tmp_path / "store", forest, X, y, edit=skew_versions)
    outcome = check_entry(entry, registry=REGISTRY)
    assert outcome.kind is OutcomeKind.PASSED, outcome.message()
    names = [w.estimator for w in outcome.version_warnings]
    assert names.count("DecisionTreeClassifier") >= 3 and "RandomForestClassifier" in names
    assert {(w.original_version, w.current_version) for w in outcome.version_warnings} == {
        ("1.0.2", sklearn.__version__)
    }
    assert "saved with scikit-learn 1.0.2, loaded with" in outcome.message()


def test_version_skew_in_error_mode_is_a_load_error(iris, tmp_path):
    X, y = iris
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    entry = store_model(tmp_path / "store", forest, X, y, edit=skew_versions)
    outcome = check_entry(entry, registry=REGISTRY, version_warning="error")
    assert outcome.kind is OutcomeKind.LOAD_ERROR
    assert outcome.error.startswith("VersionSkewError: ")
    assert "1.0.2" in outcome.error and sklearn.__version__ in outcome.error
    assert len(outcome.version_warnings) == 1
    assert outcome.details["warning_before_error"] is True


# ----------------------------------------------------------------------------------------------
# estimators that misbehave when loaded, in a module the subprocess can import


@pytest.fixture
def misbehaving(tmp_path, monkeypatch, iris):
    """(entry, run) where ``run(mode, **kw)`` checks the entry with ``MISBEHAVE=mode``."""
    module_dir = tmp_path / "modules"
    module_dir.mkdir()
    (module_dir / "misbehaving_model.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(module_dir))
    import misbehaving_model

    X, _ = iris
    model = misbehaving_model.Misbehaving().fit(X)
    entry = store_model(tmp_path / "store", model, X, None)

    def run(mode: str, **kwargs):
        env = dict(os.environ, MISBEHAVE=mode, PYTHONPATH=str(module_dir))
        env.update(kwargs.pop("env", {}))
        return check_entry(entry, registry=REGISTRY, env=env, **kwargs)

    yield entry, run
    sys.modules.pop("misbehaving_model", None)


def test_misbehaving_model_passes_when_it_behaves(misbehaving):
    _, run = misbehaving
    outcome = run("")
    assert outcome.kind is OutcomeKind.PASSED, outcome.message()


def test_crashing_loader_is_a_load_error_naming_the_signal(misbehaving):
    _, run = misbehaving
    outcome = run("abort")
    assert outcome.kind is OutcomeKind.LOAD_ERROR
    assert "SIGABRT" in outcome.error and "while loading" in outcome.error
    assert "Fatal Python error" in outcome.details["stderr"]  # faulthandler's stack
    assert outcome.details["warning_before_error"] is False


def test_crash_in_a_method_is_a_method_error(misbehaving):
    _, run = misbehaving
    outcome = run("predict-abort")
    assert outcome.kind is OutcomeKind.METHOD_ERROR
    assert "predict" in outcome.error and "SIGABRT" in outcome.error


def test_hanging_loader_times_out(misbehaving):
    _, run = misbehaving
    started = time.monotonic()
    outcome = run("hang", timeout=8)
    assert time.monotonic() - started < 60
    assert outcome.kind is OutcomeKind.LOAD_ERROR
    assert "timed out after 8 s" in outcome.error


def test_early_exit_is_a_load_error(misbehaving):
    _, run = misbehaving
    outcome = run("exit")
    assert outcome.kind is OutcomeKind.LOAD_ERROR
    assert "exited with code 3" in outcome.error


def test_method_that_raises_after_loading(misbehaving):
    _, run = misbehaving
    outcome = run("predict-raise")
    assert outcome.kind is OutcomeKind.METHOD_ERROR
    assert "RuntimeError" in outcome.error and "offset_" in outcome.error
    assert outcome.details["method_errors"].keys() == {"predict"}


def test_loaded_model_predicting_otherwise_is_a_mismatch(misbehaving):
    _, run = misbehaving
    outcome = run("mismatch")
    assert outcome.kind is OutcomeKind.MISMATCH
    [difference] = outcome.differences
    assert difference.method == "predict" and difference.n_different == difference.n_total


def test_tampered_artifact_is_refused_without_loading(misbehaving, child_writable):
    entry, run = misbehaving
    with open(entry.artifact_path, "ab") as handle:
        handle.write(b"\n")
    marker = child_writable / "unpickled"
    outcome = run("", env={"MISBEHAVE_MARKER": str(marker)})
    assert outcome.kind is OutcomeKind.LOAD_ERROR
    assert "sha256" in outcome.error and str(entry.artifact_path) in outcome.error
    assert outcome.details["refused"] is True
    assert not marker.exists()
    assert "child_seconds" not in outcome.details  # no loader was even started


def test_missing_class_is_a_load_error_without_warning(misbehaving, tmp_path):
    entry, _ = misbehaving
    import misbehaving_model

    X = entry.load_data().X
    # The pickle names a class this environment does not have, as across library versions.
    renamed = store_model(
        tmp_path / "renamed",
        misbehaving_model.Misbehaving().fit(X),
        X,
        None,
        edit=lambda data: data.replace(b"Misbehaving\x94", b"Misbehavinx\x94"),
    )
    outcome = check_entry(
        renamed, registry=REGISTRY, env=dict(os.environ, PYTHONPATH=str(tmp_path / "modules"))
    )
    assert outcome.kind is OutcomeKind.LOAD_ERROR
    assert outcome.error.startswith("AttributeError: Can't get attribute 'Misbehavinx'")
    assert not outcome.version_warnings
    assert outcome.details["warning_before_error"] is False


class NeedsMissingLibrary(PickleBackend):
    name = "needs-missing-library"
    modules = ("a_library_that_is_not_installed",)
    install_hint = "pip install a-library-that-is-not-installed"


def test_backend_not_installed_here_is_unavailable(iris, tmp_path):
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    entry = store_model(tmp_path / "store", model, X, y)
    entry.manifest["backend"] = NeedsMissingLibrary.name  # as if saved where it was installed
    registry = BackendRegistry([NeedsMissingLibrary()])
    outcome = check_entry(entry, registry=registry)
    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert "a_library_that_is_not_installed" in outcome.error
    outcome = check_entry(entry, registry=BackendRegistry([]))
    assert outcome.kind is OutcomeKind.UNAVAILABLE and "not registered" in outcome.error


def test_versions_show_what_changed(iris, tmp_path):
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    entry = store_model(tmp_path / "store", model, X, y, backend="joblib")
    # as if saved under numpy 1.26.4: the check reads the entry on disk, signed as saved
    manifest = dict(entry.manifest, environment=dict(entry.environment, numpy="1.26.4"))
    entry.entry_file.write_text(json.dumps(manifest, indent=2))
    sign_entry(entry.path, own_key())
    outcome = check_entry(read_entry(entry.path), registry=REGISTRY)
    assert outcome.versions["numpy"] == f"1.26.4 -> {np.__version__}"
    assert outcome.versions["scikit-learn"] == sklearn.__version__
    assert "joblib" in outcome.versions
    assert outcome.details["saved_environment"]["numpy"] == "1.26.4"


def test_a_loader_that_died_is_restarted(iris, tmp_path):
    import signal

    from pytest_persist.isolation.loader import ForkLoader

    X, y = iris
    entry = store_model(tmp_path / "store", LogisticRegression(max_iter=500).fit(X, y), X, y)
    loader = ForkLoader()
    try:
        first = check_entry(entry, registry=REGISTRY, loader=loader)
        assert first.kind is OutcomeKind.PASSED and first.details["isolation"] == "fork"
        server = loader.ready_info["pid"]
        os.kill(server, signal.SIGKILL)
        again = check_entry(entry, registry=REGISTRY, loader=loader)
        assert again.kind is OutcomeKind.PASSED, again.message()
        assert loader.ready_info["pid"] != server
    finally:
        loader.stop()


def test_another_interpreter_falls_back_to_one_process_per_artifact(iris, tmp_path):
    X, y = iris
    entry = store_model(tmp_path / "store", LogisticRegression(max_iter=500).fit(X, y), X, y)
    other = os.path.join(os.path.dirname(sys.executable), "python3")
    outcome = check_entry(entry, registry=REGISTRY, python=other)
    assert outcome.kind is OutcomeKind.PASSED, outcome.message()
    assert outcome.details["isolation"] == "process"
    assert "is another interpreter" in outcome.details["isolation_note"]


def test_an_interpreter_that_cannot_start_is_this_checks_load_error(iris, tmp_path):
    X, y = iris
    entry = store_model(tmp_path / "store", LogisticRegression(max_iter=500).fit(X, y), X, y)
    missing = str(tmp_path / "no-such-python")
    outcome = check_entry(entry, registry=REGISTRY, python=missing)
    assert outcome.kind is OutcomeKind.LOAD_ERROR
    assert f"cannot start {missing}" in outcome.error
    assert outcome.details["isolation"] == "process"
