"""Signed store entries: who may have written an entry that is about to be unpickled.

An entry's ``entry.json`` holds the sha256 of every file of the entry, so an HMAC-SHA256 of
its exact bytes, written beside it as ``signature.json``, covers the whole entry. The key is,
in this order: the ``PYTEST_PERSIST_KEY`` environment variable, a key file named by
``--persist-key-file`` / ``persist_key_file``, or a per-user key created on first save (mode
0600) in the user's configuration directory. A key is 32 or more random bytes written as hex
(``python -c "import secrets; print(secrets.token_hex(32))"``); its id is a fingerprint, so a
refusal can say which key signed an entry without revealing it.

HMAC keys are symmetric: whoever can check a signature can also make one, so a key trusted with
``--persist-trust-key`` is a secret (a CI secret, say), never a file shipped with the store.
A key file may instead hold an elliptic-curve private key (PEM): entries are then signed in the
model-signing format (``public_key``) and the checking side trusts the public key alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layout import ENTRY_FILE, MODEL_SIGNATURE_FILE, SIGNATURE_FILE
from .public_key import (
    PrivateSigningKey,
    PublicKeyError,
    TrustedPublicKey,
    bundle_key_id,
    is_pem,
    load_private_key,
    load_public_key,
)

__all__ = [
    "ALGORITHM",
    "KEY_ENV",
    "SIGNATURE_FILE",
    "SignatureCheck",
    "SigningKey",
    "SigningKeyError",
    "TrustPolicy",
    "check_signature",
    "load_key_file",
    "load_trust_key",
    "own_key",
    "sign_entry",
    "user_key_path",
]

KEY_ENV = "PYTEST_PERSIST_KEY"
ALGORITHM = "hmac-sha256"
_MIN_KEY_BYTES = 32
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


class SigningKeyError(Exception):
    """A key that cannot be used (missing, corrupt, readable by others); names where it is."""


@dataclass(frozen=True)
class SigningKey:
    """A secret and where it came from (a file, or the environment variable)."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A fingerprint naming the key in signatures and messages (not the key itself)."""
        return hashlib.sha256(b"pytest-persist key id\0" + self.secret).hexdigest()[:16]

    def mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()


def _parse_key(text: str, where: str) -> bytes:
    value = text.strip()
    if not _HEX.fullmatch(value) or len(value) < 2 * _MIN_KEY_BYTES:
        raise SigningKeyError(
            f"{where}: not a pytest-persist key (expected at least {2 * _MIN_KEY_BYTES} hex "
            f'digits, e.g. from python -c "import secrets; print(secrets.token_hex(32))"); '
            "the file is corrupt or not a key"
        )
    return bytes.fromhex(value)


def _read_key_file(path: Path, *, private: bool) -> bytes:
    """The bytes of a key file; refuse one that is missing, not a file, or (``private``)
    readable by others."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: no such key file") from None
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read the key file ({exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SigningKeyError(f"{path}: not a regular file, so not a key file")
    if private and os.name == "posix" and info.st_mode & 0o077:
        raise SigningKeyError(
            f"{path}: key file is readable or writable by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); a key must be private: chmod 600 {path}"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: unreadable key file ({exc})") from None


def load_key_file(path: Path | str) -> SigningKey | PrivateSigningKey:
    """Read a key to sign with: an HMAC key (hex) or an elliptic-curve private key (PEM);
    refuse one that is missing, corrupt, readable by others, or a public key."""
    path = Path(path)
    data = _read_key_file(path, private=True)
    if is_pem(data):
        try:
            return load_private_key(path, data)
        except PublicKeyError as exc:
            raise SigningKeyError(str(exc)) from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SigningKeyError(f"{path}: unreadable key file ({exc})") from None
    return SigningKey(_parse_key(text, str(path)), str(path))


def load_trust_key(path: Path | str) -> SigningKey | TrustedPublicKey:
    """Read a key to trust (``--persist-trust-key``): a public key (PEM), which may be
    readable by anyone, or an HMAC key (a secret, so private)."""
    path = Path(path)
    data = _read_key_file(path, private=False)
    if is_pem(data):
        try:
            return load_public_key(path, data)
        except PublicKeyError as exc:
            raise SigningKeyError(str(exc)) from None
    key = load_key_file(path)  # an HMAC key: the permission check applies
    assert isinstance(key, SigningKey)
    return key


def user_key_path() -> Path:
    """Where the per-user key lives: ``user_config_dir("pytest-persist")/key``."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("pytest-persist", appauthor=False)) / "key"


