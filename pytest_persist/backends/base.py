"""The one small interface every persistence backend implements."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


class UnsupportedEstimator(Exception):
    """Raised by ``Backend.dump`` when the backend cannot handle this estimator at all.

    This is not a persistence bug (e.g. no ONNX converter exists); the round trip ends as
    ``unsupported`` with this message.
    """


@dataclass
class BackendCall:
    """What a backend may need beyond the estimator, and what it learns on the way.

    ``X`` is a sample of the input (ONNX infers its input types from it); ``options`` holds
    the backend-specific settings chosen by marker, command line or ini (e.g. ``trusted``);
    ``details`` is where a backend records what users should see (untrusted types, a retry
    it made, the converter options it used). Details must be JSON-able. ``outputs`` are the
    estimator's own outputs on ``X`` by method, when the caller computed them (the round trip
    does): a backend reads them instead of calling the estimator again.
    """

    X: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


class Backend:
    """A way to persist an estimator to a file and load it back.

    Subclasses set ``name``, ``modules`` (importable names the backend needs), optionally
    ``load_modules`` (what ``load`` imports, if not all of ``modules``: the fork loader imports
    those once) and ``install_hint``, and implement ``dump`` and ``load``. Every backend
    writes a file, so artifact size, checksum and cross-environment storage work the same for
    all of them.
    """

    name: ClassVar[str]
    modules: ClassVar[tuple[str, ...]] = ()
    #: What loading imports, preloaded by the fork loader (None: ``modules``).
    load_modules: ClassVar[tuple[str, ...] | None] = None
    install_hint: ClassVar[str] = ""
    suffix: ClassVar[str] = ".bin"
    #: Same code on the same data gives the same bits (pickle family); False for ONNX.
    preserves_objects: ClassVar[bool] = True
    #: Loading may run code the file chooses (pickle family). A stored entry of such a backend
    #: is unpickled only when signed by a trusted key. A third-party backend is assumed to,
    #: unless it sets this False (its loader runs no code the file chooses, like ONNX).
    runs_code_on_load: ClassVar[bool] = True
    #: Loading trusts only an allowlist of types (skops): a stored entry is loaded with the
    #: checking side's ``trusted`` list, or the types recorded at save if signed by a trusted key.
    uses_type_allowlist: ClassVar[bool] = False
    #: Default tolerances when the marker gives none (scikit-learn's own).
    default_rtol: ClassVar[float] = 1e-7
    default_atol: ClassVar[float] = 1e-9

    def is_available(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.modules)

    def modules_to_load(self) -> tuple[str, ...]:
        """The modules ``load`` imports (what a warm loader imports once for it)."""
        return self.modules if self.load_modules is None else self.load_modules

    def unavailable_reason(self) -> str:
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        return f"{', '.join(missing)} not installed: {self.install_hint}"

    def library_versions(self) -> dict[str, str]:
        """Versions of the libraries this backend uses, for reports and stores."""
        from importlib import metadata

        versions = {}
        for module in self.modules:
            dist = {"sklearn": "scikit-learn", "skl2onnx": "skl2onnx"}.get(module, module)
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return versions

    def dump(self, estimator: Any, path: Path, call: BackendCall) -> None:
        """Write ``estimator`` to ``path``; raise ``UnsupportedEstimator`` if it cannot."""
        raise NotImplementedError

    def load(self, path: Path, call: BackendCall) -> Any:
        """Read back what ``dump`` wrote; the result answers the estimator's methods."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
