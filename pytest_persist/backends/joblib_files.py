"""joblib backends: plain file, memory-mapped load and compressed file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .base import Backend, BackendCall


class JoblibBackend(Backend):
    """``joblib.dump`` to a file and ``joblib.load`` back."""

    name = "joblib"
    modules = ("joblib",)
    install_hint = "pip install joblib"
    suffix = ".joblib"
    compress: ClassVar[int | tuple[str, int]] = 0
    mmap_mode: ClassVar[str | None] = None

    def dump(self, estimator: Any, path: Path, call: BackendCall) -> None:
        import joblib

        joblib.dump(estimator, path, compress=self.compress)

    def load(self, path: Path, call: BackendCall) -> Any:
        import joblib

        return joblib.load(path, mmap_mode=self.mmap_mode)


class JoblibMmapBackend(JoblibBackend):
    """Loaded with ``mmap_mode="r"``: arrays come back read-only, which breaks some
    ``__setstate__`` implementations (scikit-learn#25584)."""

    name = "joblib-mmap"
    mmap_mode = "r"


class JoblibCompressedBackend(JoblibBackend):
    """Compressed with zlib level 3, the usual choice for shipping models."""

    name = "joblib-compressed"
    suffix = ".joblib.z"
    compress = ("zlib", 3)
