"""One estimator through one backend: check the input, dump, load, compare. Returns an Outcome."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import Backend, BackendCall, BackendRegistry, UnsupportedEstimator
from ..environments.version_warnings import capture_version_warnings
from ..results.outcome import Difference, Outcome, OutcomeKind, by_reason
from .compare import (
    available_methods,
    call_method,
    compare_outputs,
    compute_outputs,
    compute_outputs_once,
    equals_input,
    extra_calls,
    is_function_call,
)
from .config import STATE_POLICIES, Expected, PersistUsageError, RoundtripConfig
from .settings import config_from_options, no_backend_left
from .state import changed_paths, compare_state, state_fingerprint

__all__ = [
    "STATE_POLICIES",
    "Expected",
    "PersistUsageError",
    "RoundtripConfig",
    "check_persistence",
    "expected_outputs",
    "run_roundtrip",
    "validate_input",
]

#: A nondeterministic method's loaded output counts as changed too when it is farther than
#: this many times the spread of the original's two answers from the nearer of them.
CHANGED_BEYOND_SPREAD = 3.0

NONDETERMINISTIC = "nondeterministic: the original estimator gives different outputs on two calls"


def estimator_name(estimator: Any) -> str:
    """The estimator's class name (a class passed instead of an instance: its own name)."""
    return estimator.__name__ if isinstance(estimator, type) else type(estimator).__name__


def validate_estimator(estimator: Any, *, needs: tuple[str, ...] = ("fit",)) -> None:
    """Refuse a class instead of an instance, and an object without the methods in ``needs``
    (``fit``; ``get_params`` too where the estimator is cloned), naming what is missing."""
    name = estimator_name(estimator)
    if isinstance(estimator, type):
        raise PersistUsageError(
            f"{name} is a class, not an instance: pass {name}(...) (an instance, with its "
            "parameters), not the class itself"
        )
    missing = [attr for attr in needs if not callable(getattr(estimator, attr, None))]
    if not missing:
        return
    has = [attr for attr in ("fit", "get_params") if callable(getattr(estimator, attr, None))]
    what = (
        f"has {' and '.join(has)} but no {' or '.join(missing)}"
        if has
        else (f"has no {' or '.join(missing)}")
    )
    why = {
        "fit": "pytest-persist checks estimators: objects with a fit method",
        "get_params": (
            "clone() needs get_params to make the fresh copy it fits (scikit-learn's "
            "BaseEstimator provides it)"
        ),
    }
    reasons = "; ".join(why[attr] for attr in missing)
    raise PersistUsageError(f"{name} is not a scikit-learn estimator: it {what} ({reasons})")


def validate_input(estimator: Any, X: Any, y: Any = None) -> None:
    """Refuse, before any dump, what cannot be round-tripped meaningfully."""
    name = estimator_name(estimator)
    validate_estimator(estimator)
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise PersistUsageError(
            f"{name} is not fitted: call {name}.fit(...) before checking its persistence"
        ) from None
    except Exception:  # not an estimator check_is_fitted understands (no tags, no
        pass  # BaseEstimator: MAPIE 1.x); the methods will tell
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
    """A ``y`` given with X must be array-like, with one row per row of X (else ``score``
    silently drops out)."""
    if y is None:
        return
    if isinstance(y, (str, bytes, dict)) or not (hasattr(y, "__len__") or hasattr(y, "shape")):
        raise PersistUsageError(
            f"y for {name} must be array-like (ndarray, Series, DataFrame or list), not "
            f"{type(y).__name__}: a generator or iterator is used up by the first method "
            "that reads it; pass list(y) or np.asarray(y)"
        )
    n_x, n_y = _n_rows(X), _n_rows(y)
    if n_x is not None and n_y is not None and n_x != n_y:
        raise PersistUsageError(
            f"y has {n_y} rows but X has {n_x} for {name}: give the y that goes with X "
            "(or none), so that score and fit_resample compare the same samples"
        )


