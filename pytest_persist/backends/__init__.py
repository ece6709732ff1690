"""Persistence backends behind one small interface (see ``base.Backend``), and their registry.

One module per library: ``pickle_protocol`` (pickle, cloudpickle), ``joblib_files``,
``skops_io``, ``onnx_runtime`` with ``onnx_converters``. Pytest-free; may import
``estimators`` (the ONNX backend walks nested estimators), nothing above.
"""

from __future__ import annotations

from .base import Backend, BackendCall, UnsupportedEstimator
from .joblib_files import JoblibBackend, JoblibCompressedBackend, JoblibMmapBackend
from .onnx_runtime import OnnxBackend
from .pickle_protocol import CloudpickleBackend, PickleBackend
from .skops_io import SkopsBackend

__all__ = [
    "Backend",
    "BackendCall",
    "BackendRegistry",
    "UnsupportedEstimator",
    "builtin_backends",
]


def builtin_backends() -> list[Backend]:
    """The backends pytest-persist ships, in the order they run."""
    return [
        PickleBackend(),
        JoblibBackend(),
        JoblibMmapBackend(),
        JoblibCompressedBackend(),
        CloudpickleBackend(),
        SkopsBackend(),
        OnnxBackend(),
    ]


class BackendRegistry:
    """Backends by name; third parties add theirs through the ``pytest_persist_add_backends``
    hook or ``register``."""

    def __init__(self, backends: list[Backend] | None = None) -> None:
        self._backends: dict[str, Backend] = {}
        for backend in builtin_backends() if backends is None else backends:
            self.register(backend)

    def register(self, backend: Backend) -> None:
        name = getattr(backend, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"backend {backend!r} has no name")
        if name in self._backends:
            raise ValueError(f"a backend named {name!r} is already registered")
        self._backends[name] = backend

    def __getitem__(self, name: str) -> Backend:
        try:
            return self._backends[name]
        except KeyError:
            raise KeyError(
                f"unknown persistence backend {name!r}; known backends: {', '.join(self.names)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    @property
    def names(self) -> list[str]:
        return list(self._backends)

    def select(
        self,
        names: list[str] | None = None,
        exclude: list[str] | None = None,
        *,
        also_known: list[str] | None = None,
    ) -> list[str]:
        """Validated backend names: ``names`` (all when None) minus ``exclude``.

        ``also_known`` are further names to validate (e.g. the keys of ``xfail``).
        """
        chosen = self.names if names is None else list(names)
        mentioned = [*chosen, *(exclude or []), *(also_known or [])]
        unknown = [n for n in mentioned if n not in self._backends]
        if unknown:
            raise ValueError(
                f"unknown persistence backend(s) {', '.join(map(repr, unknown))}; "
                f"known backends: {', '.join(self.names)}"
            )
        return [n for n in chosen if n not in set(exclude or [])]
