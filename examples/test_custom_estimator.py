"""Checking your own estimator before a release, the way scikit-learn's
``parametrize_with_checks`` checks its API: every instance through every backend, with data
built from the estimator's tags and the fit done inside the check."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from pytest_persist import parametrize_with_persistence


class ShrunkenLinearRegressor(RegressorMixin, BaseEstimator):
    """Least squares with coefficients shrunk towards zero (a toy, but a real estimator)."""

    def __init__(self, shrinkage=0.5):
        self.shrinkage = shrinkage

    def fit(self, X, y):
        X, y = check_X_y(X, y, y_numeric=True)
        self.n_features_in_ = X.shape[1]
        self.x_mean_ = X.mean(axis=0)
        self.y_mean_ = float(np.mean(y))
        solution = np.linalg.lstsq(X - self.x_mean_, y - self.y_mean_, rcond=None)[0]
        self.coef_ = (1 - self.shrinkage) * solution
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = check_array(X)
        return self.y_mean_ + (X - self.x_mean_) @ self.coef_


@parametrize_with_persistence([ShrunkenLinearRegressor(), ShrunkenLinearRegressor(shrinkage=0.0)])
def test_my_estimator_persists(estimator, check):
    outcome = check(estimator)  # fails with the full story if the round trip breaks
    if outcome.backend == "skops":
        # exactly what users of skops.io will have to trust to load this model
        assert outcome.details["untrusted_types"] == [f"{__name__}.ShrunkenLinearRegressor"]
