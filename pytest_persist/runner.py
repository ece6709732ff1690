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
from .outcome import Outcome, OutcomeKind
from .roundtrip import (
    PersistUsageError,
    expected_outputs,
    outputs_to_store,
    run_roundtrip,
    validate_input,
)
from .settings import KEYWORDS, RoundtripRequest, build_request


class PersistStateWarning(UserWarning):
    """The fitted state changed after loading while ``state="warn"`` lets the test pass."""


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
        try:
            request = self._request(keywords)
            validate_input(estimator, X)
            expected = expected_outputs(estimator, X, y, request.config)
        except PersistUsageError as exc:
            problem = str(exc)
        else:
            problem = None
        if problem is not None:
            pytest.fail(f"pytest-persist usage error: {problem}", pytrace=False)
        self._calls += 1
        if self.backend_name is not None:
            outcome = self._run(self.backend_name, estimator, X, y, request, expected)
            self._judge(outcome)
            return outcome.loaded
        return self._run_all(estimator, X, y, request, expected)

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
        strict_unsupported = outcome.kind is OutcomeKind.UNSUPPORTED and self.settings.strict
        return outcome.failed or strict_unsupported

    def _backend_names(self, request: RoundtripRequest) -> list[str]:
        __tracebackhide__ = True
        try:
            return self.settings.registry.select(
                request.backends, request.exclude, also_known=request.named_backends
            )
        except ValueError as exc:
            problem = f"persist_roundtrip in {self.test_id}: {exc}"
        pytest.fail(f"pytest-persist usage error: {problem}", pytrace=False)

    def _judge(self, outcome: Outcome) -> None:
        """Turn one outcome into a pytest result."""
        __tracebackhide__ = True
        if outcome.kind is OutcomeKind.UNAVAILABLE:
            pytest.skip(f"{outcome.backend} backend unavailable: {outcome.error}")
        if outcome.kind is OutcomeKind.UNSUPPORTED:
            if self.settings.strict:
                pytest.fail(outcome.message() + "\n  (--persist-strict)", pytrace=False)
            pytest.skip(outcome.error)
        if outcome.failed:
            pytest.fail(outcome.message(), pytrace=False)
        if outcome.state_differences:
            warnings.warn(
                PersistStateWarning(
                    f"{outcome.estimator} via {outcome.backend}: fitted state differs after "
                    f"loading: {'; '.join(outcome.state_differences[:5])}"
                ),
                stacklevel=3,
            )
