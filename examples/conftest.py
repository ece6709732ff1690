"""Data for the example suite: small, real, bundled with scikit-learn (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris


@pytest.fixture(scope="session")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="session")
def diabetes():
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="session")
def customers():
    """A mixed-type frame, as a real tabular model sees it."""
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, 200).round(),
            "income": rng.lognormal(10, 0.5, 200),
            "plan": rng.choice(["basic", "plus", "pro"], 200),
        }
    )
    churned = ((frame["age"] < 30) ^ (frame["plan"] == "pro")).astype(int).to_numpy()
    return frame, churned
