"""Checking custom estimators before a release: ``parametrize_with_persistence``.

Shaped like scikit-learn's ``parametrize_with_checks``: the estimator author lists instances,
and every (estimator, backend) pair becomes a test whose data comes from the estimator's tags,
fitted inside the check::

    from pytest_persist import parametrize_with_persistence

    @parametrize_with_persistence([MyRegressor(), MyRegressor(alpha=2.0)])
    def test_persistence(estimator, check):
        check(estimator)
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .backends import BackendRegistry
from .outcome import Outcome, OutcomeKind
from .roundtrip import RoundtripConfig, run_roundtrip
from .settings import config_from_options

ExpectedFailed = Callable[[Any], dict[str, str]]


@dataclass(frozen=True)
class PersistenceCheck:
    """One (estimator, backend) pair; calling it fits a clone on tag-driven data and
    round-trips it, returning the Outcome."""

    backend: str
    registry: BackendRegistry
    config: RoundtripConfig

    def __call__(self, estimator: Any) -> Outcome:
        from sklearn.base import clone

        from .estimator_data import make_fit_data

        fitted = clone(estimator)
        X, y = make_fit_data(fitted)
        fitted.fit(X) if y is None else fitted.fit(X, y)
        with tempfile.TemporaryDirectory(prefix="pytest-persist-") as workdir:
            return run_roundtrip(
                fitted,
                X,
                y,
                backend=self.registry[self.backend],
                workdir=Path(workdir),
                config=self.config,
            )

    def __repr__(self) -> str:
        return f"check_persistence[{self.backend}]"


def estimator_id(estimator: Any) -> str:
    """``LogisticRegression(C=2)``: the class and the parameters that differ from defaults."""
    # no memory addresses: ids must be the same in every process (pytest-xdist workers)
    text = re.sub(r"\s+", "", re.sub(r" at 0x[0-9a-fA-F]+", "", repr(estimator)))
    return text if len(text) <= 80 else f"{type(estimator).__name__}(...)"


def persistence_checks(
    estimators: Iterable[Any],
    *,
    backends: list[str] | None = None,
    registry: BackendRegistry | None = None,
    **options: Any,
) -> Iterator[tuple[Any, PersistenceCheck]]:
    """Every (estimator, check) pair, pytest-free; ``options`` are the marker's keywords."""
    registry = registry or BackendRegistry()
    config = config_from_options(options, where="parametrize_with_persistence")
    names = registry.select(backends)
    for estimator in estimators:
        for name in names:
            yield estimator, PersistenceCheck(name, registry, config)


def parametrize_with_persistence(
    estimators: Iterable[Any],
    *,
    backends: list[str] | None = None,
    expected_failed: ExpectedFailed | None = None,
    **options: Any,
) -> Any:
    """Parametrize a test over every estimator and backend, with ids ``Estimator(params)-backend``.

    ``expected_failed(estimator) -> {backend: reason}`` marks known failures as strict xfail.
    A backend whose library is missing is skipped with its install hint; a backend that cannot
    handle the estimator at all (no ONNX converter) is skipped with the converter's message.
    """
    import pytest

    registry = BackendRegistry()
    params = []
    for estimator, check in persistence_checks(
        estimators, backends=backends, registry=registry, **options
    ):
        backend = registry[check.backend]
        marks = []
        if not backend.is_available():
            marks.append(pytest.mark.skip(reason=backend.unavailable_reason()))
        reason = (expected_failed(estimator) if expected_failed else {}).get(check.backend)
        if reason:
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        judged = partial(_judged_check, check)
        params.append(
            pytest.param(
                estimator, judged, marks=marks, id=f"{estimator_id(estimator)}-{check.backend}"
            )
        )
    return pytest.mark.parametrize("estimator, check", params)


def _judged_check(check: PersistenceCheck, estimator: Any) -> Outcome:
    """Run ``check`` and turn its outcome into a pytest result."""
    import pytest

    __tracebackhide__ = True
    outcome = check(estimator)
    if outcome.kind in (OutcomeKind.UNSUPPORTED, OutcomeKind.UNAVAILABLE):
        pytest.skip(outcome.error)
    if outcome.failed:
        pytest.fail(outcome.message(), pytrace=False)
    return outcome
