"""Helpers shared by the store tests: real artifacts, saved as the plugin saves them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import sklearn

from pytest_persist.backends import BackendCall, BackendRegistry
from pytest_persist.environments.fingerprint import environment_fingerprint
from pytest_persist.roundtrip.compare import compute_outputs
from pytest_persist.store.entries import StoredEntry, read_entry, save_entry

REGISTRY = BackendRegistry()


def store_model(
    root,
    model,
    X,
    y,
    *,
    backend="pickle",
    registry=REGISTRY,
    test_id=None,
    edit=None,
    **save_options,
) -> StoredEntry:
    """Dump ``model`` with ``backend`` and save it with its expected outputs; return the entry.

    ``edit(bytes) -> bytes`` alters the artifact before it is stored (simulating another
    environment), so the store's checksums describe the altered file; ``save_options``
    go to ``save_entry`` (``sign=False``, ``key=...``).
    """
    workdir = Path(root).parent / "work"
    workdir.mkdir(exist_ok=True)
    backend_obj = registry[backend]
    artifact = workdir / f"{backend}{backend_obj.suffix}"
    backend_obj.dump(model, artifact, BackendCall(X=X))
    if edit is not None:
        artifact.write_bytes(edit(artifact.read_bytes()))
    outputs, errors = compute_outputs(model, X, y)
    untrusted = None
    if backend == "skops":  # what the saving round trip records (call.details)
        import skops.io

        untrusted = sorted(skops.io.get_untrusted_types(file=artifact))
    path = save_entry(
        root,
        test_id=test_id or f"tests/test_models.py::test_{type(model).__name__}",
        backend_name=backend,
        estimator=model,
        artifact_path=artifact,
        X=X,
        y=y,
        expected_outputs=outputs,
        not_compared=errors,
        environment=environment_fingerprint(),
        untrusted_types=untrusted,
        **save_options,
    )
    return read_entry(path)


def skew_versions(data: bytes, old: str = "1.0.2") -> bytes:
    """A pickle "saved under scikit-learn ``old``": every ``_sklearn_version`` is rewritten."""
    current = sklearn.__version__.encode()
    assert len(current) == len(old) and current in data
    return data.replace(current, old.encode())


MISBEHAVING = textwrap.dedent(
    """
    import os, time
    import numpy as np

    # The loader's child gets a clean environment: a test that checks through the plugin
    # writes the mode (misbehave_mode.txt) and the marker path (misbehave_marker.txt) beside
    # this module instead of setting MISBEHAVE / MISBEHAVE_MARKER.
    _HERE = os.path.dirname(os.path.abspath(__file__))


    def _setting(variable, name):
        path = os.path.join(_HERE, name)
        from_file = open(path).read().strip() if os.path.exists(path) else ""
        return os.environ.get(variable) or from_file


    MODE = _setting("MISBEHAVE", "misbehave_mode.txt")


    class Misbehaving:
        def fit(self, X, y=None):
            self.offset_ = 1.0
            return self

        def get_params(self, deep=True):
            return {}

        def predict(self, X):
            if MODE == "predict-raise":
                raise RuntimeError("no attribute 'offset_' after loading")
            if MODE == "predict-abort":
                os.abort()
            bump = 1.0 if MODE == "mismatch" else 0.0
            return np.asarray(X).sum(axis=1) + self.offset_ + bump

        def __setstate__(self, state):
            marker = _setting("MISBEHAVE_MARKER", "misbehave_marker.txt")
            if marker:
                open(marker, "w").close()  # proves this artifact was unpickled
            if MODE == "abort":
                os.abort()
            if MODE == "hang":
                time.sleep(3600)
            if MODE == "exit":
                os._exit(3)
            self.__dict__.update(state)
    """
)
