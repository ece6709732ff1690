"""A stored artifact is judged elsewhere by the rule its saving test applied."""

from __future__ import annotations

import json

SUITE = """
import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin


class Drifts(RegressorMixin, BaseEstimator):
    \"\"\"Predicts 1e-5 relative off after every load: within rtol=1e-4, beyond the default.\"\"\"

    def fit(self, X, y):
        self.coef_ = np.linalg.lstsq(X, y, rcond=None)[0]
        return self

    def predict(self, X):
        return X @ self.coef_

    def __setstate__(self, state):
        state = dict(state)
        state["coef_"] = state["coef_"] * (1 + 1e-5)
        super().__setstate__(state)


@pytest.mark.persist_roundtrip(backends=["pickle"], rtol={"pickle": 1e-4}, state="ignore")
def test_drift_allowed(persist_roundtrip):
    X = np.arange(40.0).reshape(20, 2) + 1
    persist_roundtrip(Drifts().fit(X, X.sum(axis=1)), X)
"""


def test_saved_tolerances_travel_with_the_artifact(run_suite, pytester):
    store = pytester.path / "store"
    saved = run_suite(SUITE, f"--persist-save={store}")
    assert saved.status("test_drift_allowed[pickle]") == "PASSED"
    [entry] = [json.loads(p.read_text()) for p in store.glob("*/entry.json")]
    assert entry["comparison"]["rtol"] == 1e-4

    pytester.mkdir("elsewhere")  # nothing to collect there: only the stored entries run
    report = pytester.path / "report.json"
    checked = pytester.runpytest_subprocess(
        "-v",
        "-p",
        "no:cacheprovider",
        "elsewhere",
        f"--persist-load={store}",
        f"--persist-report={report}",
    )
    checked.stdout.fnmatch_lines(["*test_drift_allowed*pickle* PASSED*"])
    [record] = json.loads(report.read_text())["records"]
    assert record["kind"] == "passed"
    assert record["comparison"]["rtol"] == 1e-4
