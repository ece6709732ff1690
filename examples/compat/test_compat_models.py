"""The compatibility set: models saved in one version row and checked in the others.

``nox -s atlas`` runs this module with ``--persist-save`` in every row, then checks the stored
artifacts in the rows the chain says (see "Across versions with nox" in the README). It runs
from scikit-learn 1.0 (numpy 1.21) to the newest release (numpy 2.x); the data is bundled with
scikit-learn, so every row fits on the same numbers. Checking one stored artifact costs a fresh
subprocess that imports scikit-learn (~5 s here), so the set is lean: one or two models per
family through ``joblib`` (what scikit-learn's guide uses), three of them through ``skops`` too
(a format of its own, with its own versions), and the lambda through ``cloudpickle``.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor

compat = pytest.mark.persist_roundtrip(backends=["joblib"])
compat_skops = pytest.mark.persist_roundtrip(backends=["joblib", "skops"])


@compat
def test_logistic_regression(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(LogisticRegression(max_iter=1000).fit(X, y), X, y)


# liblinear fits one-vs-rest on three classes, and scikit-learn before 1.5 turned its scores
# into probabilities one-vs-rest; 1.8 refuses to fit it and computes every multiclass
# predict_proba with a softmax, so an old artifact loads and its probabilities change silently.
@compat
def test_logistic_regression_one_vs_rest(persist_roundtrip, iris):
    X, y = iris
    try:
        model = LogisticRegression(solver="liblinear").fit(X, y)
    except ValueError as exc:  # scikit-learn >= 1.8: liblinear is binary only
        pytest.skip(f"cannot be fitted here: {exc}")
    persist_roundtrip(model, X, y)


@compat
def test_ridge(persist_roundtrip, diabetes):
    X, y = diabetes
    persist_roundtrip(Ridge(alpha=0.5).fit(X, y), X, y)


@compat
def test_decision_tree(persist_roundtrip, diabetes):
    X, y = diabetes
    persist_roundtrip(DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, y), X, y)


@compat_skops
def test_random_forest(persist_roundtrip, iris):
    X, y = iris
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    persist_roundtrip(forest, X, y)


@compat
def test_gradient_boosting(persist_roundtrip, iris):
    X, y = iris
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
    persist_roundtrip(model, X, y)


@compat_skops
def test_hist_gradient_boosting(persist_roundtrip, iris):
    # Stable since scikit-learn 1.0: no ``sklearn.experimental`` import needed from there on.
    X, y = iris
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    persist_roundtrip(model, X, y)


@compat
@pytest.mark.filterwarnings("ignore:.*probability.*:FutureWarning")
def test_svm(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(SVC(probability=True, random_state=0).fit(X, y), X, y)


@compat
def test_nearest_neighbours(persist_roundtrip, iris):
    X, y = iris
    persist_roundtrip(KNeighborsClassifier(n_neighbors=5).fit(X, y), X, y)


@compat
def test_kmeans(persist_roundtrip, iris):
    X, _ = iris
    persist_roundtrip(KMeans(n_clusters=3, n_init=3, random_state=0).fit(X), X)


@compat_skops
def test_column_transformer_pipeline(persist_roundtrip, customers):
    frame, churned = customers
    features = ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["age", "income"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = make_pipeline(features, LogisticRegression()).fit(frame, churned)
    persist_roundtrip(model, frame, churned)


# A lambda survives only cloudpickle, which stores its code: the saved bytecode meets another
# Python in other rows.
@pytest.mark.persist_roundtrip(backends=["cloudpickle"])
def test_function_transformer(persist_roundtrip, iris):
    X, y = iris
    log_features = FunctionTransformer(lambda a: np.log1p(a), inverse_func=np.expm1)
    model = make_pipeline(log_features, LogisticRegression(max_iter=500)).fit(X, y)
    persist_roundtrip(model, X, y)
