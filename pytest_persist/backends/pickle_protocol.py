"""Backends that speak the pickle protocol directly: ``pickle`` and ``cloudpickle``."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .base import Backend, BackendCall

PICKLE_PROTOCOL = 5  # the scikit-learn docs recommend protocol 5 (out-of-band buffers)


class PickleBackend(Backend):
    """The standard library's pickle, protocol 5."""

    name = "pickle"
    modules = ()
    install_hint = "part of the standard library"
    suffix = ".pkl"

    def dump(self, estimator: Any, path: Path, call: BackendCall) -> None:
        # streamed to the file: the whole pickle never sits in memory beside the model
        with open(path, "wb") as file:
            pickle.dump(estimator, file, protocol=PICKLE_PROTOCOL)

    def load(self, path: Path, call: BackendCall) -> Any:
        with open(path, "rb") as file:
            return pickle.load(file)

    def library_versions(self) -> dict[str, str]:
        return {"pickle-protocol": str(PICKLE_PROTOCOL)}


class CloudpickleBackend(Backend):
    """cloudpickle: survives lambdas and functions defined inside other functions."""

    name = "cloudpickle"
    modules = ("cloudpickle",)
    install_hint = "pip install cloudpickle (or pytest-persist[cloudpickle])"
    suffix = ".cloudpkl"

    def dump(self, estimator: Any, path: Path, call: BackendCall) -> None:
        import cloudpickle

        with open(path, "wb") as file:
            cloudpickle.dump(estimator, file, protocol=PICKLE_PROTOCOL)

    def load(self, path: Path, call: BackendCall) -> Any:
        # cloudpickle writes ordinary pickles: loading needs only the standard library.
        with open(path, "rb") as file:
            return pickle.load(file)
