"""What an entry was tested to do, as an in-toto statement saved with it (``attestation.json``).

A signature says who made an entry's bytes; the attestation says what they were shown to do,
and where: its subjects are the entry's artifact and data files (sha256), and its predicate
(type :data:`PREDICATE_TYPE`) holds the test id, the backend, the estimator's class, the
environment, the methods compared and the outcome of the saving round trip. The file is one of
the entry's files, so the entry's signature covers it: ``signature.json`` through the sha256
that ``entry.json`` lists, ``model.sig`` directly, where any model-signing verifier checks it.
Read it only after the signature verifies.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PREDICATE_TYPE", "STATEMENT_TYPE", "statement"]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: The predicate's type: an identifier of pytest-persist's own, versioned with its schema.
PREDICATE_TYPE = "https://pytest-persist.dev/attestation/tested/v1"


def statement(
    subjects: dict[str, str],
    *,
    test_id: str,
    backend: str,
    estimator_class: str,
    environment: dict[str, str],
    compared_methods: list[str],
    outcome: str,
    created: str,
) -> dict[str, Any]:
    """The in-toto statement for an entry whose files have the sha256 ``subjects`` (name ->
    hex digest)."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": digest}}
            for name, digest in sorted(subjects.items())
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "test_id": test_id,
            "backend": backend,
            "estimator": estimator_class,
            "outcome": outcome,
            "compared_methods": list(compared_methods),
            "environment": dict(environment),
            "created": created,
        },
    }
