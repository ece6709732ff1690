"""The names of a store's files and folders, shared by the modules that write and read them.

Layout of a store directory ``root``::

    root/
      <test-slug>--<backend>-<hash>/     one entry per (test id, backend)
        entry.json                       manifest: ids, estimator, environment, checksums...
        signature.json                   HMAC-SHA256 of entry.json's bytes (see ``signing``)
        model.sig                        or: a model-signing bundle over every file
        attestation.json                 what the entry was tested to do (``attestation``)
        artifact<suffix>                 what the backend wrote
        data.npz, data.json              X, y and expected outputs (no pickle needed to read)
      .tmp-...                           an entry being written (or left by a killed run)
      .old-...                           an entry being replaced
"""

from __future__ import annotations

STORE_FORMAT = "pytest-persist-store-entry"
STORE_FORMAT_VERSION = 1
ENTRY_FILE = "entry.json"
SIGNATURE_FILE = "signature.json"
MODEL_SIGNATURE_FILE = "model.sig"
ATTESTATION_FILE = "attestation.json"
DATA_FILE = "data.npz"
DATA_DESCRIPTION_FILE = "data.json"
TEMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
