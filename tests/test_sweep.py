"""Every scikit-learn estimator that can be built with simple defaults, through every backend.

Each one must pass; the ONNX backend may also say ``unsupported`` with the converter's reason.
Anything else is a known upstream defect listed below with its symptom: the test checks the
symptom is still there, so the day it is fixed upstream this test says so.
"""

from __future__ import annotations

import warnings

import pytest
from threadpoolctl import threadpool_limits

from pytest_persist import OutcomeKind, check_persistence
from pytest_persist.estimators.fit_data import NOT_BUILT, default_instances, make_fit_data

INSTANCES = default_instances()

#: (estimator, backend) -> (outcome, a piece of the message that shows the upstream symptom)
KNOWN_FAILURES: dict[tuple[str, str], tuple[OutcomeKind, str]] = {
    # skops.io has no reducer for Birch's _CFNode tree of subclusters (skops 0.16)
    ("Birch", "skops"): (OutcomeKind.DUMP_ERROR, "Objects of type Birch are not supported"),
    # skl2onnx 1.20 writes a DictVectorizer graph onnxruntime 1.32 rejects as invalid
    ("DictVectorizer", "onnx"): (OutcomeKind.LOAD_ERROR, "INVALID_GRAPH"),
    # skl2onnx 1.20's TreeEnsemble converter passes numpy bools where onnx 1.23 / protobuf 7
    # want ints: the converter crashes, a dump_error (a converter exists, so not "unsupported")
    ("HistGradientBoostingClassifier", "onnx"): (OutcomeKind.DUMP_ERROR, "Expected an int"),
    ("HistGradientBoostingRegressor", "onnx"): (OutcomeKind.DUMP_ERROR, "Expected an int"),
    # the GP's kernel arithmetic in float32 drifts by up to 4% relative on this data
    ("GaussianProcessRegressor", "onnx"): (OutcomeKind.MISMATCH, "values differ beyond"),
    # onnxruntime's ArrayFeatureExtractor rejects the radius-neighbour graph skl2onnx builds
    ("RadiusNeighborsClassifier", "onnx"): (OutcomeKind.METHOD_ERROR, "ArrayFeatureExtractor"),
    ("RadiusNeighborsRegressor", "onnx"): (OutcomeKind.METHOD_ERROR, "ArrayFeatureExtractor"),
}


def test_every_estimator_was_built():
    assert len(INSTANCES) > 150
    assert NOT_BUILT == {}, f"estimators that could not be built: {NOT_BUILT}"


@pytest.mark.parametrize("name, estimator", INSTANCES, ids=[name for name, _ in INSTANCES])
def test_estimator_survives_every_backend(name, estimator):
    X, y = make_fit_data(estimator)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and deprecation chatter of default fits
        estimator.fit(X) if y is None else estimator.fit(X, y)
        outcomes = check_persistence(estimator, X, y)
    problems = []
    for outcome in outcomes:
        known = KNOWN_FAILURES.get((name, outcome.backend))
        if known is not None:
            kind, symptom = known
            if outcome.kind is not kind or symptom not in outcome.message():
                problems.append(
                    f"expected {kind.value} with {symptom!r} (known upstream defect), got:\n"
                    + outcome.message()
                )
        elif outcome.kind is OutcomeKind.UNSUPPORTED:
            if outcome.backend != "onnx" or "cannot" not in outcome.error:
                problems.append(outcome.message())
        elif outcome.kind is not OutcomeKind.PASSED:
            problems.append(outcome.message())
    assert not problems, "\n\n".join(problems)
