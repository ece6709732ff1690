"""One estimator through one backend: check the input, dump, load, compare. Returns an Outcome."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import Backend, BackendCall, BackendRegistry, UnsupportedEstimator
from .compare import (
    PREDICTION_METHODS,
    available_methods,
    compare_outputs,
    compute_outputs,
)
from .outcome import Outcome, OutcomeKind
from .state import compare_state
from .versions import capture_version_warnings

STATE_POLICIES = ("fail", "warn", "ignore")


class PersistUsageError(ValueError):
    """The round trip was asked for something that cannot be checked (not a persistence bug)."""


@dataclass
class RoundtripConfig:
    """How a round trip compares; ``None`` tolerances mean the backend's defaults."""

    methods: list[str] | None = None
    rtol: float | dict[str, float] | None = None
    atol: float | dict[str, float] | None = None
    exact: bool = False
    state: str = "fail"
    max_label_flips: float | None = None
    check_determinism: bool = True
    backend_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATE_POLICIES:
            raise PersistUsageError(
                f"state={self.state!r} is not one of {', '.join(STATE_POLICIES)}"
            )
        unknown = [m for m in self.methods or [] if m not in PREDICTION_METHODS]
        if unknown:
            raise PersistUsageError(
                f"unknown method(s) {', '.join(map(repr, unknown))}; "
                f"compared methods are chosen among {', '.join(PREDICTION_METHODS)}"
            )


@dataclass
class Expected:
    """The original estimator's outputs on X, checked once and shared by every backend."""

    outputs: dict[str, Any]
    not_compared: dict[str, str]


def estimator_name(estimator: Any) -> str:
    return type(estimator).__name__


def validate_input(estimator: Any, X: Any, y: Any = None) -> None:
    """Refuse, before any dump, what cannot be round-tripped meaningfully."""
    name = estimator_name(estimator)
    if not (hasattr(estimator, "fit") and hasattr(estimator, "get_params")):
        raise PersistUsageError(
            f"{name} is not a scikit-learn estimator (it has no fit/get_params); "
            "persist_roundtrip checks fitted estimators"
        )
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise PersistUsageError(
            f"{name} is not fitted: call {name}.fit(...) before checking its persistence"
        ) from None
    except TypeError:
        pass  # not an estimator check_is_fitted understands; the methods will tell
    if X is None:
        raise PersistUsageError(f"no input X given to compare the predictions of {name} on")
    if isinstance(X, (str, bytes, dict)) or not hasattr(X, "__len__"):
        raise PersistUsageError(
            f"X for {name} must be array-like (ndarray, sparse matrix, DataFrame or list), "
            f"not {type(X).__name__}"
        )
    expected_features = getattr(estimator, "n_features_in_", None)
    shape = getattr(X, "shape", None)
    if (
        isinstance(expected_features, int)
        and shape is not None
        and len(shape) == 2
        and shape[1] != expected_features
    ):
        raise PersistUsageError(
            f"X has {shape[1]} features but {name} was fitted on {expected_features}"
        )
    validate_target(name, X, y)


def _n_rows(data: Any) -> int | None:
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) >= 1 and isinstance(shape[0], int):
        return shape[0]
    try:
        return len(data)
    except TypeError:
        return None


def validate_target(name: str, X: Any, y: Any) -> None:
    """A ``y`` given with X must have one row per row of X (else ``score`` silently drops out)."""
    if y is None:
        return
    n_x, n_y = _n_rows(X), _n_rows(y)
    if n_x is not None and n_y is not None and n_x != n_y:
        raise PersistUsageError(
            f"y has {n_y} rows but X has {n_x} for {name}: give the y that goes with X "
            "(or none), so that score and fit_resample compare the same samples"
        )


def expected_outputs(
    estimator: Any, X: Any, y: Any = None, config: RoundtripConfig | None = None
) -> Expected:
    """Compute the original's outputs, setting aside methods that fail or are nondeterministic."""
    config = config or RoundtripConfig()
    name = estimator_name(estimator)
    offered = available_methods(estimator, with_y=y is not None)
    if config.methods is not None:
        missing = [m for m in config.methods if m not in offered]
        if missing:
            raise PersistUsageError(
                f"{name} has no method {', '.join(missing)} "
                f"(it offers {', '.join(offered) or 'no prediction method'})"
            )
        offered = [m for m in offered if m in config.methods]
    outputs, errors = compute_outputs(estimator, X, y, offered)
    not_compared = {
        method: f"raises on the original estimator too, not a persistence failure: {reason}"
        for method, reason in errors.items()
    }
    if offered and not outputs:
        details = "; ".join(f"{m}: {r}" for m, r in errors.items())
        raise PersistUsageError(f"no prediction method of {name} works on the given X: {details}")
    if config.check_determinism and outputs:
        again, _ = compute_outputs(
            estimator, X, y, list(outputs), transformed=outputs.get("transform")
        )
        for method in list(outputs):
            if method not in again or compare_outputs(
                {method: outputs[method]}, {method: again[method]}, rtol=0.0, atol=0.0
            ):
                del outputs[method]
                not_compared[method] = (
                    "nondeterministic: the original estimator gives different outputs on two calls"
                )
    return Expected(outputs, not_compared)


