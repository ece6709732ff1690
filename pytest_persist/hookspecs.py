"""Hooks that other plugins and ``conftest.py`` files implement to extend pytest-persist."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .backends import BackendRegistry


@pytest.hookspec
def pytest_persist_add_backends(registry: BackendRegistry) -> None:
    """Register extra persistence backends, once per session.

    Example, in a ``conftest.py``::

        import pickle
        from pytest_persist.backends import Backend

        class Protocol4(Backend):
            name = "pickle-4"
            def dump(self, estimator, path, call):
                path.write_bytes(pickle.dumps(estimator, protocol=4))
            def load(self, path, call):
                return pickle.loads(path.read_bytes())

        def pytest_persist_add_backends(registry):
            registry.register(Protocol4())
    """