def _create_user_key(path: Path) -> None:
    """Write a fresh key to ``path`` atomically, unless another process was first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(_MIN_KEY_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process was first: use its key
            os.link(temp, path)  # atomic, and never overwrites a key
    finally:
        temp.unlink(missing_ok=True)


def own_key(
    key_file: Path | str | None = None, *, create: bool = False
) -> SigningKey | PrivateSigningKey | None:
    """The key this account signs with: ``PYTEST_PERSIST_KEY``, else ``key_file``, else the
    per-user key (created when ``create``; None when it does not exist and is not created)."""
    value = os.environ.get(KEY_ENV)
    if value:
        return SigningKey(_parse_key(value, f"environment variable {KEY_ENV}"), KEY_ENV)
    if key_file is not None:
        return load_key_file(key_file)
    path = user_key_path()
    if not path.exists():
        if not create:
            return None
        try:
            _create_user_key(path)
        except OSError as exc:
            raise SigningKeyError(f"{path}: cannot create the per-user key ({exc})") from None
    key = load_key_file(path)
    if not isinstance(key, SigningKey):
        raise SigningKeyError(f"{path}: the per-user key must be an HMAC key (hex)")
    return key


# ----------------------------------------------------------------------------------------------
# signing and checking


def sign_entry(directory: Path | str, key: SigningKey | PrivateSigningKey) -> Path:
    """Sign the entry in ``directory``; return the signature's path: ``signature.json`` (an
    HMAC of its ``entry.json``) or, with an elliptic-curve key, ``model.sig`` (a model-signing
    bundle over every file of the entry, so write it last)."""
    directory = Path(directory)
    if isinstance(key, PrivateSigningKey):
        try:
            return key.sign(directory)
        except Exception as exc:  # model-signing's own errors, named
            raise SigningKeyError(
                f"{key.path}: cannot sign {directory} ({type(exc).__name__}: {exc})"
            ) from None
    data = (directory / ENTRY_FILE).read_bytes()
    signature = {"algorithm": ALGORITHM, "key_id": key.key_id, "mac": key.mac(data)}
    path = directory / SIGNATURE_FILE
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(signature, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


@dataclass(frozen=True)
class SignatureCheck:
    """What the signature of one entry says: ``status`` is ``trusted``, ``unsigned`` (no
    signature file), ``untrusted`` (signed by a key not trusted here) or ``invalid``."""

    status: str
    key_id: str | None = None
    why: str = ""
    #: How it was signed: "hmac-sha256", "model-signing ecdsa-P-256" (and P-384, P-521),
    #: "model-signing" (a bundle no trusted key made); None: unsigned.
    scheme: str | None = None

    @property
    def trusted(self) -> bool:
        return self.status == "trusted"

    def describe(self) -> str:
        return {
            "trusted": f"signed by trusted key {self.key_id}",
            "unsigned": "not signed (no signature.json or model.sig: written before signing "
            "existed, or by hand)",
            "untrusted": f"signed by key {self.key_id}, which is not trusted here",
            "invalid": f"its signature is invalid ({self.why})",
        }[self.status]


def check_signature(
    directory: Path | str,
    entry_bytes: bytes,
    keys: Iterable[SigningKey | TrustedPublicKey | PrivateSigningKey],
) -> SignatureCheck:
    """Check the signature of the entry in ``directory`` (a verified copy): ``model.sig``
    where there is one, against the trusted public keys; else ``signature.json`` against
    ``entry_bytes`` (the exact bytes of the entry.json that was parsed) and the HMAC keys."""
    keys = list(keys)
    if (Path(directory) / MODEL_SIGNATURE_FILE).exists():
        return _check_bundle(Path(directory), keys)
    hmac_keys = [key for key in keys if isinstance(key, SigningKey)]
    path = Path(directory) / SIGNATURE_FILE
    if path.is_symlink():
        return SignatureCheck("invalid", why=f"{path} is a symlink", scheme=ALGORITHM)
    try:
        signature: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SignatureCheck("unsigned")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return SignatureCheck("invalid", why=f"{path} is unreadable: {exc}", scheme=ALGORITHM)
    if not isinstance(signature, dict) or not all(
        isinstance(signature.get(k), str) for k in ("algorithm", "key_id", "mac")
    ):
        return SignatureCheck(
            "invalid", why=f"{path} lacks algorithm, key_id or mac", scheme=ALGORITHM
        )
    key_id = signature["key_id"]
    if signature["algorithm"] != ALGORITHM:
        return SignatureCheck(
            "invalid",
            key_id,
            f"algorithm {signature['algorithm']!r}, expected {ALGORITHM!r}",
            scheme=ALGORITHM,
        )
    for key in hmac_keys:
        if key.key_id != key_id:
            continue
        if hmac.compare_digest(key.mac(entry_bytes), signature["mac"]):
            return SignatureCheck("trusted", key_id, scheme=ALGORITHM)
        return SignatureCheck(
            "invalid",
            key_id,
            f"the MAC of key {key_id} does not match: entry.json changed",
            scheme=ALGORITHM,
        )
    return SignatureCheck("untrusted", key_id, scheme=ALGORITHM)


def _check_bundle(
    directory: Path, keys: list[SigningKey | TrustedPublicKey | PrivateSigningKey]
) -> SignatureCheck:
    """``model.sig``: which key made it (its hint), and whether a trusted one verifies it
    over exactly the files of the entry."""
    signature = directory / MODEL_SIGNATURE_FILE
    if signature.is_symlink():
        return SignatureCheck("invalid", why=f"{signature} is a symlink", scheme="model-signing")
    key_id, why = bundle_key_id(signature)
    if key_id is None:
        return SignatureCheck("invalid", why=why, scheme="model-signing")
    public = [k.public if isinstance(k, PrivateSigningKey) else k for k in keys]
    for key in public:
        if not isinstance(key, TrustedPublicKey) or key.key_id != key_id:
            continue
        try:
            problem = key.verify(directory)
        except ImportError as exc:
            problem = f"model-signing is not installed: pip install pytest-persist[signing] ({exc})"
        if problem is None:
            return SignatureCheck("trusted", key_id, scheme=key.scheme)
        return SignatureCheck("invalid", key_id, problem, scheme=key.scheme)
    return SignatureCheck("untrusted", key_id, scheme="model-signing")


@dataclass(frozen=True)
class TrustPolicy:
    """What a checking session trusts: its own key, the keys it was given, and whether
    entries without a trusted signature may be unpickled anyway."""

    keys: tuple[SigningKey | TrustedPublicKey | PrivateSigningKey, ...] = ()
    allow_unsigned: bool = False

    @classmethod
    def from_options(
        cls,
        *,
        key_file: Path | str | None = None,
        trust_key_files: Iterable[Path | str] = (),
        allow_unsigned: bool = False,
    ) -> TrustPolicy:
        """This account's key (if any) plus every ``trust_key_files``; raises
        ``SigningKeyError`` naming the first unusable one."""
        keys: list[SigningKey | TrustedPublicKey | PrivateSigningKey]
        keys = [load_trust_key(path) for path in trust_key_files]
        mine = own_key(key_file)
        return cls(tuple(([mine] if mine else []) + keys), allow_unsigned)

    @property
    def key_ids(self) -> list[str]:
        return [key.key_id for key in self.keys]

    def check(self, directory: Path | str, entry_bytes: bytes) -> SignatureCheck:
        return check_signature(directory, entry_bytes, self.keys)

    def secret_files(self) -> list[str]:
        """The key files a loader child must not read: this account's per-user key and every
        key file this policy read."""
        files = [str(user_key_path())]
        files += [
            key.source
            for key in self.keys
            if not isinstance(key, TrustedPublicKey) and key.source != KEY_ENV
        ]
        return list(dict.fromkeys(files))


def refusal_message(entry: str, check: SignatureCheck, policy: TrustPolicy) -> str:
    """Why an entry is not unpickled, and what to do about it."""
    trusted = ", ".join(policy.key_ids) or "none"
    return (
        f"{entry}: not signed by a trusted key: {check.describe()}; refusing to unpickle it "
        f"(a pickle runs code while loading). Trusted keys here: {trusted}. If you trust "
        "whoever wrote this store, add their key with --persist-trust-key=FILE (ini "
        "persist_trust_keys), or load it anyway with --persist-trust-unsigned."
    )
