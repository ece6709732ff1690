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
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .backends import BackendRegistry
from .config import Expected, PersistUsageError, RoundtripConfig
from .outcome import Outcome, OutcomeKind
from .roundtrip import expected_outputs, run_roundtrip, validate_input
from .settings import config_from_options

ExpectedFailed = Callable[[Any], dict[str, str]]


class SharedFit:
    """One estimator's clone, fitted once on its tag-driven data, with its expected outputs:
    computed on first use by any of its backend checks and shared by all of them."""

    def __init__(self, estimator: Any, config: RoundtripConfig, uses: int) -> None:
        self.estimator = estimator
        self.config = config
        self.remaining = uses  # released after the last of its checks ran
        self._fitted: tuple[Any, Any, Any, Expected] | None = None
        self._error: PersistUsageError | None = None

    def get(self) -> tuple[Any, Any, Any, Expected]:
        """``(fitted clone, X, y, expected outputs)``; a usage error if it cannot be fitted."""
        if self._error is None and self._fitted is None:
            try:
                self._fitted = fit_on_tag_data(self.estimator, self.config)
            except PersistUsageError as exc:
                self._error = exc
        self.remaining -= 1
        fitted, error = self._fitted, self._error
        if self.remaining <= 0:
            self._fitted = None
        if error is not None:
            raise PersistUsageError(str(error)) from error.__cause__
        assert fitted is not None
        return fitted


def fit_on_tag_data(estimator: Any, config: RoundtripConfig) -> tuple[Any, Any, Any, Expected]:
    """Clone ``estimator``, fit it on data made from its tags, compute its expected outputs."""
    from sklearn.base import clone

    from .estimator_data import make_fit_data

    fitted = clone(estimator)
    try:
        X, y = make_fit_data(fitted)
        fitted.fit(X) if y is None else fitted.fit(X, y)
    except Exception as exc:
        raise PersistUsageError(
            f"{estimator_id(estimator)} cannot be fitted on the data pytest-persist makes from "
            f"its tags ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}); give "
            "data yourself: fit it and pass your X to the persist_roundtrip fixture (with or "
            "without the marker) or to check_persistence(estimator, X, y), which take any X"
        ) from exc
    validate_input(fitted, X)
    return fitted, X, y, expected_outputs(fitted, X, y, config)


@dataclass(frozen=True)
class PersistenceCheck:
    """One (estimator, backend) pair; calling it round-trips a fitted clone of the estimator
    (fitted on tag-driven data, once per estimator for all its backends when the check came
    from ``persistence_checks``), returning the Outcome."""

    backend: str
    registry: BackendRegistry
    config: RoundtripConfig
    shared: SharedFit | None = field(default=None, compare=False, repr=False)

    def __call__(self, estimator: Any) -> Outcome:
        if self.shared is not None and self.shared.estimator is estimator:
            fitted, X, y, expected = self.shared.get()
        else:
            fitted, X, y, expected = fit_on_tag_data(estimator, self.config)
        with tempfile.TemporaryDirectory(prefix="pytest-persist-") as workdir:
            return run_roundtrip(
                fitted,
                X,
                y,
                backend=self.registry[self.backend],
                workdir=Path(workdir),
                config=self.config,
                expected=expected,
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
        shared = SharedFit(estimator, config, uses=len(names))
        for name in names:
            yield estimator, PersistenceCheck(name, registry, config, shared)


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
