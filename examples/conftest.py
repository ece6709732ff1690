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


def _shrunken_converter(scope, operator, container):
    """ONNX for ``test_custom_estimator.ShrunkenLinearRegressor``: y = X @ coef + intercept."""
    from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxMatMul

    model, opset = operator.raw_operator, container.target_opset
    coef = model.coef_.astype(np.float32).reshape(-1, 1)
    intercept = np.array([model.y_mean_ - model.x_mean_ @ model.coef_], dtype=np.float32)
    product = OnnxMatMul(operator.inputs[0], coef, op_version=opset)
    OnnxAdd(product, intercept, op_version=opset, output_names=operator.outputs[:1]).add_to(
        scope, container
    )


def pytest_persist_register_onnx_converters(register):
    """Teach skl2onnx the example's own estimator, so its release check covers ONNX too."""
    from skl2onnx.shape_calculators.linear_regressor import (
        calculate_linear_regressor_output_shapes,
    )
    from test_custom_estimator import ShrunkenLinearRegressor

    register(
        ShrunkenLinearRegressor,
        "ExamplesShrunkenLinearRegressor",
        calculate_linear_regressor_output_shapes,
        _shrunken_converter,
    )
