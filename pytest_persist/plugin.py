"""pytest hooks and thin fixtures; the logic lives in the pytest-free modules.

pytest imports this module for every run wherever the plugin is installed, so it imports
nothing that imports numpy: the round-trip modules are imported by the hooks that use them,
after ``pytest_load_initial_conftests`` has started the fork loader for ``--persist-load``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from .outcome import Outcome
from .store_items import (
    REPORT_ATTRIBUTE,
    STORE_SETTINGS_KEY,
    PersistReporter,
    RoundtripSaver,
    StoredEntryItem,
    add_store_items,
    preload_store_backends,
    records_of,
    start_loader,
    store_settings,
)

if TYPE_CHECKING:
    from .runner import PersistRoundtrip

MARKER = "persist_roundtrip"
SETTINGS_KEY = pytest.StashKey["SessionSettings"]()
OUTCOMES_KEY = pytest.StashKey[list[Outcome]]()
EXTRA_KEY = pytest.StashKey[dict[str, Any]]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("persist", "model persistence (pytest-persist)")
    group.addoption(
        "--persist-backends",
        metavar="NAMES",
        help="comma-separated backends to run (default: every registered backend; "
        "ini: persist_backends)",
    )
    group.addoption(
        "--persist-strict",
        action="store_true",
        default=None,
        help="fail, rather than skip, when a backend cannot handle an estimator "
        "(ini: persist_strict)",
    )
    group.addoption(
        "--persist-trusted",
        metavar="TYPES",
        help="comma-separated types skops may load; needing any other fails the test "
        "(ini: persist_trusted; the marker's trusted= wins)",
    )
    group.addoption(
        "--persist-max-label-flips",
        metavar="FRACTION",
        type=float,
        help="fraction of labels allowed to flip, e.g. under ONNX float32 (default 0; "
        "ini: persist_max_label_flips)",
    )
    group.addoption(
        "--persist-save",
        metavar="DIR",
        help="also store every passed round trip in DIR (artifact, X, expected outputs, "
        "environment, checksums) to check it later, elsewhere, with --persist-load",
    )
    group.addoption(
        "--persist-load",
        metavar="DIR",
        help="check every artifact stored in DIR in this environment, each as its own test "
        "(loaded in an isolated child process; select them alone with -k persist_load)",
    )
    group.addoption(
        "--persist-version-warning",
        choices=("record", "error"),
        default=None,
        help="scikit-learn version warnings while loading: record them beside the outcome "
        "(default) or fail at the first one (ini: persist_version_warning)",
    )
    group.addoption(
        "--persist-load-timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help="give up on a stored artifact whose load and predictions take longer "
        "(default 120; ini: persist_load_timeout)",
    )
    group.addoption(
        "--persist-load-isolation",
        choices=("fork", "process"),
        default=None,
        help="how each stored artifact is isolated: a forked child of a warm loader that "
        "imported scikit-learn once (default, Linux), or a fresh interpreter each "
        "(ini: persist_load_isolation)",
    )
    group.addoption(
        "--persist-load-max-memory",
        metavar="SIZE",
        default=None,
        help="memory one stored artifact's check may allocate, e.g. 2GiB, 512MB, none "
        "(default 4GiB; ini: persist_load_max_memory)",
    )
    group.addoption(
        "--persist-key-file",
        metavar="FILE",
        help="sign saved entries with the key in FILE (default: $PYTEST_PERSIST_KEY, else a "
        "per-user key created on first save; ini: persist_key_file)",
    )
    group.addoption(
        "--persist-trust-key",
        metavar="FILE",
        action="append",
        default=None,
        help="also trust entries signed with the key in FILE, e.g. a CI secret (repeatable; "
        "ini: persist_trust_keys)",
    )
    group.addoption(
        "--persist-trust-unsigned",
        action="store_true",
        default=False,
        help="unpickle stored entries not signed by a trusted key anyway (each is reported)",
    )
    group.addoption(
        "--persist-report", metavar="FILE.json", help="write a JSON report of every record"
    )
    group.addoption(
        "--persist-report-md",
        metavar="FILE.md",
        help="write a markdown report (for a CI job summary, e.g. $GITHUB_STEP_SUMMARY)",
    )
    parser.addini("persist_backends", "backends to run (names, comma or space separated)")
    parser.addini("persist_strict", "fail when a backend cannot handle an estimator", "bool")
    parser.addini("persist_trusted", "types skops may load (names, comma or space separated)")
    parser.addini("persist_max_label_flips", "fraction of labels allowed to flip (default 0)")
    parser.addini("persist_version_warning", "record | error (see --persist-version-warning)")
    parser.addini("persist_load_timeout", "seconds allowed per stored artifact (default 120)")
    parser.addini("persist_load_isolation", "fork | process (see --persist-load-isolation)")
    parser.addini("persist_load_max_memory", "memory per stored artifact's check (default 4GiB)")
    parser.addini("persist_key_file", "key file saved entries are signed with")
    parser.addini("persist_trust_keys", "key files whose signatures are trusted", "paths")


def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # The earliest hook with the command line parsed: the fork loader imports scikit-learn
    # while conftests load and the session configures (0.1 s sooner than at configure).
    start_loader(early_config, early_config.known_args_namespace)


def pytest_configure(config: pytest.Config) -> None:
    start_loader(config)  # an xdist worker looks like its controller until configure
    from .backends import BackendRegistry
    from .runner import SessionSettings
    from .settings import KEYWORDS, parse_name_list

    config.addinivalue_line(
        "markers",
        f"{MARKER}({', '.join(f'{k}=...' for k in KEYWORDS)}): run the test once per "
        "persistence backend; the persist_roundtrip fixture dumps, loads and compares.",
    )
    registry = BackendRegistry()
    config.hook.pytest_persist_add_backends(registry=registry)
    chosen = config.getoption("persist_backends") or config.getini("persist_backends")
    try:
        enabled = registry.select(parse_name_list(chosen) if chosen else None)
    except ValueError as exc:
        raise pytest.UsageError(f"--persist-backends / persist_backends: {exc}") from None
    strict = config.getoption("persist_strict")
    config.stash[SETTINGS_KEY] = SessionSettings(
        registry=registry,
        enabled=enabled,
        strict=bool(config.getini("persist_strict") if strict is None else strict),
        defaults=_session_defaults(config),
    )
    config.stash[STORE_SETTINGS_KEY] = store_settings(
        config, registry, config.stash[SETTINGS_KEY].defaults
    )
    preload_store_backends(config)
    config.pluginmanager.register(PersistReporter(config), "pytest-persist-reporter")
    if "onnx" in registry and registry["onnx"].is_available():
        from .backends.onnx_runtime import register_onnx_converter

        config.hook.pytest_persist_register_onnx_converters(register=register_onnx_converter)


def _session_defaults(config: pytest.Config) -> dict[str, Any]:
    """Marker keywords whose defaults the command line or ini set for the whole session."""
    from .roundtrip import PersistUsageError
    from .settings import build_request, parse_name_list

    defaults: dict[str, Any] = {}
    trusted = config.getoption("persist_trusted") or config.getini("persist_trusted")
    if trusted:
        defaults["trusted"] = parse_name_list(trusted)
    flips = config.getoption("persist_max_label_flips")
    if flips is None and config.getini("persist_max_label_flips"):
        try:
            flips = float(config.getini("persist_max_label_flips"))
        except ValueError:
            raise pytest.UsageError(
                "persist_max_label_flips must be a number, got "
                f"{config.getini('persist_max_label_flips')!r}"
            ) from None
    if flips is not None:
        defaults["max_label_flips"] = flips
    try:
        build_request({}, where="pytest-persist options", defaults=defaults)
    except PersistUsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    return defaults


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from .checks import recorded_checks
    from .runner import persistence_params
    from .settings import build_request

    checks = recorded_checks(metafunc.function, metafunc.cls)
    if checks is not None:  # @parametrize_with_persistence(...): (estimator, check) items
        where = f"parametrize_with_persistence on {metafunc.definition.nodeid}"
        settings = metafunc.config.stash[SETTINGS_KEY]
        params = persistence_params(checks, settings, where)
        metafunc.parametrize("estimator, check", params)
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        return
    if "persist_roundtrip" not in metafunc.fixturenames:
        return  # nothing to parametrize; pytest_runtest_setup says what is missing
    where = f"@pytest.mark.{MARKER} on {metafunc.definition.nodeid}"
    problem = _marker_problem(metafunc, marker, where)
    if problem is not None:  # fail this test alone, clearly, and let the others run
        metafunc.parametrize("persist_backend", [pytest.param(problem, id="usage-error")])
        return
    settings = metafunc.config.stash[SETTINGS_KEY]
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
    metafunc.parametrize("persist_backend", params)


class UsageProblem(str):
    """A marker that cannot be honoured; the item fails with this message."""


def _marker_problem(metafunc: pytest.Metafunc, marker: pytest.Mark, where: str) -> str | None:
    from .roundtrip import PersistUsageError
    from .settings import build_request

    if marker.args:
        return UsageProblem(f"{where}: takes keyword arguments only, got {marker.args!r}")
    settings = metafunc.config.stash[SETTINGS_KEY]
    try:
        request = build_request(dict(marker.kwargs), where=where)
        settings.registry.select(
            request.backends, request.exclude, also_known=request.named_backends
        )
    except PersistUsageError as exc:
        return UsageProblem(str(exc))
    except ValueError as exc:
        return UsageProblem(f"{where}: {exc}")
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER) and "persist_roundtrip" not in getattr(
        item, "fixturenames", ()
    ):
        pytest.fail(
            f"pytest-persist usage error: @pytest.mark.{MARKER} on {item.nodeid}: "
            "the test must request the persist_roundtrip fixture",
            pytrace=False,
        )


@pytest.hookimpl(tryfirst=True)  # before -k / --deselect filter the items
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    load_dir = config.stash[STORE_SETTINGS_KEY].load_dir
    if load_dir is not None:
        add_store_items(session, items, load_dir)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Tell a stored-entry item which item follows, so it can start that one's check."""
    if isinstance(item, StoredEntryItem):
        item.next_item = nextitem


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> None:
    """Bind a ``parametrize_with_persistence`` check to its item (outcomes, --persist-save)."""
    from .runner import PendingCheck

    pending = getattr(pyfuncitem, "funcargs", {}).get("check")
    if isinstance(pending, PendingCheck):
        store = pyfuncitem.config.stash[STORE_SETTINGS_KEY]
        saver = None
        if store.save_dir is not None:
            saver = RoundtripSaver(store, pyfuncitem, pyfuncitem.stash.setdefault(EXTRA_KEY, {}))
        pyfuncitem.funcargs["check"] = pending.bind(
            settings=pyfuncitem.config.stash[SETTINGS_KEY],
            test_id=pyfuncitem.nodeid,
            record=pyfuncitem.stash.setdefault(OUTCOMES_KEY, []),
            saver=saver,
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    result = yield
    if call.when == "call":
        records = records_of(item, item.stash.get(OUTCOMES_KEY, []))
        if records:  # plain data on the report, so it reaches the xdist controller
            setattr(result.get_result(), REPORT_ATTRIBUTE, records)


@pytest.fixture
def persist_extra(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict stored with this test's artifacts by ``--persist-save`` (a score, a data
    reference...); fill it before calling ``persist_roundtrip``."""
    return request.node.stash.setdefault(EXTRA_KEY, {})


@pytest.fixture
def persist_backend() -> str | None:
    """The backend this item round-trips through (None without the marker: all of them)."""
    return None


@pytest.fixture
def persist_roundtrip(
    request: pytest.FixtureRequest, persist_backend: str | None, tmp_path: Any
) -> PersistRoundtrip:
    """Callable ``persist_roundtrip(estimator, X, y=None, **keywords)``; see the README."""
    from .runner import PersistRoundtrip

    if isinstance(persist_backend, UsageProblem):
        pytest.fail(f"pytest-persist usage error: {persist_backend}", pytrace=False)
    marker = request.node.get_closest_marker(MARKER)
    subtests = None
    if persist_backend is None:
        try:
            subtests = request.getfixturevalue("subtests")
        except pytest.FixtureLookupError:
            subtests = None
    store_settings = request.config.stash[STORE_SETTINGS_KEY]
    saver = None
    if store_settings.save_dir is not None:
        extra = request.node.stash.setdefault(EXTRA_KEY, {})
        saver = RoundtripSaver(store_settings, request.node, extra)
    return PersistRoundtrip(
        settings=request.config.stash[SETTINGS_KEY],
        backend_name=persist_backend,
        marker_keywords=dict(marker.kwargs) if marker else {},
        workdir=tmp_path / "persist",
        test_id=request.node.nodeid,
        record=request.node.stash.setdefault(OUTCOMES_KEY, []),
        subtests=subtests,
        saver=saver,
    )