def run_roundtrip(
    estimator: Any,
    X: Any,
    y: Any = None,
    *,
    backend: Backend,
    workdir: Path,
    config: RoundtripConfig | None = None,
    expected: Expected | None = None,
    test_id: str = "",
) -> Outcome:
    """Dump ``estimator`` with ``backend`` into ``workdir``, load it back and compare."""
    config = config or RoundtripConfig()
    name = estimator_name(estimator)
    outcome = Outcome(OutcomeKind.PASSED, name, backend.name, test_id=test_id)
    outcome.versions = _versions(backend)
    if not backend.is_available():
        outcome.kind = OutcomeKind.UNAVAILABLE
        outcome.error = backend.unavailable_reason()
        return outcome
    if expected is None:
        validate_input(estimator, X, y)
        expected = expected_outputs(estimator, X, y, config)
    outcome.not_compared.update(expected.not_compared)

    call = BackendCall(X=X, options=dict(config.backend_options))
    outcome.details = call.details
    artifact = Path(workdir) / f"{name}{backend.suffix}"
    started = time.perf_counter()
    try:
        backend.dump(estimator, artifact, call)
    except UnsupportedEstimator as exc:
        outcome.kind = OutcomeKind.UNSUPPORTED
        outcome.error = f"{backend.name} cannot persist {name}: {exc}"
        return outcome
    except Exception as exc:
        outcome.kind = OutcomeKind.DUMP_ERROR
        outcome.error = explain_dump_error(estimator, backend, exc)
        return outcome
    outcome.dump_seconds = time.perf_counter() - started
    outcome.artifact_bytes = artifact.stat().st_size if artifact.exists() else None
    outcome.artifact = artifact

    started = time.perf_counter()
    try:
        with capture_version_warnings() as version_warnings:
            loaded = backend.load(artifact, call)
    except Exception as exc:
        outcome.kind = OutcomeKind.LOAD_ERROR
        outcome.version_warnings = version_warnings  # a warning may come before the failure
        outcome.error = f"loading {name} with {backend.name} failed: {_describe(exc)}"
        outcome.error += _load_hint(estimator, backend, exc, test_id)
        return outcome
    outcome.load_seconds = time.perf_counter() - started
    outcome.version_warnings = version_warnings
    outcome.loaded = loaded

    # The state first, before any method runs on the loaded model: some estimators count their
    # own calls (scikit-learn 1.0's KDTree), which is not something persistence lost.
    if backend.preserves_objects and config.state != "ignore":
        outcome.state_differences = compare_state(estimator, loaded)
    compare_loaded(outcome, loaded, X, y, expected, backend, config)
    state_fails = outcome.state_differences and config.state == "fail"
    if outcome.kind is OutcomeKind.PASSED and state_fails:
        outcome.kind = OutcomeKind.MISMATCH
    note_state_only(outcome, backend, config)
    return outcome


def note_state_only(outcome: Outcome, backend: Backend, config: RoundtripConfig) -> None:
    """A pass that compared no method says so in ``details["state_only"]`` (never a plain pass
    that compared nothing; ``--persist-strict`` fails it)."""
    if outcome.kind is not OutcomeKind.PASSED or outcome.compared_methods:
        return
    why = "; ".join(f"{m}: {r}" for m, r in outcome.not_compared.items())
    why = why or (
        f"{outcome.estimator} has no prediction method (a sampler's fit_resample is compared "
        "only when y is given)"
    )
    if backend.preserves_objects and config.state != "ignore":
        outcome.details["state_only"] = (
            f"state only: no method compared ({why}); only the fitted state was checked"
        )
    else:
        outcome.details["state_only"] = (
            f"nothing compared: no method compared ({why}) and the {backend.name} model's "
            "fitted state is not checked"
        )