def expected_outputs(
    estimator: Any, X: Any, y: Any = None, config: RoundtripConfig | None = None
) -> Expected:
    """Compute the original's outputs once, setting aside methods that fail on it.

    Determinism is checked lazily, by ``compare_loaded``: only a method whose loaded output
    differs is called on the original again.
    """
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
    absent = [m for m in config.extra_methods if not callable(getattr(estimator, m, None))]
    if absent:
        raise PersistUsageError(
            f"{name} has no method {', '.join(absent)} (extra_methods=): name methods it has"
        )
    calls = extra_calls(config.extra_methods, config.functions)
    offered = [*offered, *(m for m in calls if m not in offered)]
    outputs, errors, mutated = compute_outputs_once(estimator, X, y, offered, calls=calls)
    not_compared = {
        method: f"raises on the original estimator too, not a persistence failure: {reason}"
        for method, reason in errors.items()
    }
    if offered and not outputs:
        details = by_reason(errors)
        raise PersistUsageError(f"no prediction method of {name} works on the given X: {details}")
    identical = [m for m, output in outputs.items() if m != "score" and equals_input(X, output)]
    return Expected(
        outputs,
        not_compared,
        input_mutated=mutated,
        identical=identical,
        fingerprint=_fingerprint(estimator),
        calls=calls,
    )


def _fingerprint(estimator: Any) -> dict[str, str] | None:
    """The original's state fingerprint, or None where the walk cannot digest it."""
    try:
        return state_fingerprint(estimator)
    except Exception:  # an exotic object the walk cannot read: no dump-change check
        return None


def recall_original(
    estimator: Any, X: Any, y: Any, method: str, expected: Expected
) -> tuple[Any, str | None]:
    """The original's second answer for ``method`` (computed once, then kept in ``expected``).

    Callers check first that no dump changed the original (``original_changed``); what the
    call itself changes in the original (a counter) is its own business, so the fingerprint
    is taken again after it.
    """
    if method not in expected.again and method not in expected.again_errors:
        source = expected.outputs.get("transform")
        try:
            with np.errstate(all="ignore"):
                expected.again[method] = call_method(
                    estimator, method, X, y, source, expected.calls
                )
        except Exception as exc:
            expected.again_errors[method] = f"{type(exc).__name__}: {exc}"
        if expected.fingerprint is not None:
            expected.fingerprint = _fingerprint(estimator)
    return expected.again.get(method), expected.again_errors.get(method)


def original_changed(
    outcome: Outcome, original: Any, expected: Expected, backend_name: str
) -> bool:
    """Whether the original's fitted state changed since its outputs were computed (a dump
    that changed it: a ``__getstate__`` or ``__reduce__`` that alters the model it saves).

    If so the outcome becomes a ``dump_error`` naming what changed: the outputs it was
    compared with belong to a model that no longer exists, and the original's second
    answers say nothing about its determinism.
    """
    if "original_changed" in outcome.details:
        return True
    if expected.fingerprint is None:
        return False
    now = _fingerprint(original)
    changes = [] if now is None else changed_paths(expected.fingerprint, now)
    if not changes:
        return False
    outcome.kind = OutcomeKind.DUMP_ERROR
    outcome.details["original_changed"] = changes
    outcome.error = (
        f"dumping {outcome.estimator} with {backend_name} changed the original estimator: "
        f"{'; '.join(changes)}. Its outputs were computed before the dump, so what follows "
        "compares the loaded copy with a model that no longer exists; saving must not change "
        "the model saved (look at its __getstate__ / __reduce__)"
    )
    return True


