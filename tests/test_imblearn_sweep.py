"""Every imbalanced-learn estimator through ``parametrize_with_persistence`` and every backend
(slow: about 7 minutes on 2 cores with ``-n 2``). Prints the counts the README quotes."""

from __future__ import annotations

import json
from collections import Counter

import pytest

pytest.importorskip("imblearn")

SUITE = """
import warnings

from imblearn.under_sampling import RandomUnderSampler
from imblearn.utils.testing import all_estimators
from sklearn.linear_model import LogisticRegression

from pytest_persist import parametrize_with_persistence

SPECIAL = {  # the two that cannot be built without arguments
    "Pipeline": lambda: {
        "steps": [("sampler", RandomUnderSampler()), ("logistic", LogisticRegression())]
    },
    "SMOTENC": lambda: {"categorical_features": [0]},
}


def build(name, cls):
    estimator = cls(**SPECIAL.get(name, dict)())
    params = estimator.get_params()
    seeds = {k: 0 for k, v in params.items() if k.endswith("random_state") and v is None}
    return estimator.set_params(**seeds)  # seeded, as a release check would be


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ESTIMATORS = [build(name, cls) for name, cls in all_estimators()]


@parametrize_with_persistence(ESTIMATORS)
def test_imblearn(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        check(estimator)
"""


def judge_records(records: list[dict]) -> tuple[dict[str, Counter], list[str]]:
    """(counts by backend, problems): every backend but ONNX passes each estimator, comparing
    a method unless the estimator has none; ONNX passes or says it has no converter."""
    from imblearn.utils.testing import all_estimators

    from pytest_persist.roundtrip.compare import PREDICTION_METHODS

    classes = dict(all_estimators())
    counts: dict[str, Counter] = {}
    problems = []
    for record in records:
        name, backend, kind = record["estimator"], record["backend"], record["kind"]
        state_only = kind == "passed" and bool(record["details"].get("state_only"))
        label = "state only" if state_only else {"passed": "passed"}.get(kind, kind)
        counts.setdefault(backend, Counter())[label] += 1
        has_method = any(hasattr(classes[name], m) for m in PREDICTION_METHODS)
        if kind == "unsupported" and backend == "onnx":
            continue
        if kind != "passed" or state_only == has_method:
            problems.append(f"{name} via {backend}: {kind}, compared {record['compared_methods']}")
    seen = {(r["estimator"], r["backend"]) for r in records}
    backends = {backend for _, backend in seen}
    problems += [f"{n} via {b}: no record" for n in classes for b in backends if (n, b) not in seen]
    return counts, problems


@pytest.mark.slow
def test_every_imblearn_estimator_persists(pytester):
    pytester.makepyfile(test_imblearn=SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--persist-report=report.json"
    )
    records = json.loads((pytester.path / "report.json").read_text())["records"]
    counts, problems = judge_records(records)
    for backend, counted in counts.items():
        print(f"{backend}: {dict(counted)}")
    assert not problems, "\n".join(problems)
    assert result.ret == 0, result.stdout.str()
