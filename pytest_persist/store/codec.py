"""Inputs and method outputs as an ``.npz`` file plus a JSON description, never a pickle.

Supported values: numpy arrays (numeric, bool, complex, datetime, fixed-width strings, and
object arrays holding only ``str`` or only numbers), ``np.matrix``, scipy sparse matrices and
arrays, pandas ``DataFrame``/``Series`` (columns, index and dtypes kept, categorical and
nullable extension dtypes included), lists/tuples of those (multi-output ``predict_proba``),
lists of documents (text vectorizers), dicts with string keys (``DictVectorizer`` rows),
Python and numpy scalars and None.

The ``.npz`` loads with ``allow_pickle=False``; the description says how to rebuild each value.
pandas is imported only to decode data that holds a frame.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CODEC_FORMAT",
    "CODEC_VERSION",
    "UnsupportedValueError",
    "decode",
    "encode",
    "read",
    "write",
]

CODEC_FORMAT = "pytest-persist-data"
CODEC_VERSION = 1

#: How errors name a value of each group ("the output of method 'predict'").
_GROUP_NOUNS = {"outputs": "output of method", "inputs": "input"}
_SPARSE_NATIVE = ("csr", "csc", "bsr")


class UnsupportedValueError(TypeError):
    """A value the codec cannot store without pickle; the message names where it came from."""


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, array: np.ndarray) -> str:
        key = f"a{len(self.arrays)}"
        self.arrays[key] = array
        return key

    def fail(self, where: str, value: Any, why: str = "") -> UnsupportedValueError:
        kind = type(value).__module__ + "." + type(value).__qualname__
        if isinstance(value, np.ndarray):
            kind += f" of dtype {value.dtype}"
        detail = f" ({why})" if why else ""
        return UnsupportedValueError(
            f"cannot store the {where}: {kind} is not supported{detail}; supported are numpy "
            "arrays, scipy sparse, pandas DataFrame/Series, lists/tuples of those, strings, "
            "dicts with string keys and scalars"
        )

    def value(self, value: Any, where: str) -> dict[str, Any]:
        if isinstance(value, np.generic):  # before float: np.float64 is a float
            return self.scalar(value, where)
        if value is None or isinstance(value, (bool, int, str)):
            return {"kind": "py", "value": value}
        if isinstance(value, float):
            if math.isfinite(value):
                return {"kind": "py", "value": value}
            return {"kind": "py", "float": repr(value)}
        if isinstance(value, np.ndarray):
            node = self.ndarray(np.asarray(value), where)
            if isinstance(value, np.matrix):
                node["matrix"] = True
            return node
        if _is_sparse(value):
            return self.sparse(value, where)
        module = type(value).__module__
        if module == "pandas" or module.startswith("pandas."):
            return self.pandas(value, where)
        if isinstance(value, (list, tuple)):
            if value and isinstance(value, list) and all(isinstance(v, str) for v in value):
                return {"kind": "str_list", **self.strings(np.array(value, dtype=object))}
            return {
                "kind": type(value).__name__,
                "items": [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)],
            }
        if isinstance(value, dict):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise self.fail(where, value, f"key {bad[0]!r} is not a string")
            return {
                "kind": "dict",
                "keys": list(value),
                "values": [self.value(v, f"{where}[{k!r}]") for k, v in value.items()],
            }
        raise self.fail(where, value)

    def scalar(self, value: np.generic, where: str) -> dict[str, Any]:
        array = np.asarray(value)
        if array.dtype.hasobject or array.dtype.kind == "V":
            raise self.fail(where, value)
        return {"kind": "npscalar", "key": self.add(array)}

    def ndarray(self, array: np.ndarray, where: str) -> dict[str, Any]:
        dtype = array.dtype
        if dtype.kind == "O":
            return self.object_array(array, where)
        if dtype.kind == "T":  # numpy >= 2 StringDType: not storable without pickle as is
            node = self.object_array(array.astype(object), where)
            return {**node, "string_dtype": True}
        if dtype.kind == "V" or dtype.hasobject:
            raise self.fail(where, array, "structured dtypes are not stored")
        return {"kind": "ndarray", "key": self.add(array)}

    def object_array(self, array: np.ndarray, where: str) -> dict[str, Any]:
        flat = array.ravel().tolist()
        if all(isinstance(v, str) for v in flat):
            return {"kind": "object_str", "shape": list(array.shape), **self.strings(array)}
        if all(isinstance(v, (bool, int, float, np.number, np.bool_)) for v in flat):
            numeric = np.array(flat).reshape(array.shape)
            if numeric.dtype.kind in "biufc":
                return {"kind": "object_num", "key": self.add(numeric)}
        types = sorted({type(v).__name__ for v in flat})
        raise self.fail(where, array, f"it holds {', '.join(types[:5])}")

    def strings(self, array: np.ndarray) -> dict[str, Any]:
        """Any number of strings of any length as UTF-8 bytes plus offsets (no padding)."""
        encoded = [s.encode("utf-8", "surrogatepass") for s in array.ravel().tolist()]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return {"bytes": self.add(data), "offsets": self.add(offsets)}

    def sparse(self, value: Any, where: str) -> dict[str, Any]:
        import scipy.sparse as sp

        node: dict[str, Any] = {
            "kind": "sparse",
            "format": value.format,
            "container": "matrix" if isinstance(value, sp.spmatrix) else "array",
            "shape": [int(n) for n in value.shape],
        }
        if value.dtype.hasobject:
            raise self.fail(where, value, "object dtype")
        if value.format in _SPARSE_NATIVE:
            node["data"] = self.add(np.asarray(value.data))
            node["indices"] = self.add(np.asarray(value.indices))
            node["indptr"] = self.add(np.asarray(value.indptr))
        else:  # coo keeps duplicates and order; lil, dok and dia go through coo and back
            coo = value.tocoo()
            node["data"] = self.add(np.asarray(coo.data))
            node["row"] = self.add(np.asarray(coo.row))
            node["col"] = self.add(np.asarray(coo.col))
        return node

    def pandas(self, value: Any, where: str) -> dict[str, Any]:
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            if value.columns.has_duplicates:
                raise self.fail(where, value, "duplicate column names")
            return {
                "kind": "dataframe",
                "columns": self.index(value.columns, f"{where}.columns"),
                "index": self.index(value.index, f"{where}.index"),
                "data": [
                    self.column(value.iloc[:, i], f"{where}[{c!r}]")
                    for i, c in enumerate(value.columns)
                ],
            }
        if isinstance(value, pd.Series):
            return {
                "kind": "series",
                "name": self.value(value.name, f"{where}.name"),
                "index": self.index(value.index, f"{where}.index"),
                "data": self.column(value, where),
            }
        raise self.fail(where, value)

    def index(self, index: Any, where: str) -> dict[str, Any]:
        import pandas as pd

        name = self.value(index.name, f"{where}.name")
        if isinstance(index, pd.RangeIndex):
            return {
                "kind": "range",
                "start": int(index.start),
                "stop": int(index.stop),
                "step": int(index.step),
                "name": name,
            }
        if isinstance(index, pd.MultiIndex):
            raise self.fail(where, index)
        return {"kind": "index", "name": name, "data": self.column(index, where)}

    def column(self, column: Any, where: str) -> dict[str, Any]:
        """One Series or Index: its values and the dtype to rebuild it with."""
        import pandas as pd

        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            return {
                "kind": "categorical",
                "ordered": bool(dtype.ordered),
                "categories": self.column(pd.Index(dtype.categories), f"{where}.categories"),
                "codes": self.add(np.asarray(pd.Categorical(column).codes)),
            }
        if isinstance(dtype, np.dtype):
            return {"kind": "numpy", "values": self.ndarray(column.to_numpy(), where)}
        # An extension dtype (Int64, boolean, string, str, Float64...): values plus NA mask.
        mask = np.asarray(column.isna(), dtype=bool)
        values = column.to_numpy(dtype=object, na_value=None)
        present = [v for v in values.tolist() if v is not None]
        filler = present[0] if present else 0
        values = np.array(
            [filler if m else v for v, m in zip(values.tolist(), mask, strict=True)], dtype=object
        )
        return {
            "kind": "extension",
            "dtype": str(dtype),
            "mask": self.add(mask),
            "values": self.object_array(values, where) if len(values) else {"kind": "empty"},
        }


def encode(groups: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays for an ``.npz`` and a JSON-able description of ``{group: {name: value}}``.

    Errors name the group and the name: "the output of method 'predict_proba'[1]".
    """
    encoder = _Encoder()
    description: dict[str, Any] = {"format": CODEC_FORMAT, "version": CODEC_VERSION, "groups": {}}
    for group, values in groups.items():
        noun = _GROUP_NOUNS.get(group, group)
        description["groups"][group] = {
            str(name): encoder.value(value, f"{noun} {name!r}") for name, value in values.items()
        }
    return encoder.arrays, description