def outputs_to_store(
    estimator: Any, X: Any, y: Any, expected: Expected, outcome: Outcome, config: RoundtripConfig
) -> tuple[dict[str, Any], dict[str, str]]:
    """The expected outputs a saved artifact is checked against later, and what is left out.

    A stored artifact is checked where the original no longer exists, so nothing can be
    called again there: a method is stored only once it answered the same twice here
    (the eager check, paid only when saving), as long as ``check_determinism`` is on.
    """
    not_compared = {**expected.not_compared, **outcome.not_compared}
    outputs = {m: v for m, v in expected.outputs.items() if m not in not_compared}
    for method in expected.calls:  # a stored check calls the standard methods, plainly
        if outputs.pop(method, None) is not None:
            not_compared[method] = (
                "not stored: a stored check calls only the standard methods, without keywords"
            )
    if config.check_determinism:
        if original_changed(outcome, estimator, expected, outcome.backend):
            return {}, not_compared  # a dump_error now: nothing is stored
        for method in list(outputs):
            again, error = recall_original(estimator, X, y, method, expected)
            if error is not None or _exact_differences(method, outputs[method], again):
                del outputs[method]
                not_compared[method] = NONDETERMINISTIC
    return outputs, not_compared


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

    call = BackendCall(X=X, options=dict(config.backend_options), outputs=expected.outputs)
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
    compare_loaded(outcome, loaded, X, y, expected, backend, config, original=estimator)
    if outcome.state_differences and config.state != "ignore":
        original_changed(outcome, estimator, expected, backend.name)  # the dump, not the load?
    state_fails = outcome.state_differences and config.state == "fail"
    if outcome.kind is OutcomeKind.PASSED and state_fails:
        outcome.kind = OutcomeKind.MISMATCH
    note_state_only(outcome, backend, config, estimator)
    note_identity(outcome, expected)
    return outcome


def note_identity(outcome: Outcome, expected: Expected) -> None:
    """A pass whose compared outputs all equal the input X says so in ``details["identity"]``
    (``passed (identity)``; ``--persist-strict`` fails it): it compared a model that did
    nothing to its input, e.g. an encoder that found no column to encode."""
    compared = outcome.compared_methods
    if outcome.kind is not OutcomeKind.PASSED or not compared:
        return
    if all(method in expected.identical for method in compared):
        outcome.details["identity"] = (
            f"identity: every compared output ({', '.join(compared)}) equals the input X, "
            f"so the round trip showed nothing about what {outcome.estimator} computes; give "
            "it data it changes (an encoder: categorical columns)"
        )


def note_state_only(
    outcome: Outcome, backend: Backend, config: RoundtripConfig, estimator: Any = None
) -> None:
    """A pass that compared no method says so in ``details["state_only"]`` (never a plain pass
    that compared nothing; ``--persist-strict`` fails it)."""
    if outcome.kind is not OutcomeKind.PASSED or outcome.compared_methods:
        return
    why = by_reason(outcome.not_compared)
    why = why or nothing_to_call(outcome.estimator, estimator)
    if backend.preserves_objects and config.state != "ignore":
        outcome.details["state_only"] = (
            f"state only: no method compared ({why}); only the fitted state was checked"
        )
    else:
        outcome.details["state_only"] = (
            f"nothing compared: no method compared ({why}) and the {backend.name} model's "
            "fitted state is not checked"
        )


def nothing_to_call(name: str, estimator: Any) -> str:
    """Why an estimator offered no method to compare: a sampler without y, a clusterer or
    transformer whose only calls refit it (``fit_predict``, ``fit_transform``), or nothing."""
    if callable(getattr(estimator, "fit_resample", None)):
        return f"{name} has no prediction method, and its fit_resample is compared only with y"
    refits = [m for m in ("fit_predict", "fit_transform") if callable(getattr(estimator, m, None))]
    if refits:
        verb, pronoun = ("fit", "they say") if len(refits) > 1 else ("fits", "it says")
        return (
            f"{name} has no prediction method: {' and '.join(refits)} {verb} it again, so "
            f"{pronoun} nothing about the fitted model (what it learnt, labels_ included, is "
            "in the fitted state)"
        )
    return f"{name} has no prediction method"


