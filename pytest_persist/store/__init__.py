"""The store: entries on disk, saved in one environment and checked in another.

``entries`` writes and reads entries (manifest, checksums, atomic publication, validation);
``codec`` stores X, y and outputs as ``.npz`` + JSON, never a pickle; ``signing`` signs
entries and decides which signatures are trusted. Pytest-free; may import ``estimators``,
``environments`` and ``results``. Loading an entry is ``isolation``'s job.
"""

from __future__ import annotations

import importlib
from typing import Any

#: What ``from pytest_persist.store import ...`` offers (the module it was before 0.2).
_EXPORTS = {
    name: "entries"
    for name in (
        "DATA_DESCRIPTION_FILE",
        "DATA_FILE",
        "ENTRY_FILE",
        "STORE_FORMAT",
        "STORE_FORMAT_VERSION",
        "StoreError",
        "StoredData",
        "StoredEntry",
        "TamperedArtifactError",
        "clean_temporary",
        "entry_dirs",
        "entry_name",
        "iter_entries",
        "read_entry",
        "save_entry",
        "sha256_file",
    )
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
