"""The realistic models of the atlas: the ones that found real breakages.

``nox -s atlas`` runs this module (with ``test_compat_estimators.py``, the whole tag-driven set)
with ``--persist-save`` in every version row, then checks the stored artifacts in the rows the
chain says (see "Across versions with nox" in the README). The data is bundled with
scikit-learn or built from a seed, so every row fits on the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

ALL_BACKENDS = pytest.mark.persist_roundtrip(backends=["joblib", "skops", "cloudpickle", "onnx"])


# liblinear fits one-vs-rest on three classes, and scikit-learn before 1.5 turned its scores
# into probabilities one-vs-rest; 1.8 refuses to fit it and computes every multiclass
# predict_proba with a softmax, so an old artifact loads and its probabilities change silently.
# Where liblinear is binary only, the same one-vs-rest model is said explicitly.
@ALL_BACKENDS
def test_logistic_regression_one_vs_rest(persist_roundtrip, iris):
    X, y = iris
    try:
        model = LogisticRegression(solver="liblinear").fit(X, y)
    except ValueError:  # scikit-learn >= 1.8: liblinear is binary only
        model = OneVsRestClassifier(LogisticRegression(solver="liblinear")).fit(X, y)
    persist_roundtrip(model, X, y)


@ALL_BACKENDS
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
