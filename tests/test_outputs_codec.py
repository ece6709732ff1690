"""Every kind of input and output survives the ``.npz`` + JSON codec, with no pickle."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pytest_persist.store import codec as outputs_codec


def roundtrip(value: Any, tmp_path, name: str = "predict") -> Any:
    npz, desc = tmp_path / "data.npz", tmp_path / "data.json"
    outputs_codec.write(npz, desc, {"outputs": {name: value}})
    json.loads(desc.read_text())  # strict JSON
    with np.load(npz, allow_pickle=False) as data:  # loads without pickle
        assert all(not data[key].dtype.hasobject for key in data.files)
    return outputs_codec.read(npz, desc)["outputs"][name]


def assert_same(want: Any, got: Any) -> None:
    assert type(got) is type(want), (type(want), type(got))
    if isinstance(want, (pd.DataFrame, pd.Series)):
        if isinstance(want, pd.DataFrame):
            pd.testing.assert_frame_equal(got, want, check_exact=True, check_column_type=True)
        else:
            pd.testing.assert_series_equal(got, want, check_exact=True, check_index_type=True)
    elif sp.issparse(want):
        assert got.format == want.format and got.shape == want.shape
        assert got.dtype == want.dtype
        assert (got != want).nnz == 0
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for w, g in zip(want, got, strict=True):
            assert_same(w, g)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(want[key], got[key])
    elif isinstance(want, float) and np.isnan(want):
        assert np.isnan(got)
    else:
        assert got == want
        if isinstance(want, np.generic):
            assert got.dtype == want.dtype


rng = np.random.default_rng(0)

ARRAYS = {
    "float64": rng.normal(size=(5, 3)),
    "float32-nan": np.array([[1.5, np.nan], [np.inf, -0.0]], dtype=np.float32),
    "float16": np.arange(4, dtype=np.float16),
    "int64": np.arange(6).reshape(2, 3),
    "int32": np.arange(3, dtype=np.int32),
    "uint8": np.arange(3, dtype=np.uint8),
    "bool": np.array([True, False, True]),
    "complex": np.array([1 + 2j, 3 - 1j]),
    "unicode": np.array(["setosa", "versicolor", "é ü 日本"]),
    "bytes": np.array([b"a", b"bc"]),
    "datetime": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
    "object-str": np.array(["yes", "no", "maybe"], dtype=object),
    "object-str-2d": np.array([["a", "b"], ["c", "dd"]], dtype=object),
    "object-int": np.array([1, 2, 3], dtype=object),
    "empty": np.empty((0, 4)),
    "empty-object": np.empty(0, dtype=object),
    "zero-d": np.array(3.5),
    "fortran": np.asfortranarray(rng.normal(size=(3, 4))),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays(name, tmp_path):
    assert_same(ARRAYS[name], roundtrip(ARRAYS[name], tmp_path))


def test_object_int_comes_back_as_python_ints(tmp_path):
    got = roundtrip(np.array([1, 2], dtype=object), tmp_path)
    assert got.dtype == object and type(got[0]) is int


@pytest.mark.skipif(
    not hasattr(np, "dtypes") or not hasattr(np.dtypes, "StringDType"), reason="numpy 2"
)
def test_numpy_string_dtype(tmp_path):
    value = np.array(["a", "long string", ""], dtype=np.dtypes.StringDType())
    got = roundtrip(value, tmp_path)
    assert got.dtype == value.dtype
    assert got.tolist() == value.tolist()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_matrix(tmp_path):
    value = np.asmatrix(np.arange(4.0).reshape(2, 2))
    got = roundtrip(value, tmp_path)
    assert isinstance(got, np.matrix)
    np.testing.assert_array_equal(got, value)


SPARSE = {
    f"{fmt}-{container}": getattr(sp, f"{fmt}_{container}")(
        sp.random(6, 5, density=0.4, random_state=1, format="csr")
    )
    for fmt in ("csr", "csc", "coo", "bsr", "lil", "dok", "dia")
    for container in ("matrix", "array")
}
SPARSE["csr-int-with-explicit-zero"] = sp.csr_matrix(
    (np.array([0, 2, 3]), np.array([0, 1, 2]), np.array([0, 2, 3])), shape=(2, 3)
)


@pytest.mark.parametrize("name", list(SPARSE))
def test_sparse(name, tmp_path):
    value = SPARSE[name]
    got = roundtrip(value, tmp_path)
    assert_same(value, got)
    assert isinstance(got, sp.spmatrix) == isinstance(value, sp.spmatrix)
    if value.format == "csr":
        assert got.nnz == value.nnz  # explicit zeros kept


def frames() -> dict[str, Any]:
    frame = pd.DataFrame(
        {
            "x0": rng.normal(size=4),
            "count": np.arange(4, dtype=np.int32),
            "flag": [True, False, True, True],
            "label": pd.Series(["a", "b", "a", "c"], dtype=object),
        }
    )
    return {
        "numeric": pd.DataFrame(rng.normal(size=(4, 2)), columns=["pca0", "pca1"]),
        "mixed-object": frame,
        "custom-index": frame.set_index(pd.Index([10, 20, 30, 40], name="row")),
        "string-index": pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index(["r1", "r2"], dtype=object)),
        "int-columns": pd.DataFrame(np.eye(2), columns=[3, 7]),
        "range-step": pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(10, 14, 2, name="i")),
        "category": pd.DataFrame(
            {"c": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True)}
        ),
        "nullable": pd.DataFrame(
            {
                "i": pd.array([1, None, 3], dtype="Int64"),
                "b": pd.array([True, None, False], dtype="boolean"),
                "s": pd.array(["x", None, "z"], dtype="string"),
                "f": pd.array([0.5, None, 1.5], dtype="Float64"),
            }
        ),
        "inferred-strings": pd.DataFrame({"s": ["u", "v"]}),
        "no-columns": pd.DataFrame(index=pd.RangeIndex(3)),
        "series": pd.Series([0.1, 0.2], name="score"),
        "series-str": pd.Series(["a", "b"], index=pd.Index([5, 6]), name=None),
    }


@pytest.mark.parametrize("name", list(frames()))
def test_pandas(name, tmp_path):
    value = frames()[name]
    assert_same(value, roundtrip(value, tmp_path))


def test_set_output_pandas_transform(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler

    X, _ = load_iris(return_X_y=True, as_frame=True)
    out = StandardScaler().set_output(transform="pandas").fit(X).transform(X)
    assert_same(out, roundtrip(out, tmp_path, "transform"))


def test_multi_output_predict_proba(tmp_path):
    value = [rng.random((4, 2)), rng.random((4, 3))]
    assert_same(value, roundtrip(value, tmp_path, "predict_proba"))
    assert_same(tuple(value), roundtrip(tuple(value), tmp_path, "predict_proba"))


@pytest.mark.parametrize(
    "value",
    [
        *(0.9733333333333334, 1, True, None, "text", float("nan"), float("-inf")),
        *(np.float64(0.5), np.float32(0.25), np.int64(7), np.bool_(True)),
    ],
    ids=repr,
)
def test_scalars(value, tmp_path):
    assert_same(value, roundtrip(value, tmp_path, "score"))


def test_documents_and_dicts_as_inputs(tmp_path):
    docs = ["the quick brown fox", "", "naïve café " * 500, "\udc80 lone surrogate"]
    rows = [{"city": "Paris", "temp": 12.5}, {"city": "London", "rainy": True, "n": 3}]
    npz, desc = tmp_path / "d.npz", tmp_path / "d.json"
    outputs_codec.write(npz, desc, {"inputs": {"X": docs, "X2": rows, "y": None}})
    got = outputs_codec.read(npz, desc)["inputs"]
    assert got["X"] == docs and got["X2"] == rows and got["y"] is None


def test_long_documents_are_not_padded(tmp_path):
    docs = ["short"] * 1000 + ["x" * 100_000]
    outputs_codec.write(tmp_path / "d.npz", tmp_path / "d.json", {"inputs": {"X": docs}})
    assert (tmp_path / "d.npz").stat().st_size < 200_000  # a padded <U100000 array is 400 MB


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (object(), "builtins.object"),
        (np.array([{"a": 1}], dtype=object), "dict"),
        ([np.zeros(2), lambda: 0], "'predict_proba'[1]"),
        ({1: "a"}, "key 1 is not a string"),
        (np.zeros(2, dtype=[("a", "f8")]), "structured"),
    ],
)
def test_unsupported_values_name_the_method_and_type(value, fragment, tmp_path):
    with pytest.raises(outputs_codec.UnsupportedValueError) as info:
        outputs_codec.encode({"outputs": {"predict_proba": value}})
    message = str(info.value)
    assert "output of method 'predict_proba'" in message
    assert fragment in message


def test_unsupported_input_names_the_input(tmp_path):
    with pytest.raises(outputs_codec.UnsupportedValueError, match="input 'X'"):
        outputs_codec.encode({"inputs": {"X": {1, 2}}})


def test_pandas_not_imported_for_plain_data(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from pytest_persist.store import codec as outputs_codec\n"
        f"outputs_codec.write(r'{tmp_path / 'a.npz'}', r'{tmp_path / 'a.json'}',"
        " {'outputs': {'predict': np.arange(3)}})\n"
        f"outputs_codec.read(r'{tmp_path / 'a.npz'}', r'{tmp_path / 'a.json'}')\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_newer_description_version_is_refused():
    arrays, description = outputs_codec.encode({"outputs": {"predict": np.arange(2)}})
    description["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        outputs_codec.decode(arrays, description)
