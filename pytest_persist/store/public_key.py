"""Public-key signatures of store entries, in OpenSSF's model-signing format.

An entry signed with an elliptic-curve private key (P-256, P-384 or P-521, PEM) carries
``model.sig``: a Sigstore bundle (a DSSE envelope over an in-toto statement whose subjects are
the sha256 of every file of the entry), written and checked by the ``model-signing`` library
(``pip install pytest-persist[signing]``), so that anyone holding the public key can check it,
with this plugin or with ``python -m model_signing verify key``. The checking side holds no
secret.

A key's id is ``ec:`` and the first 16 hex digits of the sha256 of its public key in PEM
(the ``hint`` model-signing writes into each bundle), so a refusal can name the key that
signed an entry before anyone trusts it. ``model_signing`` is imported only when such a key is
used (about 0.4 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layout import MODEL_SIGNATURE_FILE

__all__ = [
    "CURVES",
    "PASSPHRASE_ENV",
    "PrivateSigningKey",
    "PublicKeyError",
    "TrustedPublicKey",
    "bundle_key_id",
    "is_pem",
    "load_private_key",
    "load_public_key",
]

#: The curves model-signing signs with (ECDSA with SHA-256, -384, -512).
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
#: Where the passphrase of an encrypted private key comes from (never a command-line value).
PASSPHRASE_ENV = "PYTEST_PERSIST_KEY_PASSPHRASE"
_INSTALL = "pip install pytest-persist[signing] (model-signing)"


class PublicKeyError(Exception):
    """A key or bundle that cannot be used; the message names the file."""


def is_pem(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN ")


def _pem_key_id(pem: bytes) -> str:
    return "ec:" + hashlib.sha256(pem).hexdigest()[:16]


def _check_curve(key: Any, path: Path, kind: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        name = type(key).__name__.lstrip("_")
        raise PublicKeyError(
            f"{path}: a {name} {kind}; model-signing signs with elliptic-curve keys (P-256, "
            "P-384 or P-521): e.g. openssl ecparam -name prime256v1 -genkey -noout -out key.pem"
        )
    if key.curve.name not in CURVES:
        raise PublicKeyError(
            f"{path}: an elliptic-curve {kind} on curve {key.curve.name}, which model-signing "
            f"does not sign with; use one of {', '.join(CURVES.values())}"
        )
    return CURVES[key.curve.name]


@dataclass(frozen=True)
class TrustedPublicKey:
    """A public key whose signatures are trusted (``--persist-trust-key=PUB.pem``), or the
    public half of this account's private key (``path`` is then the private key's)."""

    path: Path
    key_id: str
    curve: str
    pem: bytes = field(repr=False, default=b"")

    @property
    def source(self) -> str:
        return str(self.path)

    @property
    def scheme(self) -> str:
        return f"model-signing ecdsa-{self.curve}"

    def verify(self, directory: Path) -> str | None:
        """None if ``model.sig`` in ``directory`` is this key's signature over exactly the
        files there, else why not."""
        import model_signing
        from cryptography.exceptions import InvalidSignature

        try:
            verifier = model_signing.verifying.Config().use_elliptic_key_verifier(
                public_key=_pem_file(self.pem)
            )
            verifier.verify(Path(directory), Path(directory) / MODEL_SIGNATURE_FILE)
        except InvalidSignature:
            return f"the signature in {MODEL_SIGNATURE_FILE} does not verify with {self.key_id}"
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            return _plainly(f"{MODEL_SIGNATURE_FILE}: {exc}")
        return None


def _plainly(message: str) -> str:
    """model-signing's mismatch message, file by file, without its digests' byte dumps."""
    changed = re.findall(r"Hash mismatch for [\\]?['\"]([^'\"\\]+)", message)
    added = re.findall(r"Extra files found in model [^:]*: ([^\"\]]+)", message)
    gone = re.findall(r"Missing files in model [^:]*: ([^\"\]]+)", message)
    if not (changed or added or gone):
        return message
    parts = []
    if changed:
        parts.append(f"{', '.join(changed)} changed since {MODEL_SIGNATURE_FILE} signed it")
    if added:
        parts.append(f"{', '.join(added)} added since (not covered by the signature)")
    if gone:
        parts.append(f"{', '.join(gone)} removed since")
    return "; ".join(parts)


@dataclass(frozen=True)
class PrivateSigningKey:
    """An elliptic-curve private key entries are signed with (``--persist-key-file``)."""

    path: Path
    password: bytes | None = field(repr=False)
    public: TrustedPublicKey

    @property
    def source(self) -> str:
        return str(self.path)

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, directory: Path) -> Path:
        """Write ``model.sig`` over every file of ``directory`` (but itself)."""
        import model_signing

        signature = Path(directory) / MODEL_SIGNATURE_FILE
        hashing = model_signing.hashing.Config().set_ignored_paths(paths=[MODEL_SIGNATURE_FILE])
        model_signing.signing.Config().use_elliptic_key_signer(
            private_key=self.path, password=self.password
        ).set_hashing_config(hashing).sign(Path(directory), signature)
        return signature


_PEM_FILES: dict[bytes, Path] = {}


def _pem_file(pem: bytes) -> Path:
    """A file holding ``pem`` (model-signing reads keys from files), made once per process."""
    if pem not in _PEM_FILES:
        import atexit
        import tempfile

        handle, name = tempfile.mkstemp(prefix="pytest-persist-public-", suffix=".pem")
        with os.fdopen(handle, "wb") as stream:
            stream.write(pem)
        atexit.register(lambda: Path(name).unlink(missing_ok=True))
        _PEM_FILES[pem] = Path(name)
    return _PEM_FILES[pem]


def _public_pem(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _require_library() -> None:
    try:
        import model_signing  # noqa: F401
    except ImportError as exc:
        raise PublicKeyError(
            f"public-key signatures need model-signing: {_INSTALL} ({exc})"
        ) from None


def load_private_key(path: Path, data: bytes) -> PrivateSigningKey:
    """The private key in ``data`` (read from ``path``, a PEM file), with its passphrase
    from ``PYTEST_PERSIST_KEY_PASSPHRASE`` if it is encrypted."""
    from cryptography.hazmat.primitives import serialization

    if b"PUBLIC KEY-----" in data:
        raise PublicKeyError(
            f"{path}: a public key; --persist-key-file (persist_key_file) signs, so it takes "
            "the private key; give the public key to --persist-trust-key on the checking side"
        )
    _require_library()
    passphrase = os.environ.get(PASSPHRASE_ENV)
    password = passphrase.encode() if passphrase else None
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError as exc:
        if "not encrypted" in str(exc):
            key = serialization.load_pem_private_key(data, None)
            password = None
        else:
            raise PublicKeyError(
                f"{path}: an encrypted private key and no passphrase: set {PASSPHRASE_ENV} "
                "(a CI secret, say)"
            ) from None
    except ValueError as exc:
        if password is not None and "password" in str(exc).lower():
            raise PublicKeyError(
                f"{path}: {PASSPHRASE_ENV} is not the passphrase of this key"
            ) from None
        raise PublicKeyError(f"{path}: not a usable PEM private key ({exc})") from None
    except Exception as exc:  # an unsupported algorithm, a malformed file
        raise PublicKeyError(f"{path}: not a usable PEM private key ({exc})") from None
    curve = _check_curve(key, path, "private key")
    pem = _public_pem(key.public_key())
    return PrivateSigningKey(path, password, TrustedPublicKey(path, _pem_key_id(pem), curve, pem))


def load_public_key(path: Path, data: bytes) -> TrustedPublicKey:
    """The public key in ``data`` (read from ``path``), to trust."""
    from cryptography.hazmat.primitives import serialization

    if b"PRIVATE KEY-----" in data:
        raise PublicKeyError(
            f"{path}: a private key; --persist-trust-key (persist_trust_keys) takes the public "
            "key, so that the checking side holds no secret: openssl ec -in KEY -pubout"
        )
    _require_library()
    try:
        key = serialization.load_pem_public_key(data)
    except Exception as exc:
        raise PublicKeyError(f"{path}: not a usable PEM public key ({exc})") from None
    curve = _check_curve(key, path, "public key")
    pem = _public_pem(key)
    return TrustedPublicKey(path, _pem_key_id(pem), curve, pem)


def bundle_key_id(signature: Path) -> tuple[str | None, str]:
    """The id of the key a ``model.sig`` says it was made with (from its public-key hint),
    and why there is none."""
    try:
        bundle = json.loads(signature.read_text(encoding="utf-8"))
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
    except FileNotFoundError:
        return None, "no signature"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{signature} is not a model-signing bundle ({type(exc).__name__}: {exc})"
    if not isinstance(hint, str) or len(hint) < 16:
        return None, f"{signature} names no public key"
    return "ec:" + hint[:16], ""
