"""A versioned on-disk store of artifacts, saved in one environment and checked in another.

One entry per (test id, backend), laid out as ``layout`` describes. An entry is written in a
temporary directory inside the store and renamed into place, so a reader sees either no
entry or a complete one, never a mix of two saves. Temporary directories are ignored by
readers and removed once their writer is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .attestation import statement
from .layout import (
    ATTESTATION_FILE,
    DATA_DESCRIPTION_FILE,
    DATA_FILE,
    ENTRY_FILE,
    MODEL_SIGNATURE_FILE,
    OLD_PREFIX,
    SIGNATURE_FILE,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    TEMP_PREFIX,
)

if TYPE_CHECKING:
    from .public_key import PrivateSigningKey
    from .signing import SigningKey

__all__ = [
    "DATA_DESCRIPTION_FILE",
    "DATA_FILE",
    "ENTRY_FILE",
    "STORE_FORMAT",
    "STORE_FORMAT_VERSION",
    "Snapshot",
    "StoreError",
    "StoredData",
    "StoredEntry",
    "TamperedArtifactError",
    "clean_temporary",
    "entry_dirs",
    "entry_name",
    "iter_entries",
    "parse_manifest",
    "read_entry",
    "save_entry",
    "sha256_file",
    "snapshot_entry",
]

_STALE_SECONDS = 24 * 3600  # a temporary directory this old is removed whoever wrote it
_SLUG_LENGTH = 80
#: What ``entry_name`` makes: ``<slug>--<backend>-<16 hex digits>``.
_ENTRY_NAME = re.compile(r"^[A-Za-z0-9._-]+--[A-Za-z0-9._-]+-[0-9a-f]{16}$")
_PARAM_REPR_LENGTH = 2000


class StoreError(Exception):
    """A store directory or entry that cannot be used; the message names the file."""


class TamperedArtifactError(StoreError):
    """A stored file whose sha256 differs from the one in its entry.json: never loaded."""


# ----------------------------------------------------------------------------------------------
# names


def entry_name(test_id: str, backend: str) -> str:
    """A filesystem-safe directory name for (test id, backend), unique through a hash suffix."""
    digest = hashlib.sha256(f"{test_id}\0{backend}".encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", test_id.replace("::", "--")).strip("._-")
    backend_slug = re.sub(r"[^A-Za-z0-9._-]+", "_", backend)[:30]
    return f"{slug[-_SLUG_LENGTH:].lstrip('._-') or 'entry'}--{backend_slug}-{digest}"


# ----------------------------------------------------------------------------------------------
# writing


def save_entry(
    root: Path | str,
    *,
    test_id: str,
    backend_name: str,
    estimator: Any,
    artifact_path: Path | str,
    X: Any,
    y: Any,
    expected_outputs: dict[str, Any],
    not_compared: dict[str, str],
    environment: dict[str, str],
    test_source: str | None = None,
    extra: Any = None,
    backend_options: dict[str, Any] | None = None,
    comparison: dict[str, Any] | None = None,
    untrusted_types: list[str] | None = None,
    installed: dict[str, Any] | None = None,
    outcome: dict[str, Any] | None = None,
    estimator_description: dict[str, Any] | None = None,
    sign: bool = True,
    key: SigningKey | PrivateSigningKey | None = None,
) -> Path:
    """Store one artifact with everything needed to check it elsewhere; return its directory.

    ``artifact_path`` is the file (or directory) the backend wrote; it is copied. X, y and
    ``expected_outputs`` (method -> output) go into ``data.npz`` + ``data.json`` (see
    ``codec``); ``extra`` is any user data (a score...), stored JSON-safe.
    ``backend_options`` are handed back to the backend when the artifact is loaded;
    ``comparison`` (rtol, atol, exact, max_label_flips) is what the saving test allowed, so a
    check elsewhere judges by the same rule; ``untrusted_types`` are the types skops needed
    to trust when saving (trusted again only when the entry's signature is). ``installed`` is
    the complete installed set (``environments.installed.installed_set()``, this
    interpreter's by default): what ``pytest-persist bisect`` rebuilds. ``outcome`` (``kind``,
    ``compared_methods``) is what the saving round trip found, attested in
    ``attestation.json`` (default: passed, every method of ``expected_outputs``).
    ``estimator_description`` (``class``, ``name``, ``params``, ``modules``) replaces what is
    read from ``estimator``, for a model known only from its file (``pytest-persist adopt``).
    The entry
    is signed with ``key`` (an HMAC key, or an elliptic-curve private key: ``model.sig``), by
    default this account's key (``signing.own_key``, created on first use), unless ``sign``
    is False. Saving the same (test id, backend) again replaces
    the entry as a whole and leaves every other entry alone.
    """
    from . import codec

    root = Path(root)
    artifact_path = Path(artifact_path)
    if not artifact_path.exists():
        raise StoreError(f"{artifact_path}: the artifact to store does not exist")
    if sign and key is None:
        from .signing import SigningKeyError, own_key

        try:
            key = own_key(create=True)
        except SigningKeyError as exc:
            raise StoreError(f"cannot sign the entry: {exc}") from None
    root.mkdir(parents=True, exist_ok=True)
    name = entry_name(test_id, backend_name)
    temp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), suffix=f"-{name[-16:]}", dir=root))
    try:
        artifact_name = "artifact" + _suffix(artifact_path)
        if artifact_path.is_dir():
            shutil.copytree(artifact_path, temp / artifact_name, symlinks=False)
        else:
            shutil.copyfile(artifact_path, temp / artifact_name)
        codec.write(
            temp / DATA_FILE,
            temp / DATA_DESCRIPTION_FILE,
            {"inputs": {"X": X, "y": y}, "outputs": dict(expected_outputs)},
        )
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        described = estimator_description or _describe_estimator(estimator)
        found = outcome or {}
        _write_json(
            temp / ATTESTATION_FILE,
            statement(
                {name: info["sha256"] for name, info in _checksums(temp).items()},
                test_id=test_id,
                backend=backend_name,
                estimator_class=described["class"],
                environment={str(k): str(v) for k, v in environment.items()},
                compared_methods=[str(m) for m in found.get("compared_methods", expected_outputs)],
                outcome=str(found.get("kind", "passed")),
                created=created,
            ),
        )
        manifest = {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "test_id": test_id,
            "backend": backend_name,
            "estimator": described,
            "backend_options": _jsonable(backend_options or {}),
            "comparison": _jsonable(comparison or {}),
            "environment": {str(k): str(v) for k, v in environment.items()},
            "methods": [str(m) for m in expected_outputs],
            "not_compared": {str(k): str(v) for k, v in not_compared.items()},
            "has_y": y is not None,
            "artifact": artifact_name,
            "data": DATA_FILE,
            "data_description": DATA_DESCRIPTION_FILE,
            "files": _checksums(temp),
            "created": created,
            "test_source": test_source,
            "extra": _jsonable(extra),
        }
        if untrusted_types is not None:
            manifest["untrusted_types"] = sorted(str(t) for t in untrusted_types)
        if installed is None:
            from ..environments.installed import installed_set

            installed = installed_set()
        manifest["installed"] = _jsonable(installed)
        _write_json(temp / ENTRY_FILE, manifest)
        if sign and key is not None:
            from .signing import sign_entry

            sign_entry(temp, key)
        final = root / name
        _publish(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return final


def _publish(temp: Path, final: Path) -> None:
    """Put ``temp`` in place of ``final`` so that at every instant ``final`` is one whole save,
    the old one or the new one, even if this process is killed halfway.

    On Linux the two folders are swapped in one step (``renameat2(RENAME_EXCHANGE)``) and the
    old version, now under the temporary name, is removed; a kill before that leaves a
    temporary folder of a dead writer, which ``clean_temporary`` removes. Elsewhere the old
    entry is renamed aside (``.old-<id>-<name>``) and the new one renamed in; a kill between
    the two leaves the old entry aside, which ``clean_temporary`` puts back. A concurrent save
    of the same entry is retried: the last one to publish wins.
    """
    for _ in range(100):
        try:
            os.rename(temp, final)
            return
        except OSError:
            if not final.exists():
                continue  # moved away by a concurrent save in between: try again
        if _exchange(temp, final):
            shutil.rmtree(temp, ignore_errors=True)  # the previous version
            return
        old = final.parent / f"{OLD_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}"
        try:
            os.rename(final, old)
        except FileNotFoundError:
            continue
        except OSError as exc:  # pragma: no cover - e.g. a file held open on Windows
            raise StoreError(f"{final}: cannot replace the existing entry ({exc})") from exc
        try:
            os.rename(temp, final)
        except OSError:  # a concurrent save was published in between: it wins
            shutil.rmtree(old, ignore_errors=True)
            continue
        shutil.rmtree(old, ignore_errors=True)
        return
    raise StoreError(f"{final}: could not publish the entry (too many concurrent saves)")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    return done == 0


def _temp_prefix() -> str:
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    return f"{TEMP_PREFIX}{host}-{os.getpid()}-"


def _suffix(path: Path) -> str:
    suffixes = "".join(path.suffixes[-2:]) if path.is_file() else ""
    return suffixes if re.fullmatch(r"(\.[A-Za-z0-9_-]{1,12}){0,2}", suffixes) else ""


def _describe_estimator(estimator: Any) -> dict[str, Any]:
    cls = type(estimator)
    description: dict[str, Any] = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "name": cls.__name__,
        "params": {},
    }
    get_params = getattr(estimator, "get_params", None)
    if callable(get_params):
        try:
            params = get_params(deep=False)
        except Exception as exc:
            description["params_error"] = f"{type(exc).__name__}: {exc}"
        else:
            description["params"] = {str(k): _short_repr(v) for k, v in params.items()}
    description["modules"] = _estimator_modules(estimator)
    return description


def _estimator_modules(estimator: Any) -> list[str]:
    """The modules of the estimator's class and of every estimator among its parameters
    (a pipeline's steps, a meta-estimator's base): what loading it will import, which a warm
    loader can import once for the whole store."""
    from ..estimators.nested import nested_estimators

    return sorted({type(each).__module__ for each in nested_estimators(estimator)})


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<repr failed: {type(exc).__name__}>"
    if len(text) > _PARAM_REPR_LENGTH:
        text = text[: _PARAM_REPR_LENGTH - 3] + "..."
    return text


def _jsonable(value: Any) -> Any:
    """``value`` as strict JSON: numpy scalars and arrays become Python values, non-finite
    floats and anything else unknown become their repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(float(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist) and type(value).__module__ == "numpy":
        return _jsonable(tolist())
    return _short_repr(value)


def _checksums(directory: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        files[relative] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return files


def sha256_file(path: Path | str) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# ----------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class StoredData:
    """The inputs and expected outputs of an entry, decoded."""

    X: Any
    y: Any
    expected: dict[str, Any]


@dataclass(frozen=True)
class StoredEntry:
    """One validated entry: its directory and its manifest (``entry.json``)."""

    path: Path
    manifest: dict[str, Any]
    #: The exact bytes of entry.json that ``manifest`` was parsed from (what is signed).
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def entry_file(self) -> Path:
        return self.path / ENTRY_FILE

    @property
    def test_id(self) -> str:
        return self.manifest["test_id"]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @property
    def estimator_class(self) -> str:
        return self.manifest["estimator"]["class"]

    @property
    def estimator_name(self) -> str:
        return self.manifest["estimator"]["name"]

    @property
    def params(self) -> dict[str, str]:
        return self.manifest["estimator"]["params"]

    @property
    def estimator_modules(self) -> list[str] | None:
        """The modules of the estimator and its nested estimators (None: not recorded)."""
        return self.manifest["estimator"].get("modules")

    @property
    def environment(self) -> dict[str, str]:
        return self.manifest["environment"]

    @property
    def methods(self) -> list[str]:
        return self.manifest["methods"]

    @property
    def not_compared(self) -> dict[str, str]:
        return self.manifest["not_compared"]

    @property
    def has_y(self) -> bool:
        return self.manifest["has_y"]

    @property
    def backend_options(self) -> dict[str, Any]:
        return self.manifest["backend_options"]

    @property
    def comparison(self) -> dict[str, Any]:
        """The tolerances the saving test applied (empty for entries that recorded none)."""
        value = self.manifest.get("comparison")
        return value if isinstance(value, dict) else {}

    @property
    def test_source(self) -> str | None:
        return self.manifest.get("test_source")

    @property
    def extra(self) -> Any:
        return self.manifest.get("extra")

    @property
    def untrusted_types(self) -> list[str]:
        """The types skops needed to trust when this entry was saved (empty if none recorded)."""
        return list(self.manifest.get("untrusted_types") or [])

    @property
    def created(self) -> str:
        return self.manifest["created"]

    @property
    def artifact_path(self) -> Path:
        return self.path / self.manifest["artifact"]

    @property
    def artifact_bytes(self) -> int:
        prefix = self.manifest["artifact"]
        return sum(
            info["size"]
            for name, info in self.manifest["files"].items()
            if name == prefix or name.startswith(prefix + "/")
        )

    def verify(self) -> None:
        """Check the size and sha256 of every stored file against entry.json, and that no
        file or symlink of the entry leads outside its folder.

        Raises ``TamperedArtifactError`` naming the file and both hashes; call this before
        anything in the entry is unpickled.
        """
        self.check_paths()
        for name, info in self.manifest["files"].items():
            path = self.path / name
            if not path.is_file():
                raise TamperedArtifactError(
                    f"{path}: missing; {self.entry_file} records it with sha256 "
                    f"{info['sha256']}. Refusing to load this entry."
                )
            actual = sha256_file(path)
            if actual != info["sha256"]:
                raise TamperedArtifactError(
                    f"{path}: sha256 {actual} does not match {info['sha256']} recorded in "
                    f"{self.entry_file}; the file changed after it was saved. Refusing to load it."
                )

    def check_paths(self) -> None:
        """Refuse an entry whose folder, listed files or symlinks resolve outside its folder."""
        if self.path.is_symlink():
            raise TamperedArtifactError(
                f"{self.path}: the entry folder is a symlink (to {os.path.realpath(self.path)}); "
                "refusing to read outside the store"
            )
        folder = self.path.resolve()
        names = [*self.manifest["files"], self.manifest["artifact"], self.manifest["data"]]
        names.append(self.manifest["data_description"])
        links = [  # os.walk does not follow symlinked folders out of the entry
            Path(top, name)
            for top, dirs, files in os.walk(self.path)
            for name in [*dirs, *files]
            if os.path.islink(os.path.join(top, name))
        ]
        for path in [*(self.path / n for n in names), *links]:
            real = path.resolve()
            if real != folder and folder not in real.parents:
                raise TamperedArtifactError(
                    f"{path}: leads outside the entry {self.path} (to {real}); {self.entry_file} "
                    "was edited or a symlink planted. Refusing to load this entry."
                )

    def load_data(self) -> StoredData:
        """X, y and the expected outputs (read without pickle; call ``verify`` first)."""
        from . import codec

        try:
            groups = codec.read(
                self.path / self.manifest["data"], self.path / self.manifest["data_description"]
            )
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise StoreError(f"{self.path / self.manifest['data']}: unreadable ({exc})") from None
        inputs = groups.get("inputs", {})
        return StoredData(X=inputs.get("X"), y=inputs.get("y"), expected=groups.get("outputs", {}))

    def __str__(self) -> str:
        return f"{self.test_id} [{self.backend}]"


def read_entry(directory: Path | str) -> StoredEntry:
    """Read and validate one entry directory; a ``StoreError`` names the faulty file."""
    directory = Path(directory)
    path = directory / ENTRY_FILE
    for link in (directory, path):
        if link.is_symlink():
            raise StoreError(
                f"{link}: a symlink (to {os.path.realpath(link)}), not part of a pytest-persist "
                "store; refusing to read outside the store"
            )
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise StoreError(f"{path}: missing; {directory} is not a pytest-persist entry") from None
    except OSError as exc:
        raise StoreError(f"{path}: unreadable ({exc})") from None
    with os.fdopen(descriptor, "rb") as handle:
        raw = _read_manifest(handle, path)
    return StoredEntry(directory, parse_manifest(raw, path), raw)


#: An entry.json beyond this is no manifest (a real one holds a few kB, the installed set
#: included): refused before it is read into memory.
_MAX_MANIFEST_BYTES = 16 * 1024**2


def _read_manifest(handle: Any, path: Path) -> bytes:
    """The bytes of an opened entry.json: a regular file of sane size, or a ``StoreError``
    (a FIFO planted as entry.json would otherwise block the session)."""
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path}: not a regular file, so not a pytest-persist entry")
    if info.st_size > _MAX_MANIFEST_BYTES:
        raise StoreError(
            f"{path}: {info.st_size} bytes, too large for a pytest-persist entry's metadata "
            f"(at most {_MAX_MANIFEST_BYTES})"
        )
    try:
        return handle.read(_MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise StoreError(f"{path}: unreadable ({exc})") from None


def parse_manifest(raw: bytes, path: Path) -> dict[str, Any]:
    """The validated manifest in ``raw`` (the bytes of ``path``); any fault is a
    ``StoreError`` naming the file, never another exception (a deeply nested JSON document
    included)."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path}: unreadable ({exc})") from None
    except json.JSONDecodeError as exc:
        raise StoreError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "it was truncated or edited by hand"
        ) from None
    except RecursionError:
        raise StoreError(
            f"{path}: not a pytest-persist entry (JSON nested too deeply to read)"
        ) from None
    _validate(manifest, path)
    return manifest


@dataclass(frozen=True)
class Snapshot:
    """One complete version of an entry, copied and verified file by file: ``entry`` lives in
    the snapshot's folder; ``signature`` is the bytes of its signature file (None: unsigned)."""

    entry: StoredEntry
    signature: bytes | None
    source: Path


def snapshot_entry(directory: Path | str, destination: Path | str) -> Snapshot:
    """Copy one whole version of the entry in ``directory`` into ``destination`` (a new
    folder), checking each file's size and sha256 as it is copied.

    The entry's folder is opened once and every file is read through that descriptor, never
    following a symlink, so a save that replaces the entry meanwhile (a new folder renamed in)
    cannot mix two versions: this copies the version that was there when the folder was
    opened, or, if that version is deleted before it is copied, starts again with the new one.
    A file whose bytes differ from the manifest is tampering (writers never change a
    published folder) and raises ``TamperedArtifactError``; an unreadable manifest raises
    ``StoreError``. Nothing is read outside the entry's folder.
    """
    directory, destination = Path(directory), Path(destination)
    for _attempt in range(_SNAPSHOT_ATTEMPTS):
        try:
            folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise StoreError(f"{directory}: the entry is gone (removed since collection)") from None
        except OSError as exc:
            if directory.is_symlink():
                raise TamperedArtifactError(
                    f"{directory}: the entry folder is a symlink (to "
                    f"{os.path.realpath(directory)}); refusing to read outside the store"
                ) from None
            raise StoreError(f"{directory}: cannot open the entry ({exc})") from None
        shutil.rmtree(destination, ignore_errors=True)
        destination.mkdir(parents=True)
        try:
            return _copy_version(folder, directory, destination)
        except _VersionGone:
            continue  # replaced and removed while being copied: copy the new one
        finally:
            os.close(folder)
    raise StoreError(
        f"{directory}: replaced {_SNAPSHOT_ATTEMPTS} times while being read; try again"
    )


_SNAPSHOT_ATTEMPTS = 20


class _VersionGone(Exception):
    """The version being copied was removed (a concurrent save replaced it)."""


def _open_beneath(folder: int, name: str, where: Path) -> int:
    """A read descriptor for ``name`` (a checked relative path) beneath the folder descriptor,
    refusing a symlink at any level."""
    parts = name.split("/")
    current = folder
    try:
        for part in parts[:-1]:
            following = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=current)
            if current != folder:
                os.close(current)
            current = following
        descriptor = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=current)
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # a FIFO or device would block
            os.close(descriptor)
            raise TamperedArtifactError(
                f"{where / name}: not a regular file (a FIFO, device or folder planted in the "
                "entry). Refusing to load this entry."
            )
        return descriptor
    except FileNotFoundError:
        raise _VersionGone from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            link = where / name
            raise TamperedArtifactError(
                f"{link}: leads outside the entry {where} (a symlink, to "
                f"{os.path.realpath(link)}); a symlink was planted in the entry. Refusing to "
                "load this entry."
            ) from None
        raise StoreError(f"{where / name}: unreadable ({exc})") from None
    finally:
        if current != folder:
            os.close(current)


def _read_all(folder: int, name: str, where: Path) -> bytes | None:
    try:
        descriptor = _open_beneath(folder, name, where)
    except _VersionGone:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        return _read_manifest(handle, where / name)


def _copy_version(folder: int, directory: Path, destination: Path) -> Snapshot:
    raw = _read_all(folder, ENTRY_FILE, directory)
    if raw is None:
        if not directory.exists():
            raise StoreError(f"{directory}: the entry is gone (removed since collection)")
        raise _VersionGone
    manifest = parse_manifest(raw, directory / ENTRY_FILE)
    signature = _read_all(folder, SIGNATURE_FILE, directory)
    bundle = _read_all(folder, MODEL_SIGNATURE_FILE, directory)
    for name, info in manifest["files"].items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with (
            os.fdopen(_open_beneath(folder, name, directory), "rb") as source,
            open(target, "wb") as copy,
        ):
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
                copy.write(chunk)
        if digest.hexdigest() != info["sha256"] or size != info["size"]:
            raise TamperedArtifactError(
                f"{directory / name}: sha256 {digest.hexdigest()} ({size} bytes) does not match "
                f"{info['sha256']} ({info['size']} bytes) recorded in {directory / ENTRY_FILE}; "
                "the file changed after it was saved. Refusing to load it."
            )
    (destination / ENTRY_FILE).write_bytes(raw)
    if signature is not None:
        (destination / SIGNATURE_FILE).write_bytes(signature)
    if bundle is not None:  # verified over exactly these files, by check_signature
        (destination / MODEL_SIGNATURE_FILE).write_bytes(bundle)
    return Snapshot(StoredEntry(destination, manifest, raw), signature, directory)


def entry_dirs(root: Path | str) -> list[Path]:
    """The visible entry directories of a store, sorted (temporary ones are left out)."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{root}: no such store directory")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def iter_entries(root: Path | str, *, clean: bool = True) -> list[StoredEntry]:
    """Every entry of a store, validated, sorted by (test id, backend).

    Raises ``StoreError`` naming the first invalid entry.json. With ``clean``, temporary
    directories left by writers that are gone are removed first.
    """
    dirs = entry_dirs(root)
    if clean:
        clean_temporary(root)
    entries = [read_entry(d) for d in dirs]
    return sorted(entries, key=lambda e: (e.test_id, e.backend))


def clean_temporary(root: Path | str, *, max_age: float = _STALE_SECONDS) -> list[Path]:
    """Tidy what interrupted writers left; return the paths removed or put back.

    A ``.tmp-`` folder belongs to a live writer while its process (on this host) runs; once
    that process is gone, or the folder is older than ``max_age`` seconds, it is removed (an
    unfinished save, or the previous version of an entry swapped out just before a kill). An
    ``.old-<id>-<name>`` folder is an entry set aside while being replaced: it is put back as
    ``<name>`` when no entry of that name exists (the writer was killed before the new one was
    renamed in), and removed otherwise. A path another process removes meanwhile is skipped.
    """
    root = Path(root)
    touched = []
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    now = time.time()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.startswith(OLD_PREFIX):
            final = root / path.name[len(OLD_PREFIX) :].partition("-")[2]
            if _ENTRY_NAME.search(final.name) and not final.exists():
                with contextlib.suppress(OSError):
                    os.rename(path, final)
                    touched.append(final)
                    continue
            stale = True
        elif path.name.startswith(TEMP_PREFIX):
            parts = path.name[len(TEMP_PREFIX) :].split("-")
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            stale = age > max_age
            if not stale and len(parts) > 2 and parts[0] == host and parts[1].isdigit():
                stale = not _process_alive(int(parts[1]))
        else:
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                touched.append(path)
    return touched


def _process_alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------
# validation

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _validate(manifest: Any, path: Path) -> None:
    def fail(why: str) -> StoreError:
        return StoreError(f"{path}: invalid pytest-persist entry: {why}")

    if not isinstance(manifest, dict):
        raise fail(f"expected a JSON object, found {type(manifest).__name__}")
    if manifest.get("format") != STORE_FORMAT:
        raise fail(f"'format' is {manifest.get('format')!r}, expected {STORE_FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail(f"'format_version' is {version!r}, expected an integer")
    if version > STORE_FORMAT_VERSION:
        raise StoreError(
            f"{path}: written by a newer pytest-persist (store format version {version}; this "
            f"one reads up to version {STORE_FORMAT_VERSION}). Upgrade pytest-persist to check it."
        )
    if version < 1:
        raise fail(f"store format version {version} is not supported")

    expected_types: dict[str, type | tuple[type, ...]] = {
        "test_id": str,
        "backend": str,
        "estimator": dict,
        "backend_options": dict,
        "environment": dict,
        "methods": list,
        "not_compared": dict,
        "has_y": bool,
        "artifact": str,
        "data": str,
        "data_description": str,
        "files": dict,
        "created": str,
        "test_source": (str, type(None)),
    }
    for key, kind in expected_types.items():
        if key not in manifest:
            raise fail(f"missing key {key!r}")
        if not isinstance(manifest[key], kind):
            raise fail(f"{key!r} has type {type(manifest[key]).__name__}")
    estimator = manifest["estimator"]
    for key in ("class", "name"):
        if not isinstance(estimator.get(key), str):
            raise fail(f"'estimator.{key}' must be a string")
    if not isinstance(estimator.get("params"), dict):
        raise fail("'estimator.params' must be an object")
    modules = estimator.get("modules", [])  # absent from entries saved before it was recorded
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise fail("'estimator.modules' must be a list of strings")
    if not all(isinstance(m, str) for m in manifest["methods"]):
        raise fail("'methods' must be a list of strings")
    if not all(isinstance(v, str) for v in manifest["environment"].values()):
        raise fail("'environment' values must be strings")
    for name, info in manifest["files"].items():
        if not _safe_relative(name):
            raise fail(f"file name {name!r} points outside the entry")
        if not isinstance(info, dict) or not _HEX64.fullmatch(str(info.get("sha256", ""))):
            raise fail(f"file {name!r} has no valid sha256")
        size = info.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise fail(f"file {name!r} has no valid size")
    for key in ("artifact", "data", "data_description"):
        name = manifest[key]
        listed = name in manifest["files"] or any(
            f.startswith(name + "/") for f in manifest["files"]
        )
        if not _safe_relative(name):
            raise fail(f"{key!r} names {name!r}, which points outside the entry")
        if not listed:
            raise fail(f"{key!r} names {name!r}, which has no checksum in 'files'")
    untrusted = manifest.get("untrusted_types")
    if untrusted is not None and not (
        isinstance(untrusted, list) and all(isinstance(t, str) for t in untrusted)
    ):
        raise fail("'untrusted_types' must be a list of type names")
    installed = manifest.get("installed")  # absent from entries saved before it was recorded
    if installed is not None:
        distributions = installed.get("distributions") if isinstance(installed, dict) else None
        if not isinstance(distributions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in distributions.items()
        ):
            raise fail("'installed.distributions' must map distribution names to versions")


def _safe_relative(name: str) -> bool:
    """A plain relative POSIX path inside the entry: no ``..``, no absolute or drive path."""
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and not any(c in name for c in ("\\", ":", "\0"))
        and ".." not in parts
        and "" not in parts
    )