def compare_loaded(
    outcome: Outcome,
    loaded: Any,
    X: Any,
    y: Any,
    expected: Expected,
    backend: Backend,
    config: RoundtripConfig,
    original: Any = None,
) -> None:
    """Call the expected methods on ``loaded`` and record errors and differences in ``outcome``.

    With ``original`` (and ``config.check_determinism``), a method whose output differs is
    called on the original again before the difference is reported (``settle_differences``).
    """
    standard = available_methods(loaded, with_y=y is not None)
    offered = [m for m in expected.outputs if _provides(loaded, m, standard, expected, backend)]
    for method in expected.outputs:
        if method not in offered:
            outcome.not_compared[method] = f"the {backend.name} model does not provide it"
    if expected.calls:
        outcome.details["extra_calls"] = {
            m: _describe_call(m, call, config) for m, call in expected.calls.items()
        }
    transformed = expected.outputs.get("transform")
    calls = expected.calls
    if expected.input_mutated:
        actual, errors = compute_outputs(
            loaded, X, y, offered, transformed=transformed, calls=calls
        )
    else:
        actual, errors, _ = compute_outputs_once(
            loaded, X, y, offered, transformed=transformed, calls=calls
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
    if original is not None and config.check_determinism:
        settle_differences(outcome, original, X, y, expected, actual)
    if outcome.kind is OutcomeKind.PASSED and any(not d.tolerated for d in outcome.differences):
        outcome.kind = OutcomeKind.MISMATCH


def _provides(
    loaded: Any, method: str, standard: list[str], expected: Expected, backend: Backend
) -> bool:
    """Whether the loaded model can answer ``method`` as the original did: an extra method or
    function needs the model itself (not an ONNX session), a method its attribute."""
    call = expected.calls.get(method)
    if call is None:
        return method in standard
    if not backend.preserves_objects:  # a converted model: no keywords, no functions of it
        return False
    return is_function_call(call) or callable(getattr(loaded, method, None))


def _describe_call(method: str, call: Any, config: RoundtripConfig) -> str:
    """``predict_interval(X, alpha=0.1)`` or ``hdbscan.prediction.approximate_predict(model,
    X)``: how an extra call was made, for the outcome's details."""
    if is_function_call(call):
        function, keywords = config.functions[method]
        module = getattr(function, "__module__", "") or ""
        qualname = getattr(function, "__qualname__", repr(function))
        shown = f"{module}.{qualname}" if module else qualname
        arguments = ["model", "X", *(f"{k}={v!r}" for k, v in keywords.items())]
    else:
        shown, keywords = method, config.extra_methods.get(method, {})
        arguments = ["X", *(f"{k}={v!r}" for k, v in keywords.items())]
    return f"{shown}({', '.join(arguments)})"


def settle_differences(
    outcome: Outcome, original: Any, X: Any, y: Any, expected: Expected, actual: dict[str, Any]
) -> None:
    """The lazy determinism check, for each method whose loaded output differs.

    The original's method is called again. If its second answer equals its first (bitwise),
    the difference stands. Otherwise the method is nondeterministic, and the loaded output is
    judged against the original's own spread: for every part of the output, the spread is
    how far the two answers are apart (largest absolute difference for numbers, fraction of
    differing elements for labels), and the loaded output's distance is how far it is from
    the nearer of the two answers. If some part's distance exceeds ``CHANGED_BEYOND_SPREAD``
    times its spread, the loaded copy changed too: the difference stands, saying both.
    Otherwise the method is not compared (``nondeterministic``), not a failure.

    First, though, the original must be unchanged since its outputs were computed: a dump
    that changed it makes every method look nondeterministic, and is a failure of its own
    (``original_changed``), with the differences as they are.
    """
    failing = list(dict.fromkeys(d.method for d in outcome.differences if not d.tolerated))
    if failing and original_changed(outcome, original, expected, outcome.backend):
        return
    for method in failing:
        first, got = expected.outputs[method], actual[method]
        again, error = recall_original(original, X, y, method, expected)
        if error is not None:
            verdict = f"{NONDETERMINISTIC} (the second call raised {error})"
            _set_aside(outcome, method, verdict)
            continue
        spread = _exact_differences(method, first, again)
        if not spread:
            continue  # the original answers the same twice: the mismatch stands
        spreads = _sizes(spread)
        nearer = {
            path: min(size_first, _sizes(_exact_differences(method, again, got)).get(path, 0.0))
            for path, size_first in _sizes(_exact_differences(method, first, got)).items()
        }
        beyond = {
            path: distance
            for path, distance in nearer.items()
            if distance > CHANGED_BEYOND_SPREAD * spreads.get(path, 0.0)
        }
        if not beyond:
            _set_aside(
                outcome,
                method,
                f"{NONDETERMINISTIC}; the loaded copy's output is within their spread",
            )
            continue
        path, distance = max(beyond.items(), key=lambda item: item[1])
        note = (
            f" [the original is nondeterministic too: its two answers differ by "
            f"{_size_text(spreads.get(path, 0.0))}, but the loaded output is "
            f"{_size_text(distance)} from the nearer of them at {method}{path}, more than "
            f"{CHANGED_BEYOND_SPREAD:g}x that spread: it changed too]"
        )
        for difference in outcome.differences:
            if difference.method == method:
                difference.message += note


def _set_aside(outcome: Outcome, method: str, reason: str) -> None:
    outcome.differences = [d for d in outcome.differences if d.method != method]
    outcome.compared_methods = [m for m in outcome.compared_methods if m != method]
    outcome.not_compared[method] = reason


def _exact_differences(method: str, want: Any, got: Any) -> list[Difference]:
    return compare_outputs({method: want}, {method: got}, rtol=0.0, atol=0.0, exact=True)


def _sizes(differences: list[Difference]) -> dict[str, float]:
    """How large each part's difference is: the largest absolute difference for numbers, the
    fraction of differing elements for labels, infinite for a changed shape, type or dtype."""
    sizes: dict[str, float] = {}
    for difference in differences:
        if difference.max_abs is not None and not math.isnan(difference.max_abs):
            size = difference.max_abs
        elif difference.n_different is not None and difference.n_total:
            size = difference.n_different / difference.n_total
        else:
            size = math.inf
        sizes[difference.path] = max(size, sizes.get(difference.path, 0.0))
    return sizes


def _size_text(size: float) -> str:
    return "nothing" if size == 0 else f"{size:.3g}"


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
    where = f"check_persistence({estimator_name(estimator)})"
    if backends is not None and not list(backends):
        raise PersistUsageError(f"{where}: backends=[] names no backend; leave it out for all")
    names = registry.select(backends, exclude)
    no_backend_left(names, exclude, where)
    config = config_from_options(options, where=where)
    validate_input(estimator, X, y)
    expected = expected_outputs(estimator, X, y, config)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="pytest-persist-") as workdir:
        suffixes: set[str] = set()
        for name in names:
            # One folder for all the artifacts, a subfolder only where two backends write the
            # same suffix (joblib, joblib-mmap): never overwrite a file a loaded model maps.
            backend_dir = Path(workdir)
            if registry[name].suffix in suffixes:
                backend_dir = backend_dir / name
                backend_dir.mkdir()
            suffixes.add(registry[name].suffix)
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


_VERSIONS: dict[tuple[type, str], dict[str, str]] = {}


def _versions(backend: Backend) -> dict[str, str]:
    """Python, scikit-learn, numpy and the backend's libraries; looked up once per backend
    (package metadata does not change within a process), a fresh dict for every outcome."""
    key = (type(backend), backend.name)
    if key not in _VERSIONS:
        import platform

        import numpy
        import sklearn

        versions = {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": numpy.__version__,
        }
        versions.update(backend.library_versions())
        _VERSIONS[key] = versions
    return dict(_VERSIONS[key])
