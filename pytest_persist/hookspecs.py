"""Hooks that other plugins and ``conftest.py`` files implement to extend pytest-persist."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

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


@pytest.hookspec
def pytest_persist_register_onnx_converters(register: Callable[..., None]) -> None:
    """Teach skl2onnx your estimators, once per session; called only when the onnx backend's
    libraries are installed, so your conftest need not import skl2onnx itself.

    ``register(model_type, alias, shape_calculator, converter, parser=None, options=None)``
    wraps ``skl2onnx.update_registered_converter``. Example::

        def pytest_persist_register_onnx_converters(register):
            from my_package.onnx import my_shape_calculator, my_converter
            register(MyRegressor, "MyPackageMyRegressor", my_shape_calculator, my_converter)
    """
