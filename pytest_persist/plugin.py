"""pytest hooks and thin fixtures; the logic lives in the pytest-free modules.

pytest imports this module for every run wherever the plugin is installed, so it imports
nothing that imports numpy: the round-trip modules are imported by the hooks that use them,
after ``pytest_load_initial_conftests`` has started the fork loader for ``--persist-load``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from .options import add_options, enabled_backends, session_defaults
from .results.outcome import Outcome
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
    add_options(parser)


def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # The earliest hook with the command line parsed: the fork loader imports scikit-learn
    # while conftests load and the session configures (0.1 s sooner than at configure).
    start_loader(early_config, early_config.known_args_namespace)


def pytest_configure(config: pytest.Config) -> None:
    start_loader(config)  # an xdist worker looks like its controller until configure
    from .backends import BackendRegistry
    from .roundtrip.settings import KEYWORDS
    from .runner import SessionSettings

    config.addinivalue_line(
        "markers",
        f"{MARKER}({', '.join(f'{k}=...' for k in KEYWORDS)}): run the test once per "
        "persistence backend; the persist_roundtrip fixture dumps, loads and compares.",
    )
    registry = BackendRegistry()
    config.hook.pytest_persist_add_backends(registry=registry)
    enabled = enabled_backends(config, registry)
    strict = config.getoption("persist_strict")
    config.stash[SETTINGS_KEY] = SessionSettings(
        registry=registry,
        enabled=enabled,
        strict=bool(config.getini("persist_strict") if strict is None else strict),
        defaults=session_defaults(config),
    )
    config.stash[STORE_SETTINGS_KEY] = store_settings(
        config, registry, config.stash[SETTINGS_KEY].defaults
    )
    preload_store_backends(config)
    config.pluginmanager.register(PersistReporter(config), "pytest-persist-reporter")
    if "onnx" in registry and registry["onnx"].is_available():
        from .backends.onnx_runtime import register_onnx_converter

        config.hook.pytest_persist_register_onnx_converters(register=register_onnx_converter)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from .checks import recorded_checks
    from .runner import marker_params, persistence_params

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
    params = marker_params(marker, metafunc.config.stash[SETTINGS_KEY], where)
    metafunc.parametrize("persist_backend", params)


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


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outermost: sees the report as xfail left it
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    result = yield
    # a usage error in the persist_roundtrip fixture fails setup, and the call never runs
    report = result.get_result()
    if call.when == "call" or (call.when == "setup" and report.failed):
        records = records_of(item, item.stash.get(OUTCOMES_KEY, []), report)
        if records:  # plain data on the report, so it reaches the xdist controller
            setattr(report, REPORT_ATTRIBUTE, records)


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
    from .runner import PersistRoundtrip, UsageProblem, fail_usage

    if isinstance(persist_backend, UsageProblem):
        record = request.node.stash.setdefault(OUTCOMES_KEY, [])
        fail_usage(persist_backend, record=record, test_id=request.node.nodeid)
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