class _Decoder:
    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = arrays

    def value(self, node: dict[str, Any]) -> Any:
        kind = node["kind"]
        if kind == "py":
            return float(node["float"]) if "float" in node else node["value"]
        if kind == "npscalar":
            return self.arrays[node["key"]][()]
        if kind == "ndarray":
            array = self.arrays[node["key"]]
            if not node.get("matrix"):
                return array
            with warnings.catch_warnings():  # rebuilding what the estimator returned
                warnings.simplefilter("ignore", PendingDeprecationWarning)
                return np.asmatrix(array)
        if kind == "object_str":
            strings = self.strings(node).reshape(node["shape"])
            string_dtype = (
                getattr(np.dtypes, "StringDType", None) if node.get("string_dtype") else None
            )
            return strings.astype(string_dtype()) if string_dtype is not None else strings
        if kind == "object_num":
            array = self.arrays[node["key"]]
            out = np.empty(array.shape, dtype=object)
            out[...] = array.tolist() if array.ndim else array[()].item()
            return out
        if kind == "str_list":
            return self.strings(node).tolist()
        if kind in ("list", "tuple"):
            items = [self.value(item) for item in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            return {k: self.value(v) for k, v in zip(node["keys"], node["values"], strict=True)}
        if kind == "sparse":
            return self.sparse(node)
        if kind in ("dataframe", "series"):
            return self.pandas(node)
        raise ValueError(f"unknown value kind {kind!r} in the data description")

    def strings(self, node: dict[str, Any]) -> np.ndarray:
        data = self.arrays[node["bytes"]].tobytes()
        offsets = self.arrays[node["offsets"]].tolist()
        out = np.empty(len(offsets) - 1, dtype=object)
        out[:] = [
            data[offsets[i] : offsets[i + 1]].decode("utf-8", "surrogatepass")
            for i in range(len(offsets) - 1)
        ]
        return out

    def sparse(self, node: dict[str, Any]) -> Any:
        import scipy.sparse as sp

        fmt, shape = node["format"], tuple(node["shape"])
        matrix = node["container"] == "matrix"
        data = self.arrays[node["data"]]
        if fmt in _SPARSE_NATIVE:
            parts = (data, self.arrays[node["indices"]], self.arrays[node["indptr"]])
            cls = getattr(sp, f"{fmt}_matrix" if matrix else f"{fmt}_array")
            return cls(parts, shape=shape)
        coo_cls = sp.coo_matrix if matrix else sp.coo_array
        coo = coo_cls((data, (self.arrays[node["row"]], self.arrays[node["col"]])), shape=shape)
        return coo if fmt == "coo" else coo.asformat(fmt)

    def pandas(self, node: dict[str, Any]) -> Any:
        import pandas as pd

        index = self.index(node["index"])
        if node["kind"] == "series":
            values = self.column(node["data"])
            return pd.Series(values, index=index, name=self.value(node["name"]), dtype=values.dtype)
        # Each column as a Series with its own dtype: pandas >= 3 would otherwise turn object
        # columns of strings into its ``str`` dtype.
        series = [
            pd.Series(values, dtype=values.dtype) for values in map(self.column, node["data"])
        ]
        frame = pd.DataFrame(dict(enumerate(series)), index=pd.RangeIndex(len(index)))
        frame.index = index
        frame.columns = self.index(node["columns"])
        return frame

    def index(self, node: dict[str, Any]) -> Any:
        import pandas as pd

        name = self.value(node["name"])
        if node["kind"] == "range":
            return pd.RangeIndex(node["start"], node["stop"], node["step"], name=name)
        values = self.column(node["data"])
        return pd.Index(values, name=name, dtype=values.dtype)

    def column(self, node: dict[str, Any]) -> Any:
        import pandas as pd

        kind = node["kind"]
        if kind == "numpy":
            return self.value(node["values"])
        if kind == "categorical":
            categories = self.column(node["categories"])
            categories = pd.Index(categories, dtype=categories.dtype)
            codes = self.arrays[node["codes"]]
            return pd.Categorical.from_codes(codes, categories, ordered=node["ordered"])
        if kind == "extension":
            mask = self.arrays[node["mask"]]
            if node["values"]["kind"] == "empty":
                values = np.empty(0, dtype=object)
            else:
                values = self.value(node["values"]).astype(object)
            values[mask] = None
            dtype = pd.api.types.pandas_dtype(node["dtype"])
            if isinstance(dtype, np.dtype) and dtype.kind == "U":  # "str" before pandas 3
                dtype = pd.StringDtype()
            return pd.array(values, dtype=dtype)
        raise ValueError(f"unknown column kind {kind!r} in the data description")


def decode(arrays: Mapping[str, np.ndarray], description: dict[str, Any]) -> dict[str, dict]:
    """Rebuild ``{group: {name: value}}`` from what ``encode`` returned."""
    if description.get("format") != CODEC_FORMAT:
        raise ValueError(f"not a {CODEC_FORMAT} description")
    if description.get("version") != CODEC_VERSION:
        raise ValueError(
            f"data description version {description.get('version')!r} is not supported "
            f"(this pytest-persist reads version {CODEC_VERSION})"
        )
    decoder = _Decoder(arrays)
    return {
        group: {name: decoder.value(node) for name, node in values.items()}
        for group, values in description["groups"].items()
    }


def write(npz_path: Path | str, json_path: Path | str, groups: Mapping[str, Mapping[str, Any]]):
    """Encode ``groups`` into ``npz_path`` and ``json_path`` (plain writes: callers that need
    atomicity write into a temporary directory first)."""
    arrays, description = encode(groups)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # no object arrays: the encoder refuses them
    _write_bytes(Path(npz_path), buffer.getvalue())
    _write_bytes(Path(json_path), json.dumps(description, allow_nan=False).encode())
    return description


def read(npz_path: Path | str, json_path: Path | str) -> dict[str, dict]:
    """Decode what ``write`` wrote; the ``.npz`` is opened with ``allow_pickle=False``.

    ``write`` stores arrays uncompressed, so an archive whose members expand far beyond its
    own size (a "zip bomb" planted in a store) is refused before anything is decompressed, as
    is a description nested too deeply to read: both raise ``ValueError``.
    """
    try:
        description = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"{json_path}: nested too deeply to read") from None
    _refuse_expansion(Path(npz_path))
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return decode(arrays, description)


#: How much larger than the archive its members may be once expanded (``write`` stores them
#: uncompressed: 1x plus headers), and the slack a small archive gets.
_MAX_EXPANSION, _SLACK = 4, 1 << 20


def _refuse_expansion(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not an .npz archive ({exc})") from None
    size = path.stat().st_size
    if expanded > _MAX_EXPANSION * size + _SLACK:
        raise ValueError(
            f"{path}: its arrays would expand to {expanded} bytes from a {size}-byte file; "
            "pytest-persist writes them uncompressed, so this archive was not written by it"
        )


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _is_sparse(value: Any) -> bool:
    module = type(value).__module__
    if not module.startswith("scipy.sparse"):
        return False
    import scipy.sparse as sp

    return sp.issparse(value)
