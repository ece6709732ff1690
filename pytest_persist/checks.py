"""Checking custom estimators before a release: ``parametrize_with_persistence``.

Shaped like scikit-learn's ``parametrize_with_checks``: the estimator author lists instances,
and every (estimator, backend) pair becomes a test whose data comes from the estimator's tags,
fitted inside the check::

    from pytest_persist import parametrize_with_persistence

    @parametrize_with_persistence([MyRegressor(), MyRegressor(alpha=2.0)])
    def test_persistence(estimator, check):
        check(estimator)

The decorator only records the estimators and options (the ``persist_estimators`` marker);
the plugin parametrizes the test when it is collected, over the backends the session enabled
(``--persist-backends``, ini ``persist_backends``, backends added by hooks), so that its
checks feed the summary, the reports and ``--persist-save`` like the marker's round trips.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import BackendRegistry
from .results.outcome import Outcome
from .roundtrip.config import Expected, PersistUsageError, RoundtripConfig
from .roundtrip.run import (
    estimator_name,
    expected_outputs,
    run_roundtrip,
    validate_estimator,
    validate_input,
)
from .roundtrip.settings import config_from_options

ExpectedFailed = Callable[[Any], dict[str, str]] | dict[str, str]
#: An author's own data: one ``(X, y)`` for every estimator, or ``estimator -> (X, y)``.
Data = Callable[[Any], tuple[Any, Any]] | tuple[Any, Any]
#: Called after a passed round trip, while its artifact exists (``--persist-save``).
OnPassed = Callable[..., None]

#: The attribute ``parametrize_with_persistence`` sets on the test function (or class); not
#: a marker, so that with the plugin disabled there is no unknown-mark warning or error.
ESTIMATORS_ATTRIBUTE = "_persist_estimators"


def recorded_checks(function: Any, cls: Any = None) -> EstimatorChecks | None:
    """What ``parametrize_with_persistence`` recorded on a test function or its class."""
    for owner in (function, cls):
        found = getattr(owner, ESTIMATORS_ATTRIBUTE, None)
        if isinstance(found, EstimatorChecks):
            return found
    return None


class SharedFit:
    """One estimator's clone, fitted once on its tag-driven data, with its expected outputs:
    computed on first use by any of its backend checks and shared by all of them."""

    def __init__(
        self, estimator: Any, config: RoundtripConfig, uses: int, data: Data | None = None
    ) -> None:
        self.estimator = estimator
        self.config = config
        self.data = data
        self.remaining = uses  # released after the last of its checks ran
        self._fitted: tuple[Any, Any, Any, Expected] | None = None
        self._error: PersistUsageError | None = None

    def get(self) -> tuple[Any, Any, Any, Expected]:
        """``(fitted clone, X, y, expected outputs)``; a usage error if it cannot be fitted."""
        if self._error is None and self._fitted is None:
            try:
                self._fitted = fit_for_check(self.estimator, self.config, self.data)
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


def fit_for_check(
    estimator: Any, config: RoundtripConfig, data: Data | None = None
) -> tuple[Any, Any, Any, Expected]:
    """Clone ``estimator``, fit it on ``data`` (the author's) or on data made from its tags,
    and compute its expected outputs: ``(fitted clone, X, y, expected)``.

    On tag-made data, an estimator whose compared outputs all equal X (an encoder that picks
    its columns by dtype and found none) is fitted again on categorical columns
    (``make_categorical_data``), kept if it changes them.
    """
    validate_estimator(estimator, needs=("fit", "get_params"))
    if data is not None:
        X, y = given_data(data, estimator)
        fitted = _fit(estimator, X, y, source="the data given with data=")
        validate_input(fitted, X, y)
        return fitted, X, y, expected_outputs(fitted, X, y, config)

    from .estimators.fit_data import make_categorical_data, make_fit_data

    X, y = _make(make_fit_data, estimator)
    fitted = _fit(estimator, X, y, source="the data pytest-persist makes from its tags")
    validate_input(fitted, X, y)
    expected = expected_outputs(fitted, X, y, config)
    if expected.outputs and set(expected.outputs) <= {*expected.identical, "score"}:
        try:
            import pandas  # noqa: F401  (categorical frames need it)

            X_cat, y_cat = make_categorical_data(estimator)
            refit = _fit(estimator, X_cat, y_cat, source="categorical columns")
            validate_input(refit, X_cat, y_cat)
            again = expected_outputs(refit, X_cat, y_cat, config)
        except (ImportError, PersistUsageError):
            pass  # keep the numeric fit; the round trip says it compared an identity
        else:
            if again.outputs and not set(again.outputs) <= {*again.identical, "score"}:
                return refit, X_cat, y_cat, again
    return fitted, X, y, expected


def given_data(data: Data, estimator: Any) -> tuple[Any, Any]:
    """``(X, y)`` from ``data=``: the pair itself, or what the callable returns for
    ``estimator``; anything else is a usage error naming the estimator."""
    name = estimator_id(estimator)
    if callable(data):
        try:
            pair = data(estimator)
        except Exception as exc:
            raise PersistUsageError(
                f"data= raised for {name}: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        where = f"data({name}) returned"
    else:
        pair, where = data, "data= is"
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise PersistUsageError(
            f"{where} {type(pair).__name__}, not an (X, y) pair: give data=(X, y) (y may be "
            "None) or a callable estimator -> (X, y)"
        )
    return pair


def _make(make: Callable[[Any], tuple[Any, Any]], estimator: Any) -> tuple[Any, Any]:
    try:
        return make(estimator)
    except Exception as exc:
        raise _cannot_fit(estimator, "the data pytest-persist makes from its tags", exc) from exc


def _fit(estimator: Any, X: Any, y: Any, *, source: str) -> Any:
    """A fresh clone of ``estimator`` fitted on ``X``, ``y``; a usage error naming it if it
    cannot be cloned or fitted."""
    from sklearn.base import clone

    try:
        fitted = clone(estimator)
    except Exception as exc:
        raise PersistUsageError(
            f"{estimator_id(estimator)} cannot be cloned ({type(exc).__name__}: "
            f"{_first_line(exc)}); parametrize_with_persistence fits a fresh clone of each "
            "estimator: fit it yourself and check it with the persist_roundtrip fixture or "
            "check_persistence(estimator, X, y)"
        ) from exc
    try:
        fitted.fit(X) if y is None else fitted.fit(X, y)
    except Exception as exc:
        raise _cannot_fit(estimator, source, exc) from exc
    return fitted


def _cannot_fit(estimator: Any, source: str, exc: BaseException) -> PersistUsageError:
    own = "data=" in source
    advice = (
        "check that data= gives the X and y it is fitted on"
        if own
        else "give data yourself: data=(X, y) or data=lambda estimator: (X, y) on "
        "parametrize_with_persistence, or fit it and pass your X to the persist_roundtrip "
        "fixture or to check_persistence(estimator, X, y), which take any X"
    )
    return PersistUsageError(
        f"{estimator_id(estimator)} cannot be fitted on {source} "
        f"({type(exc).__name__}: {_first_line(exc)}); {advice}"
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""


@dataclass(frozen=True)
class PersistenceCheck:
    """One (estimator, backend) pair; calling it round-trips a fitted clone of the estimator
    (fitted on tag-driven data, once per estimator for all its backends when the check came
    from ``persistence_checks``), returning the Outcome."""

    backend: str
    registry: BackendRegistry
    config: RoundtripConfig
    shared: SharedFit | None = field(default=None, compare=False, repr=False)
    data: Data | None = field(default=None, compare=False, repr=False)

    def __call__(
        self, estimator: Any, *, test_id: str = "", on_passed: OnPassed | None = None
    ) -> Outcome:
        if self.shared is not None and self.shared.estimator is estimator:
            fitted, X, y, expected = self.shared.get()
        else:
            fitted, X, y, expected = fit_for_check(estimator, self.config, self.data)
        with tempfile.TemporaryDirectory(prefix="pytest-persist-") as workdir:
            outcome = run_roundtrip(
                fitted,
                X,
                y,
                backend=self.registry[self.backend],
                workdir=Path(workdir),
                config=self.config,
                expected=expected,
                test_id=test_id,
            )
            if on_passed is not None and outcome.kind.value == "passed":
                on_passed(
                    outcome,
                    estimator=fitted,
                    X=X,
                    y=y,
                    expected_outputs=expected.outputs,
                    not_compared=expected.not_compared,
                    artifact=outcome.artifact,
                    backend_options=self.config.backend_options,
                )
            return outcome

    def __repr__(self) -> str:
        return f"check_persistence[{self.backend}]"


def estimator_id(estimator: Any) -> str:
    """``LogisticRegression(C=2)``: the class and the parameters that differ from defaults;
    ``LogisticRegression-class`` for a class, the class name for an object whose repr is the
    default ``<module.Class object at 0x...>``."""
    if isinstance(estimator, type):
        return f"{estimator.__name__}-class"
    try:
        text = repr(estimator)
    except Exception:
        text = "<>"
    # no memory addresses: ids must be the same in every process (pytest-xdist workers)
    text = re.sub(r"\s+", "", re.sub(r" at 0x[0-9a-fA-F]+", "", text))
    if text.startswith("<"):
        return type(estimator).__name__
    return text if len(text) <= 80 else f"{type(estimator).__name__}(...)"


def estimator_label(estimator: Any) -> str:
    """The estimator's name in a record: its class name (``(no estimator)`` for None)."""
    return "(no estimator)" if estimator is None else estimator_name(estimator)


def persistence_checks(
    estimators: Iterable[Any],
    *,
    backends: list[str] | None = None,
    registry: BackendRegistry | None = None,
    data: Data | None = None,
    **options: Any,
) -> Iterator[tuple[Any, PersistenceCheck]]:
    """Every (estimator, check) pair, pytest-free; ``options`` are the marker's keywords,
    ``data`` the author's own ``(X, y)`` or ``estimator -> (X, y)`` (default: made from each
    estimator's tags)."""
    registry = registry or BackendRegistry()
    config = config_from_options(options, where="persistence_checks")
    if backends is not None and not list(backends):
        raise PersistUsageError(
            "persistence_checks: backends=[] names no backend; leave it out for every backend"
        )
    names = registry.select(backends)
    for estimator in estimators:
        shared = SharedFit(estimator, config, uses=len(names), data=data)
        for name in names:
            yield estimator, PersistenceCheck(name, registry, config, shared, data)


@dataclass(frozen=True)
class EstimatorChecks:
    """What ``parametrize_with_persistence`` recorded, for the plugin to parametrize."""

    estimators: tuple[Any, ...]
    backends: list[str] | None = None
    exclude: list[str] | None = None
    expected_failed: ExpectedFailed | None = None
    options: dict[str, Any] = field(default_factory=dict)
    data: Data | None = None

    def config(self, defaults: dict[str, Any], where: str) -> RoundtripConfig:
        """The options over the session's defaults, validated like the marker's keywords."""
        if "xfail" in self.options:
            raise PersistUsageError(f"{where}: known failures go in expected_failed=, not xfail=")
        return config_from_options({**defaults, **self.options}, where=where)

    def known_failures(self, estimator: Any, where: str) -> dict[str, str]:
        """``{backend: reason}`` for ``estimator``, from ``expected_failed``."""
        given = self.expected_failed
        if given is None:
            return {}
        known = given(estimator) if callable(given) else given
        if not isinstance(known, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in known.items()
        ):
            raise PersistUsageError(
                f"{where}: expected_failed must be a {{backend: reason}} dict or a callable "
                f"returning one; for {estimator_id(estimator)} it gave {known!r}"
            )
        return dict(known)


def parametrize_with_persistence(
    estimators: Iterable[Any],
    *,
    backends: list[str] | None = None,
    exclude: list[str] | None = None,
    expected_failed: ExpectedFailed | None = None,
    data: Data | None = None,
    **options: Any,
) -> Any:
    """Parametrize a test over every estimator and enabled backend, with ids
    ``Estimator(params)-backend``; the test takes ``(estimator, check)``.

    ``data`` is the author's own data: one ``(X, y)`` (y may be None) for every estimator,
    or a callable ``estimator -> (X, y)``; without it, data is made from each estimator's tags.

    ``backends``/``exclude`` narrow the session's backends (``--persist-backends``, ini
    ``persist_backends``, hook registrations); ``options`` are the marker's keywords
    (``rtol``, ``state``, ``trusted``...). ``expected_failed`` is ``{backend: reason}`` or a
    callable ``estimator -> {backend: reason}``: strict xfail marks, and a backend that cannot
    handle the estimator (``unsupported``) counts as the expected failure. A backend whose
    library is missing is skipped with its install hint; one that cannot handle the estimator
    (no ONNX converter) is skipped with the converter's message (failed with
    ``--persist-strict``). Needs the plugin: with ``-p no:persist`` the tests are skipped.
    """
    import pytest

    recorded = EstimatorChecks(
        tuple(estimators),
        backends=None if backends is None else list(backends),
        exclude=None if exclude is None else list(exclude),
        expected_failed=expected_failed,
        options=dict(options),
        data=data,
    )
    # A string condition is evaluated at setup with the session's config: without the plugin
    # (-p no:persist) nothing parametrized the test, so skip it rather than fail on fixtures.
    plugin_off = pytest.mark.skipif(
        "__import__('pytest_persist.plugin').plugin.SETTINGS_KEY not in config.stash",
        reason="parametrize_with_persistence needs the pytest-persist plugin, which is "
        "disabled (-p no:persist)",
    )

    def decorate(function: Any) -> Any:
        setattr(function, ESTIMATORS_ATTRIBUTE, recorded)
        return plugin_off(function)

    return decorate