def compare_loaded(
    outcome: Outcome,
    loaded: Any,
    X: Any,
    y: Any,
    expected: Expected,
    backend: Backend,
    config: RoundtripConfig,
) -> None:
    """Call the expected methods on ``loaded`` and record errors and differences in ``outcome``."""
    offered = [m for m in expected.outputs if m in available_methods(loaded, with_y=y is not None)]
    for method in expected.outputs:
        if method not in offered:
            outcome.not_compared[method] = f"the {backend.name} model does not provide it"
    actual, errors = compute_outputs(
        loaded, X, y, offered, transformed=expected.outputs.get("transform")
    )
    outcome.compared_methods = [m for m in offered if m in actual]
    if errors:
        outcome.kind = OutcomeKind.METHOD_ERROR
        outcome.error = "; ".join(
            f"{method} raises after loading {outcome.estimator} with {backend.name}: {reason}"
            for method, reason in errors.items()
        )
        return
    rtol = _for_backend(config.rtol, backend.name, backend.default_rtol)
    atol = _for_backend(config.atol, backend.name, backend.default_atol)
    flips = config.max_label_flips if config.max_label_flips is not None else 0.0
    outcome.comparison = {
        "rtol": rtol,
        "atol": atol,
        "exact": config.exact,
        "max_label_flips": flips,
    }
    outcome.differences = compare_outputs(
        {m: expected.outputs[m] for m in outcome.compared_methods},
        actual,
        rtol=rtol,
        atol=atol,
        exact=config.exact,
        check_dtype=backend.preserves_objects,
        max_label_flips=flips,
    )
    if any(not d.tolerated for d in outcome.differences):
        outcome.kind = OutcomeKind.MISMATCH


def _for_backend(value: float | dict[str, float] | None, backend: str, default: float) -> float:
    """A tolerance given for all backends, or per backend name, else the backend's default."""
    if isinstance(value, dict):
        return value.get(backend, default)
    return default if value is None else value


def check_persistence(
    estimator: Any,
    X: Any,
    y: Any = None,
    *,
    backends: list[str] | None = None,
    exclude: list[str] | None = None,
    registry: BackendRegistry | None = None,
    **options: Any,
) -> list[Outcome]:
    """Round-trip ``estimator`` through every backend (or those named); pytest-free.

    ``options`` are the marker's keywords (``rtol``, ``atol``, ``exact``, ``methods``,
    ``state``, ``trusted``, ``onnx_dtype``, ...), validated the same way. Each result holds the
    outcome, compared methods, differences, dump and load seconds and artifact bytes;
    ``result.loaded`` is the model.
    """
    registry = registry or BackendRegistry()
    names = registry.select(backends, exclude)
    from .settings import config_from_options  # settings builds on this module

    config = config_from_options(options, where=f"check_persistence({estimator_name(estimator)})")
    validate_input(estimator, X, y)
    expected = expected_outputs(estimator, X, y, config)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="pytest-persist-") as workdir:
        for name in names:
            backend_dir = Path(workdir) / name
            backend_dir.mkdir()
            outcomes.append(
                run_roundtrip(
                    estimator,
                    X,
                    y,
                    backend=registry[name],
                    workdir=backend_dir,
                    config=config,
                    expected=expected,
                )
            )
    return outcomes


def explain_dump_error(estimator: Any, backend: Backend, exc: BaseException) -> str:
    """Say why the dump failed, naming an unpicklable function and the backend that copes."""
    name = estimator_name(estimator)
    culprit = _find_local_function(estimator)
    if culprit is not None and backend.name != "cloudpickle":
        owner, param, function = culprit
        inside = "" if owner == name else f" inside {name}"
        return (
            f"{backend.name} cannot serialize the {function} in {owner}({param}=<{function}>)"
            f"{inside}; the cloudpickle backend can. ({_describe(exc)})"
        )
    return f"dumping {name} with {backend.name} failed: {_describe(exc)}"


def _load_hint(estimator: Any, backend: Backend, exc: BaseException, test_id: str) -> str:
    from .hints import load_error_hint

    cls = type(estimator)
    hint = load_error_hint(
        str(exc),
        estimator_class=f"{cls.__module__}.{cls.__qualname__}",
        backend=backend.name,
        test_id=test_id,
    )
    return f"\n    hint: {hint}" if hint else ""


def _find_local_function(estimator: Any) -> tuple[str, str, str] | None:
    """(owner class, parameter, description) of a lambda or nested function in the params."""
    try:
        params = estimator.get_params(deep=True)
    except Exception:
        return None
    for key, value in params.items():
        qualname = getattr(value, "__qualname__", "")
        if callable(value) and ("<lambda>" in qualname or "<locals>" in qualname):
            owner_key, _, param = key.rpartition("__")
            owner = params.get(owner_key, estimator) if owner_key else estimator
            what = "lambda" if "<lambda>" in qualname else "local function"
            return type(owner).__name__, param, what
    return None


def _describe(exc: BaseException, max_lines: int = 8, max_chars: int = 400) -> str:
    """``Type: message``, keeping a short multi-line message whole and cutting long ones."""
    lines = [line.rstrip() for line in str(exc).strip().splitlines() if line.strip()]
    kept = [line if len(line) <= max_chars else line[: max_chars - 3] + "..." for line in lines]
    if len(kept) > max_lines:
        kept = [*kept[:max_lines], f"... ({len(lines) - max_lines} more lines)"]
    text = "\n    ".join(kept)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _versions(backend: Backend) -> dict[str, str]:
    import platform

    import numpy
    import sklearn

    versions = {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
    }
    versions.update(backend.library_versions())
    return versions
