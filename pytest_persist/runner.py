"""The ``persist_roundtrip`` fixture's callable: runs round trips and turns outcomes into
pytest results (fail, skip, warn). The only module besides ``plugin.py`` that knows pytest."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .backends import BackendRegistry
from .checks import EstimatorChecks, PersistenceCheck, SharedFit, estimator_id, estimator_label
from .results.outcome import Outcome, OutcomeKind
from .roundtrip.run import (
    PersistUsageError,
    expected_outputs,
    outputs_to_store,
    run_roundtrip,
    validate_input,
)
from .roundtrip.settings import KEYWORDS, RoundtripRequest, build_request, no_backend_left


class PersistStateWarning(UserWarning):
    """The fitted state changed after loading while ``state="warn"`` lets the test pass."""


#: Where a usage error names no backend (the item never got to one).
NO_BACKEND = "-"


def fail_usage(
    problem: str,
    *,
    record: list[Outcome],
    test_id: str,
    estimator: Any = None,
    backends: list[str] | None = None,
) -> None:
    """Record a ``usage_error`` outcome (one per backend the item would have run, else one
    naming no backend), so that the summary and reports hold every item; then fail it."""
    __tracebackhide__ = True
    name = estimator_label(estimator)
    for backend in backends or [NO_BACKEND]:
        record.append(
            Outcome(OutcomeKind.USAGE_ERROR, name, backend, test_id=test_id, error=str(problem))
        )
    pytest.fail(f"pytest-persist usage error: {problem}", pytrace=False)


@dataclass
class SessionSettings:
    """What the command line and ini chose for the whole session."""

    registry: BackendRegistry
    enabled: list[str]
    strict: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)


class PersistRoundtrip:
    """``persist_roundtrip(estimator, X, y=None, **keywords)``: dump, load, compare.

    With the marker, the item's backend runs and the loaded model is returned. Without it,
    every enabled backend runs (each as a subtest where pytest has them) and a dict of
    loaded models by backend name is returned.
    """

    def __init__(
        self,
        *,
        settings: SessionSettings,
        backend_name: str | None,
        marker_keywords: dict[str, Any],
        workdir: Path,
        test_id: str,
        record: list[Outcome],
        subtests: Any = None,
        saver: Callable[..., None] | None = None,
    ) -> None:
        self.settings = settings
        self.backend_name = backend_name
        self.marker_keywords = marker_keywords
        self.workdir = workdir
        self.test_id = test_id
        self.outcomes = record
        self.subtests = subtests
        self.saver = saver  # --persist-save: stores each passed round trip
        self._calls = 0

    def __call__(self, estimator: Any, X: Any, y: Any = None, **keywords: Any) -> Any:
        __tracebackhide__ = True
        request = None
        try:
            request = self._request(keywords)
            validate_input(estimator, X, y)
            expected = expected_outputs(estimator, X, y, request.config)
        except PersistUsageError as exc:
            problem = str(exc)
        else:
            problem = None
        if problem is not None:
            fail_usage(
                problem,
                record=self.outcomes,
                test_id=self.test_id,
                estimator=estimator,
                backends=self._usage_backends(request),
            )
        self._calls += 1
        if self.backend_name is not None:
            outcome = self._run(self.backend_name, estimator, X, y, request, expected)
            self._judge(outcome)
            return outcome.loaded
        return self._run_all(estimator, X, y, request, expected)

    def _usage_backends(self, request: RoundtripRequest | None) -> list[str]:
        """The backends a call that failed as a usage error would have run."""
        if self.backend_name is not None:
            return [self.backend_name]
        if request is not None:
            try:
                chosen = self.settings.registry.select(request.backends, request.exclude)
            except ValueError:
                chosen = []
            return [n for n in chosen if n in self.settings.enabled]
        return list(self.settings.enabled)

    def _request(self, keywords: dict[str, Any]) -> RoundtripRequest:
        where = f"persist_roundtrip in {self.test_id}"
        selecting = sorted(k for k in keywords if k in KEYWORDS and KEYWORDS[k].target == "select")
        if self.backend_name is not None and selecting:
            raise PersistUsageError(
                f"{where}: {', '.join(selecting)} choose the test's items, so they belong on "
                "@pytest.mark.persist_roundtrip(...), not on the call"
            )
        return build_request(
            {**self.marker_keywords, **keywords}, where=where, defaults=self.settings.defaults
        )

    def _run(
        self,
        name: str,
        estimator: Any,
        X: Any,
        y: Any,
        request: RoundtripRequest,
        expected: Any,
    ) -> Outcome:
        workdir = self.workdir / f"call{self._calls}-{name}"
        workdir.mkdir(parents=True, exist_ok=True)
        outcome = run_roundtrip(
            estimator,
            X,
            y,
            backend=self.settings.registry[name],
            workdir=workdir,
            config=request.config,
            expected=expected,
            test_id=self.test_id,
        )
        self.outcomes.append(outcome)
        if self.saver is not None and outcome.kind is OutcomeKind.PASSED:
            stored, set_aside = outputs_to_store(estimator, X, y, expected, outcome, request.config)
            self.saver(
                outcome,
                estimator=estimator,
                X=X,
                y=y,
                expected_outputs=stored,
                not_compared=set_aside,
                artifact=outcome.artifact,
                backend_options=request.config.backend_options,
                call_index=self._calls,
            )
        return outcome

    def _run_all(
        self, estimator: Any, X: Any, y: Any, request: RoundtripRequest, expected: Any
    ) -> dict[str, Any]:
        __tracebackhide__ = True
        names = [n for n in self._backend_names(request) if n in self.settings.enabled]
        loaded: dict[str, Any] = {}
        failures: list[str] = []
        for name in names:
            outcome = self._run(name, estimator, X, y, request, expected)
            if outcome.loaded is not None:
                loaded[name] = outcome.loaded
            known = request.xfail.get(name)
            if self.subtests is not None:
                with self.subtests.test(msg=f"persist[{name}]"):
                    if known and self._counts_as_failure(outcome):
                        pytest.xfail(f"{known} ({outcome.headline()})")
                    self._judge(outcome)
            elif self._counts_as_failure(outcome) and not known:
                failures.append(outcome.message())
        if failures:
            pytest.fail("\n\n".join(failures), pytrace=False)
        return loaded

    def _counts_as_failure(self, outcome: Outcome) -> bool:
        unsupported = outcome.kind is OutcomeKind.UNSUPPORTED
        strict_only = unsupported or bool(outcome.vacuous)
        return outcome.failed or (self.settings.strict and strict_only)

    def _backend_names(self, request: RoundtripRequest) -> list[str]:
        __tracebackhide__ = True
        try:
            names = self.settings.registry.select(
                request.backends, request.exclude, also_known=request.named_backends
            )
            no_backend_left(names, request.exclude, f"persist_roundtrip in {self.test_id}")
            return names
        except PersistUsageError as exc:
            problem = str(exc)
        except ValueError as exc:
            problem = f"persist_roundtrip in {self.test_id}: {exc}"
        fail_usage(problem, record=self.outcomes, test_id=self.test_id)

    def _judge(self, outcome: Outcome) -> None:
        """Turn one outcome into a pytest result."""
        __tracebackhide__ = True
        known = self.marker_keywords.get("xfail") or {}
        judge(outcome, strict=self.settings.strict, known_failure=known.get(outcome.backend))


class PersistStateOnlyWarning(UserWarning):
    """A round trip passed without comparing any method (only the fitted state, or nothing)."""


class PersistIdentityWarning(UserWarning):
    """A round trip passed comparing only outputs equal to the input: the model may have
    done nothing (an encoder that found no column to encode), so nothing was proven."""


def judge(outcome: Outcome, *, strict: bool, known_failure: str | None = None) -> None:
    """Turn one outcome into a pytest result: fail, skip, xfail, or pass (maybe warning).

    ``known_failure`` is the reason of a strict xfail on this backend: a backend that cannot
    handle the estimator at all (``unsupported``) is then the expected failure, not a skip.
    """
    __tracebackhide__ = True
    if outcome.kind is OutcomeKind.UNAVAILABLE:
        pytest.skip(f"{outcome.backend} backend unavailable: {outcome.error}")
    if outcome.kind is OutcomeKind.UNSUPPORTED:
        if known_failure:
            pytest.xfail(f"{known_failure} ({outcome.error})")
        if strict:
            pytest.fail(outcome.message() + "\n  (--persist-strict)", pytrace=False)
        pytest.skip(outcome.error)
    if outcome.failed:
        pytest.fail(outcome.message(), pytrace=False)
    if outcome.state_only:
        if strict:
            pytest.fail(
                outcome.message() + "\n  (--persist-strict: a pass that compared no method fails)",
                pytrace=False,
            )
        warnings.warn(
            PersistStateOnlyWarning(f"{outcome.headline()}: {outcome.state_only}"), stacklevel=3
        )
    elif outcome.identity:
        if strict:
            pytest.fail(
                outcome.message()
                + "\n  (--persist-strict: a pass whose outputs equal its input fails)",
                pytrace=False,
            )
        warnings.warn(
            PersistIdentityWarning(f"{outcome.headline()}: {outcome.identity}"), stacklevel=3
        )
    if outcome.state_differences:
        warnings.warn(
            PersistStateWarning(
                f"{outcome.estimator} via {outcome.backend}: fitted state differs after "
                f"loading: {'; '.join(outcome.state_differences[:5])}"
            ),
            stacklevel=3,
        )


# ----------------------------------------------------------------------------------------------
# parametrize_with_persistence


@dataclass(frozen=True)
class PendingCheck:
    """The ``check`` parameter of a ``parametrize_with_persistence`` item, before the plugin
    binds it to the item (``bind``); a usage problem fails the item when it runs."""

    check: PersistenceCheck | None
    known_failure: str | None = None
    problem: str | None = None

    def __repr__(self) -> str:
        return repr(self.check) if self.check is not None else "check_persistence[usage-error]"

    def bind(
        self, *, settings: SessionSettings, test_id: str, record: list[Outcome], saver: Any
    ) -> BoundCheck:
        __tracebackhide__ = True
        if self.problem is not None or self.check is None:
            fail_usage(str(self.problem), record=record, test_id=test_id)
        return BoundCheck(self, settings, test_id, record, saver)


@dataclass
class BoundCheck:
    """``check(estimator) -> Outcome`` as the test sees it: fits, round-trips, records the
    outcome for the summary and reports, saves a pass with ``--persist-save``, and turns
    the outcome into the pytest result."""

    pending: PendingCheck
    settings: SessionSettings
    test_id: str
    record: list[Outcome]
    saver: Callable[..., None] | None = None
    calls: int = 0

    @property
    def backend(self) -> str:
        assert self.pending.check is not None
        return self.pending.check.backend

    def __call__(self, estimator: Any) -> Outcome:
        __tracebackhide__ = True
        assert self.pending.check is not None
        self.calls += 1
        saver, index = self.saver, self.calls
        on_passed = None
        if saver is not None:

            def on_passed(outcome: Outcome, **stored: Any) -> None:
                saver(outcome, **stored, call_index=index)

        try:
            outcome = self.pending.check(estimator, test_id=self.test_id, on_passed=on_passed)
        except PersistUsageError as exc:  # e.g. no method of the fitted estimator works on X
            problem = str(exc)
        else:
            problem = None
        if problem is not None:
            fail_usage(
                problem,
                record=self.record,
                test_id=self.test_id,
                estimator=estimator,
                backends=[self.backend],
            )
        self.record.append(outcome)
        judge(outcome, strict=self.settings.strict, known_failure=self.pending.known_failure)
        return outcome

    def __repr__(self) -> str:
        return f"check_persistence[{self.backend}]"


def persistence_params(checks: EstimatorChecks, settings: SessionSettings, where: str) -> list[Any]:
    """``pytest.param(estimator, PendingCheck)`` for every estimator and enabled backend, in
    registry order, with skip marks (library missing) and strict xfail marks (known)."""
    registry = settings.registry
    try:
        if not checks.estimators:
            raise PersistUsageError(f"{where}: no estimators given")
        config = checks.config(settings.defaults, where)
        if checks.backends is not None and not checks.backends:
            raise PersistUsageError(
                f"{where}: backends=[] names no backend; name at least one, or leave "
                "backends out to run every enabled backend"
            )
        chosen = set(registry.select(checks.backends, checks.exclude))
        no_backend_left(list(chosen), checks.exclude, where)
        known = [checks.known_failures(estimator, where) for estimator in checks.estimators]
        registry.select([], also_known=[name for failures in known for name in failures])
    except PersistUsageError as exc:
        problem = str(exc)
    except ValueError as exc:
        problem = f"{where}: {exc}"
    else:
        problem = None
    if problem is not None:
        return [pytest.param(None, PendingCheck(None, problem=problem), id="usage-error")]
    names = [n for n in registry.names if n in chosen and n in settings.enabled]
    params = []
    available = [n for n in names if registry[n].is_available()]
    for estimator, failures in zip(checks.estimators, known, strict=True):
        # fitted once on its tag-driven data, for all of its backends' items
        shared = SharedFit(estimator, config, uses=len(available), data=checks.data)
        for name in names:
            backend = registry[name]
            marks = []
            if not backend.is_available():
                marks.append(pytest.mark.skip(reason=backend.unavailable_reason()))
            reason = failures.get(name)
            if reason:
                marks.append(pytest.mark.xfail(reason=reason, strict=True))
            check = PersistenceCheck(name, registry, config, shared, checks.data)
            pending = PendingCheck(check, known_failure=reason)
            test_id = f"{estimator_id(estimator)}-{name}"
            params.append(pytest.param(estimator, pending, marks=marks, id=test_id))
    if not params:
        asked = ", ".join(n for n in registry.names if n in chosen) or "none"
        reason = (
            f"none of the backends this test asks for ({asked}) is enabled in this session "
            f"(--persist-backends / persist_backends: {', '.join(settings.enabled)})"
        )
        params = [pytest.param(None, None, marks=pytest.mark.skip(reason=reason), id="no-backend")]
    return params


class UsageProblem(str):
    """A marker that cannot be honoured; the item fails with this message."""


def marker_problem(marker: pytest.Mark, where: str, registry: BackendRegistry) -> str | None:
    """Why ``marker`` cannot be honoured on this test (None: it can)."""
    if marker.args:
        return UsageProblem(f"{where}: takes keyword arguments only, got {marker.args!r}")
    try:
        request = build_request(dict(marker.kwargs), where=where)
        chosen = registry.select(
            request.backends, request.exclude, also_known=request.named_backends
        )
        no_backend_left(chosen, request.exclude, where)
    except PersistUsageError as exc:
        return UsageProblem(str(exc))
    except ValueError as exc:
        return UsageProblem(f"{where}: {exc}")
    return None


def marker_params(marker: pytest.Mark, settings: SessionSettings, where: str) -> list[Any]:
    """The ``persist_backend`` parameters of a test carrying ``marker``: one per backend it
    asks for and the session enables (skipped when unavailable, xfail where it says so), or
    one ``usage-error`` item naming what is wrong with the marker."""
    problem = marker_problem(marker, where, settings.registry)
    if problem is not None:  # fail this test alone, clearly, and let the others run
        return [pytest.param(problem, id="usage-error")]
    request = build_request(dict(marker.kwargs), where=where)
    names = settings.registry.select(request.backends, request.exclude)
    params = []
    for name in (n for n in names if n in settings.enabled):
        backend = settings.registry[name]
        marks = [] if backend.is_available() else [pytest.mark.skip(backend.unavailable_reason())]
        if name in request.xfail:
            marks.append(pytest.mark.xfail(reason=request.xfail[name], strict=True))
        params.append(pytest.param(name, marks=marks, id=name))
    if not params:
        asked, enabled = ", ".join(names) or "none", ", ".join(settings.enabled)
        reason = (
            f"none of the backends this test asks for ({asked}) is enabled in this session "
            f"(--persist-backends / persist_backends: {enabled})"
        )
        params = [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-backend")]
    return params
