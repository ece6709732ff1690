"""The skops backend with real skops.io and scikit-learn estimators (no mocks)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree._tree import Tree

from pytest_persist.backends.base import BackendCall
from pytest_persist.backends.skops_io import SkopsBackend, UntrustedTypesError

TREE_TYPE = "sklearn.tree._tree.Tree"


@pytest.fixture(scope="module")
def forest() -> tuple[RandomForestClassifier, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), X


def test_backend_attributes() -> None:
    backend = SkopsBackend()
    assert backend.name == "skops"
    assert backend.modules == ("skops",)
    assert "pip install skops" in backend.install_hint
    assert backend.preserves_objects is True
    assert backend.is_available()


def test_forest_round_trip_reports_untrusted_types(forest, tmp_path) -> None:
    clf, X = forest
    backend = SkopsBackend()
    path = tmp_path / f"forest{backend.suffix}"
    backend.dump(clf, path, BackendCall(X=X))
    call = BackendCall(X=X)
    loaded = backend.load(path, call)
    assert call.details["untrusted_types"] == [TREE_TYPE]
    assert "untrusted_not_allowed" not in call.details
    assert type(loaded) is RandomForestClassifier
    assert_array_equal(loaded.predict(X.copy()), clf.predict(X))
    assert_allclose(loaded.predict_proba(X.copy()), clf.predict_proba(X), rtol=1e-7, atol=1e-9)


def test_allowlist_violation_raises_before_loading(forest, tmp_path) -> None:
    clf, _ = forest
    backend = SkopsBackend()
    path = tmp_path / "forest.skops"
    backend.dump(clf, path, BackendCall())
    call = BackendCall(options={"trusted": ["numpy.random._generator.Generator"]})
    with pytest.raises(UntrustedTypesError, match=r"sklearn\.tree\._tree\.Tree") as caught:
        backend.load(path, call)
    assert caught.value.missing == [TREE_TYPE]
    assert "trusted=" in str(caught.value)  # says how to allow it
    assert call.details["untrusted_types"] == [TREE_TYPE]
    assert call.details["untrusted_not_allowed"] == [TREE_TYPE]


@pytest.mark.parametrize("granted", [[TREE_TYPE], [Tree]], ids=["by-name", "by-type"])
def test_allowlist_granting_the_type_loads(granted, forest, tmp_path) -> None:
    clf, X = forest
    backend = SkopsBackend()
    path = tmp_path / "forest.skops"
    backend.dump(clf, path, BackendCall())
    call = BackendCall(options={"trusted": granted})
    loaded = backend.load(path, call)
    assert call.details["untrusted_not_allowed"] == []
    assert_array_equal(loaded.predict(X.copy()), clf.predict(X))


def test_empty_allowlist_is_enough_for_a_plain_linear_model(tmp_path) -> None:
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    backend = SkopsBackend()
    path = tmp_path / "lr.skops"
    backend.dump(clf, path, BackendCall())
    call = BackendCall(options={"trusted": []})
    loaded = backend.load(path, call)
    assert call.details["untrusted_types"] == []
    assert call.details["untrusted_not_allowed"] == []
    assert_allclose(loaded.predict_proba(X.copy()), clf.predict_proba(X), rtol=1e-7, atol=1e-9)


def test_skops_errors_pass_through(tmp_path) -> None:
    """Persisting something skops refuses raises skops' own error (the caller's dump_error)."""
    backend = SkopsBackend()
    path = tmp_path / "broken.skops"
    path.write_bytes(b"not a zip file")
    with pytest.raises(Exception) as caught:
        backend.load(path, BackendCall())
    assert not isinstance(caught.value, UntrustedTypesError)
