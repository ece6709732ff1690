"""What a model file is, from its first bytes, and its payload, decompressed and capped.

Recognised: pickle streams (pickle, joblib and cloudpickle files all are one), the compressed
files joblib writes (zlib, gzip, bz2, xz, lzma, lz4: joblib's own prefixes), skops files (a
zip holding ``schema.json``) and ONNX models (a protobuf ``ModelProto``). Reading a file here
never imports or runs anything it names.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import pickletools
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FileKind",
    "NotAModelFile",
    "PayloadTooLarge",
    "detect",
    "open_payload",
]

#: Decompressed bytes read at most by default: the isolated loader's default memory limit,
#: beyond which the model would not load there anyway.
DEFAULT_MAX_BYTES = 4 * 1024**3
_CHUNK = 1 << 20

#: joblib's compressor prefixes (``joblib/compressor.py``); xz before lzma.
_COMPRESSED_PREFIXES = (
    ("zlib", b"\x78"),
    ("gzip", b"\x1f\x8b"),
    ("bz2", b"BZh"),
    ("xz", b"\xfd7zXZ\x00"),
    ("lzma", b"\x5d\x00"),
    ("lz4", b"\x04\x22\x4d\x18"),
)
#: Opcodes a protocol 0 or 1 pickle (no PROTO opcode) can start with.
_OLD_PICKLE_STARTS = frozenset(b"(c]})NIFLSVXUTJKMGi.")


class NotAModelFile(ValueError):
    """A file that is none of the recognised formats (or cannot be read as its own)."""


class PayloadTooLarge(ValueError):
    """A compressed file that decompresses to more than the cap (a decompression bomb?)."""


@dataclass(frozen=True)
class FileKind:
    """What the first bytes say. ``container`` is ``pickle``, ``skops`` or ``onnx``; which
    pickle-family backend wrote a pickle is known only once its stream is read."""

    container: str
    compression: str | None = None
    protocol: int | None = None
    #: False when a format is assumed from its first bytes alone (ONNX without ``onnx``).
    confirmed: bool = True


def detect(path: Path | str) -> FileKind:
    """The kind of file at ``path``; ``NotAModelFile`` says what it is instead."""
    path = Path(path)
    if not path.is_file():
        raise NotAModelFile(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        raise NotAModelFile(f"{path}: the file is empty")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_kind(path)
    if head[:6] == b"\x93NUMPY":
        raise NotAModelFile(f"{path}: a numpy .npy array file, not a model")
    if head[0] == 0x80 and len(head) > 1 and head[1] <= 5:
        return FileKind("pickle", protocol=head[1])
    for name, prefix in _COMPRESSED_PREFIXES:
        if head.startswith(prefix) and not (name == "zlib" and (head[0] * 256 + head[1]) % 31):
            return _compressed_kind(path, name)
    if head[:2] == b"ZF":
        raise NotAModelFile(
            f"{path}: a compressed file of joblib before 0.10 (ZF), which pytest-persist cannot "
            "read; load and save it again with a current joblib"
        )
    onnx_kind = _onnx_kind(path, head)
    if onnx_kind is not None:
        return onnx_kind
    if head[0] in _OLD_PICKLE_STARTS and _is_old_pickle(path):
        return FileKind("pickle", protocol=0)
    raise NotAModelFile(
        f"{path}: not a model file pytest-persist knows (pickle, joblib, cloudpickle, skops, "
        f"ONNX); it starts with {head[:8]!r}"
    )


def _zip_kind(path: Path) -> FileKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise NotAModelFile(f"{path}: starts like a zip archive but is not one ({exc})") from None
    if "schema.json" in names:
        return FileKind("skops")
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise NotAModelFile(
        f"{path}: a zip archive without schema.json, so not a skops file (it holds {shown})"
    )


def _compressed_kind(path: Path, compression: str) -> FileKind:
    """A compressed file joblib could have written: what it holds must be a pickle."""
    try:
        with _decompressed(path, compression) as stream:
            head = stream.read(2)
    except NotAModelFile:
        raise
    except Exception as exc:
        raise NotAModelFile(
            f"{path}: starts like {compression}-compressed data but does not decompress ({exc})"
        ) from None
    if len(head) == 2 and head[0] == 0x80 and head[1] <= 5:
        return FileKind("pickle", compression=compression, protocol=head[1])
    raise NotAModelFile(
        f"{path}: {compression}-compressed, but what it holds is not a pickle (starts {head!r})"
    )


def _onnx_kind(path: Path, head: bytes) -> FileKind | None:
    """A protobuf ModelProto starts with field 1, ``ir_version`` (tag 0x08, a small varint)."""
    if not (len(head) >= 3 and head[0] == 0x08 and 0 < head[1] < 0x80):
        return None
    try:
        import onnx
    except ImportError:
        if path.suffix.lower() == ".onnx":
            return FileKind("onnx", confirmed=False)
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None
    if model.opset_import or model.graph.node:
        return FileKind("onnx")
    return None


def _is_old_pickle(path: Path) -> bool:
    """A protocol 0 or 1 pickle: its first 1 MiB parses as opcodes up to STOP."""
    with open(path, "rb") as handle:
        data = handle.read(_CHUNK)
    try:
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name == "STOP":
                return True
    except Exception:
        return False
    return len(data) == _CHUNK  # no STOP within the first MiB, but no garbage either


@contextlib.contextmanager
def open_payload(
    path: Path | str, kind: FileKind, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[IO[bytes]]:
    """The pickle stream of a pickle-family file as a seekable binary file: the file itself,
    or what it decompresses to (spooled to a temporary file past 64 MiB, never more than
    ``max_bytes``: ``PayloadTooLarge``)."""
    if kind.compression is None:
        with open(path, "rb") as handle:
            yield handle
        return
    with (
        _decompressed(Path(path), kind.compression) as stream,
        tempfile.SpooledTemporaryFile(max_size=64 * 1024**2) as spool,
    ):
        total = 0
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge(
                    f"{path}: decompresses to more than {max_bytes / 1024**3:.3g} GiB (the cap; "
                    "a decompression bomb, or raise it with --max-bytes)"
                )
            spool.write(chunk)
        spool.seek(0)
        yield spool  # type: ignore[misc]


@contextlib.contextmanager
def _decompressed(path: Path, compression: str) -> Iterator[Any]:
    """A file object reading the decompressed stream, chunk by chunk."""
    if compression == "zlib":
        with open(path, "rb") as raw:
            yield _ZlibReader(raw)
    elif compression == "gzip":
        with gzip.open(path, "rb") as stream:
            yield stream
    elif compression == "bz2":
        with bz2.open(path, "rb") as stream:
            yield stream
    elif compression in ("xz", "lzma"):
        with lzma.open(path, "rb") as stream:  # FORMAT_AUTO reads both
            yield stream
    elif compression == "lz4":
        try:
            import lz4.frame
        except ImportError:
            raise NotAModelFile(
                f"{path}: lz4-compressed (joblib), and the lz4 package is not installed here: "
                "pip install lz4"
            ) from None
        with lz4.frame.open(path, "rb") as stream:
            yield stream
    else:  # pragma: no cover - every prefix above has a branch
        raise NotAModelFile(f"{path}: unknown compression {compression}")


class _ZlibReader:
    """``read(n)`` over a zlib stream (what joblib's ``BinaryZlibFile`` writes), in chunks."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._decompressor = zlib.decompressobj()
        self._buffer = b""

    def read(self, size: int) -> bytes:
        want = size
        while len(self._buffer) < want and not self._decompressor.eof:
            data = self._decompressor.unconsumed_tail or self._raw.read(_CHUNK)
            if not data:
                raise EOFError("the zlib stream ends before its end marker (truncated file)")
            self._buffer += self._decompressor.decompress(data, _CHUNK)
        out, self._buffer = self._buffer[:want], self._buffer[want:]
        return out
