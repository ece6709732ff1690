"""The pytest side of the store: saving round trips (``--persist-save``), one test item per
stored entry (``--persist-load``), and the records that feed the summary and the reports.

Everything that decides anything lives in ``store``, ``isolation`` and ``results``; this
module only turns their results into pytest results.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .isolation.check import DEFAULT_TIMEOUT, PendingCheck, start_check, store_preload
from .isolation.loader import (
    CORE_PRELOAD,
    DEFAULT_MAX_MEMORY,
    ISOLATIONS,
    ForkLoader,
    default_loader,
    parse_size,
    stop_default_loaders,
)
from .results.outcome import Outcome, OutcomeKind
from .results.report import Record, loaded_unsigned
from .store.entries import (
    StoredEntry,
    StoreError,
    clean_temporary,
    entry_dirs,
    entry_name,
    read_entry,
    save_entry,
)
from .store.public_key import PrivateSigningKey
from .store.signing import SigningKey, SigningKeyError, TrustPolicy, own_key

STORE_SETTINGS_KEY = pytest.StashKey["StoreSettings"]()
#: The outcome of a stored-entry item, read by the report hooks.
CHECK_OUTCOMES_KEY = pytest.StashKey[list[Outcome]]()
#: A stored-entry item's check, started while the item before it ran.
PENDING_CHECK_KEY = pytest.StashKey[PendingCheck]()
#: Attribute of a ``TestReport`` that carries records (JSON-able, so it survives xdist).
REPORT_ATTRIBUTE = "persist_records"
COLLECTOR_NAME = "persist_load"


@dataclass
class StoreSettings:
    """What ``--persist-save/-load/-version-warning/-report*`` chose for the session."""

    save_dir: Path | None = None
    load_dir: Path | None = None
    version_warning: str = "record"
    timeout: float = DEFAULT_TIMEOUT
    isolation: str = "fork"  # or "process": one interpreter per artifact
    max_memory: int | None = DEFAULT_MAX_MEMORY  # bytes per check; None: no limit
    report_json: Path | None = None
    report_md: Path | None = None
    registry: Any = None
    max_label_flips: float | None = None  # None: what the saving test allowed
    trusted: list[str] | None = None  # this environment's skops allowlist, if any
    signing_key: SigningKey | PrivateSigningKey | None = None  # what --persist-save signs with
    trust: TrustPolicy | None = None  # what --persist-load trusts
    environment: dict[str, str] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    #: The entries of ``load_dir`` as read at configure (or why one could not be read).
    entries: dict[Path, StoredEntry | StoreError] = field(default_factory=dict)
    #: Checks started ahead of their item (discarded at session end if it never ran).
    started_ahead: list[PendingCheck] = field(default_factory=list)

    def read(self, directory: Path) -> StoredEntry | StoreError:
        """The entry in ``directory`` (read once per session), or why it cannot be read."""
        if directory not in self.entries:
            try:
                self.entries[directory] = read_entry(directory)
            except StoreError as exc:
                self.entries[directory] = exc
        return self.entries[directory]


def store_settings(
    config: pytest.Config, registry: Any, defaults: dict[str, Any] | None = None
) -> StoreSettings:
    """Read and check the store and report options (command line wins over ini).

    ``defaults`` are the session-wide keywords (``--persist-trusted``,
    ``--persist-max-label-flips``); they apply to stored artifacts checked here too.
    """
    from .environments.fingerprint import environment_fingerprint
    from .environments.version_warnings import VERSION_WARNING_MODES

    def path(option: str) -> Path | None:
        value = config.getoption(option)
        if value is not None and not str(value).strip():
            flag = "--" + option.replace("_", "-")
            raise pytest.UsageError(f"{flag}= needs a path (it was given an empty one)")
        return Path(value).expanduser().resolve() if value else None

    mode = config.getoption("persist_version_warning") or config.getini("persist_version_warning")
    if (mode or "record") not in VERSION_WARNING_MODES:
        raise pytest.UsageError(
            f"persist_version_warning = {mode!r}: choose {' or '.join(VERSION_WARNING_MODES)}"
        )
    timeout = _timeout_option(config)
    isolation = _isolation_option(config)
    if isolation not in ISOLATIONS:
        raise pytest.UsageError(
            f"persist_load_isolation = {isolation!r}: choose {' or '.join(ISOLATIONS)}"
        )
    memory, memory_option = config.getoption("persist_load_max_memory"), "--persist-load-max-memory"
    if memory is None:
        memory, memory_option = config.getini("persist_load_max_memory"), "persist_load_max_memory"
    try:
        max_memory = parse_size(memory) if memory else DEFAULT_MAX_MEMORY
    except ValueError as exc:
        raise pytest.UsageError(f"{memory_option}: {exc}") from None
    settings = StoreSettings(
        save_dir=path("persist_save"),
        load_dir=path("persist_load"),
        version_warning=mode or "record",
        timeout=timeout,
        isolation=isolation,
        max_memory=max_memory,
        report_json=path("persist_report"),
        report_md=path("persist_report_md"),
        registry=registry,
        max_label_flips=(defaults or {}).get("max_label_flips"),
        trusted=(defaults or {}).get("trusted"),
    )
    if settings.save_dir is not None or settings.report_json is not None:
        settings.environment = environment_fingerprint()
    if settings.load_dir is not None:
        try:
            entry_dirs(settings.load_dir)
        except StoreError as exc:
            raise pytest.UsageError(f"--persist-load: {exc}") from None
        if not hasattr(config, "workerinput"):
            clean_temporary(settings.load_dir)  # what killed writers left; see clean_temporary
    if settings.save_dir is not None:
        _check_save_dir(settings.save_dir)
        if not hasattr(config, "workerinput"):
            clean_temporary(settings.save_dir)
    for option, report in (
        ("--persist-report", settings.report_json),
        ("--persist-report-md", settings.report_md),
    ):
        if report is not None:
            _check_report_path(option, report)
    _read_keys(config, settings)
    return settings


def _timeout_option(config: pytest.Config) -> float:
    """``--persist-load-timeout`` / ``persist_load_timeout``: positive, finite seconds."""
    value, name = config.getoption("persist_load_timeout"), "--persist-load-timeout"
    if value is None:
        value, name = config.getini("persist_load_timeout") or None, "persist_load_timeout"
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise pytest.UsageError(
            f"{name}={value!r}: a positive, finite number of seconds per stored artifact "
            f"(default {DEFAULT_TIMEOUT:g})"
        )
    return seconds


def _check_save_dir(save_dir: Path) -> None:
    """Say once, before any test runs, that ``--persist-save`` cannot write where it is
    pointed (a file, an unwritable folder), not once per test."""
    if save_dir.exists() and not save_dir.is_dir():
        raise pytest.UsageError(f"--persist-save: {save_dir} is a file, not a store directory")
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=save_dir):
            pass
    except OSError as exc:
        raise pytest.UsageError(
            f"--persist-save: cannot write into {save_dir} ({exc.strerror or exc}); "
            "choose a folder you can write to"
        ) from None


def _check_report_path(option: str, report: Path) -> None:
    """A report path that cannot work is a usage error before the session, not a crash after
    it: a folder, or a file in a folder that cannot be made or written."""
    if report.is_dir():
        raise pytest.UsageError(f"{option}: {report} is a directory; give a file path")
    folder = report.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise pytest.UsageError(
            f"{option}: cannot create the folder {folder} for {report} ({exc.strerror or exc})"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"{option}: cannot write into {folder} (for {report})")


def _read_keys(config: pytest.Config, settings: StoreSettings) -> None:
    """The signing key (saving) and the trusted keys (loading); a key that cannot be used is
    a usage error naming it, before anything is saved or loaded."""
    key_file = config.getoption("persist_key_file")
    if not key_file and config.getini("persist_key_file"):  # relative to the ini file
        base = config.inipath.parent if config.inipath else config.rootpath
        key_file = str(base / Path(config.getini("persist_key_file")).expanduser())
    key_file = str(Path(key_file).expanduser()) if key_file else None
    trust_files = list(config.getoption("persist_trust_key") or [])
    if not trust_files:
        trust_files = [str(Path(p).expanduser()) for p in config.getini("persist_trust_keys")]
    try:
        if settings.save_dir is not None:
            settings.signing_key = own_key(key_file, create=True)
        if settings.load_dir is not None:
            settings.trust = TrustPolicy.from_options(
                key_file=key_file,
                trust_key_files=trust_files,
                allow_unsigned=bool(config.getoption("persist_trust_unsigned")),
            )
    except SigningKeyError as exc:
        raise pytest.UsageError(
            f"pytest-persist signing key (--persist-key-file / --persist-trust-key / "
            f"PYTEST_PERSIST_KEY): {exc}"
        ) from None


# ----------------------------------------------------------------------------------------------
# saving


class RoundtripSaver:
    """Called by the round-trip runner after each passed round trip when ``--persist-save``."""

    def __init__(self, settings: StoreSettings, node: pytest.Item, extra: dict[str, Any]) -> None:
        self.settings = settings
        self.node = node
        self.extra = extra
        self._source: str | None = None

    def __call__(
        self,
        outcome: Outcome,
        *,
        estimator: Any,
        X: Any,
        y: Any,
        expected_outputs: dict[str, Any],
        not_compared: dict[str, str],
        artifact: Path,
        backend_options: dict[str, Any],
        call_index: int,
    ) -> None:
        __tracebackhide__ = True
        assert self.settings.save_dir is not None
        test_id = self.node.nodeid if call_index <= 1 else f"{self.node.nodeid}#{call_index}"
        # One test id runs in one process at a time, so nobody else publishes this entry now.
        replaced = (self.settings.save_dir / entry_name(test_id, outcome.backend)).is_dir()
        untrusted = outcome.details.get("untrusted_types")
        try:
            path = save_entry(
                self.settings.save_dir,
                test_id=test_id,
                backend_name=outcome.backend,
                estimator=estimator,
                artifact_path=artifact,
                X=X,
                y=y,
                expected_outputs=expected_outputs,
                not_compared=not_compared,
                environment=self.settings.environment,
                test_source=self.test_source(),
                extra=dict(self.extra) or None,
                backend_options=backend_options,
                comparison=outcome.comparison,
                untrusted_types=untrusted if isinstance(untrusted, list) else None,
                outcome={"kind": outcome.kind.value, "compared_methods": outcome.compared_methods},
                key=self.settings.signing_key,
            )
        except (StoreError, TypeError, ValueError, OSError) as exc:
            pytest.fail(
                f"pytest-persist could not save {outcome.estimator} via {outcome.backend} into "
                f"{self.settings.save_dir} (--persist-save): {exc}",
                pytrace=False,
            )
        outcome.details["saved_to"] = str(path)
        outcome.details["replaced"] = replaced

    def test_source(self) -> str | None:
        if self._source is None:
            function = getattr(self.node, "function", None)
            try:
                self._source = inspect.getsource(function) if function is not None else ""
            except (OSError, TypeError):
                self._source = ""
        return self._source or None


# ----------------------------------------------------------------------------------------------
# checking


def start_loader(config: pytest.Config, options: argparse.Namespace | None = None) -> None:
    """Start this process's fork loader as early as possible when ``--persist-load`` has
    entries to check, so that it imports numpy, scipy and scikit-learn while this process
    loads its conftests, builds its settings and collects (:func:`preload_store_backends`
    adds what the store needs: scikit-learn subpackages and backends). ``options`` are the
    parsed options, default ``config.option``; ``pytest_load_initial_conftests`` passes the
    early ones, and configure calls this again (a started loader is left as it is).

    Not on the xdist controller (each worker starts its own; a worker looks like one before
    configure, so it starts there), not for ``--collect-only``, and not when the options are
    wrong (``store_settings`` says so next).
    """
    options = config.option if options is None else options
    load = getattr(options, "persist_load", None)
    isolation = _isolation_option(config, options)
    if not load or _no_loader_here(config, options) or isolation not in ISOLATIONS:
        return
    try:
        if not entry_dirs(Path(load).resolve()):
            return
    except StoreError:
        return
    loader = default_loader(isolation)
    if isinstance(loader, ForkLoader):
        loader.start(preload=CORE_PRELOAD)


def preload_store_backends(config: pytest.Config) -> None:
    """Have the fork loader also import the scikit-learn subpackages and the backends the
    store's entries use (``isolation.check.store_preload``: skops.io alone takes 0.3-0.9 s to
    import, all the subpackages together 0.3 s); the entries read here are kept for the
    collector."""
    settings: StoreSettings = config.stash[STORE_SETTINGS_KEY]
    if settings.load_dir is None or _no_loader_here(config):
        return
    loader = default_loader(settings.isolation)
    if not isinstance(loader, ForkLoader):
        return
    entries = [settings.read(directory) for directory in entry_dirs(settings.load_dir)]
    readable = [entry for entry in entries if isinstance(entry, StoredEntry)]
    loader.also_import(store_preload(readable, settings.registry))


def _isolation_option(config: pytest.Config, options: argparse.Namespace | None = None) -> str:
    """``--persist-load-isolation`` (the command line wins over the ini; default ``fork``)."""
    options = config.option if options is None else options
    return (
        getattr(options, "persist_load_isolation", None)
        or config.getini("persist_load_isolation")
        or "fork"
    )


def _no_loader_here(config: pytest.Config, options: argparse.Namespace | None = None) -> bool:
    """``--collect-only``, ``--help``, ``--version``, or the xdist controller
    (``xdist.is_xdist_controller``'s test)."""
    options = config.option if options is None else options
    controller = not hasattr(config, "workerinput") and getattr(options, "dist", "no") != "no"
    no_run = any(getattr(options, name, False) for name in ("collectonly", "help", "version"))
    return no_run or controller


def add_store_items(session: pytest.Session, items: list[pytest.Item], load_dir: Path) -> None:
    """Collect one item per entry of ``load_dir`` and append them to ``items``."""
    collector = StoreCollector.from_parent(
        session, name=COLLECTOR_NAME, nodeid=COLLECTOR_NAME, store_dir=load_dir
    )
    items.extend(session.genitems(collector))


class StoreCollector(pytest.Collector):
    """The entries of a store directory, whatever tests exist now."""

    def __init__(self, *, store_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store_dir = store_dir

    def collect(self) -> Iterator[StoredEntryItem]:
        settings: StoreSettings = self.config.stash[STORE_SETTINGS_KEY]
        seen: set[str] = set()
        for directory in entry_dirs(self.store_dir):
            read = settings.read(directory)
            entry = read if isinstance(read, StoredEntry) else None
            error = read if isinstance(read, StoreError) else None
            name = item_name(entry) if entry is not None else directory.name
            if name in seen:
                name = f"{name}@{directory.name[-8:]}"
            seen.add(name)
            yield StoredEntryItem.from_parent(
                self, name=name, directory=directory, entry=entry, error=error
            )

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.store_dir, None, f"stored artifacts in {self.store_dir}"


def item_name(entry: StoredEntry) -> str:
    """The saved test id, with ``[backend]`` unless the id already names the backend."""
    test_id, backend = entry.test_id, entry.backend
    if test_id.endswith("]") and "[" in test_id:
        params = test_id[test_id.rindex("[") + 1 : -1]
        tokens = {params, *params.split("-")}
        if backend in tokens or params.endswith("-" + backend) or params.startswith(backend + "-"):
            return test_id
    return f"{test_id}[{backend}]"


class PersistCheckFailed(Exception):
    """A stored entry that did not pass; shown as its message, without a traceback."""


class StoredEntryItem(pytest.Item):
    """Load one stored artifact in an isolated child and compare it with its stored outputs."""

    def __init__(
        self,
        *,
        directory: Path,
        entry: StoredEntry | None,
        error: StoreError | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.directory = directory
        self.entry = entry
        self.error = error
        #: The item pytest runs after this one (set by the plugin's runtest protocol hook).
        self.next_item: pytest.Item | None = None
        if entry is not None:
            self.user_properties.append(("persist_entry", str(directory)))

    def runtest(self) -> None:
        if self.error is not None or self.entry is None:
            message = f"invalid stored entry: {self.error}"
            self.stash.setdefault(CHECK_OUTCOMES_KEY, []).append(_invalid(self.directory, message))
            raise PersistCheckFailed(message)
        settings: StoreSettings = self.config.stash[STORE_SETTINGS_KEY]
        pending = self.stash.get(PENDING_CHECK_KEY, None)
        if pending is None:
            pending = self.start_check()
        else:
            del self.stash[PENDING_CHECK_KEY]  # a rerun checks again
        following = self.next_item
        if (
            isinstance(following, StoredEntryItem)
            and following.entry is not None
            and PENDING_CHECK_KEY not in following.stash
        ):
            # The next entry's child (forked, or a fresh interpreter) loads while this process
            # waits for and compares this one.
            following.stash[PENDING_CHECK_KEY] = ahead = following.start_check()
            settings.started_ahead.append(ahead)
        outcome = pending.result()
        self.stash.setdefault(CHECK_OUTCOMES_KEY, []).append(outcome)
        if outcome.kind is OutcomeKind.UNAVAILABLE:
            pytest.skip(f"{outcome.backend} backend unavailable here: {outcome.error}")
        if outcome.failed:
            warning = outcome.details.get("trust_warning")
            shown = f"\n  {warning}" if warning else ""
            raise PersistCheckFailed(outcome.message() + shown + _environments(outcome))

    def start_check(self) -> PendingCheck:
        """Verify this entry and hand its child to this process's loader."""
        assert self.entry is not None
        settings: StoreSettings = self.config.stash[STORE_SETTINGS_KEY]
        return start_check(
            self.entry,
            registry=settings.registry,
            timeout=settings.timeout,
            version_warning=settings.version_warning,
            max_label_flips=settings.max_label_flips,
            options=None if settings.trusted is None else {"trusted": settings.trusted},
            loader=default_loader(settings.isolation),
            max_memory=settings.max_memory,
            trust=settings.trust,
        )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, PersistCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.directory, None, f"stored {self.name}"


def _invalid(directory: Path, message: str) -> Outcome:
    """The record of an entry that could not be read: a refused load, named by its folder
    (``<test>--<backend>-<hash>``), so that no summary or report leaves it out."""
    test, _, rest = directory.name.rpartition("--")
    backend = rest.rpartition("-")[0] if test else ""
    return Outcome(
        kind=OutcomeKind.LOAD_ERROR,
        estimator="?",
        backend=backend or "?",
        test_id=directory.name,
        error=message,
        details={"entry": str(directory), "refused": True, "invalid_entry": True},
    )


def _environments(outcome: Outcome) -> str:
    saved = outcome.details.get("saved_environment", {})
    loaded = outcome.details.get("loaded_environment", {})
    shown = set(outcome.versions)  # already on the "versions:" line, old -> new
    changed = [
        f"{key} {saved.get(key, '?')} -> {loaded.get(key, 'missing')}"
        for key in dict.fromkeys([*saved, *loaded])
        if saved.get(key) != loaded.get(key) and key not in shown and key != "pytest-persist"
    ]
    where = f"\n  saved in {outcome.details.get('entry', '?')}"
    return where + (f"\n  other environment changes: {', '.join(changed)}" if changed else "")


# ----------------------------------------------------------------------------------------------
# records


def records_of(
    item: pytest.Item, roundtrip_outcomes: list[Outcome], report: pytest.TestReport | None = None
) -> list[dict[str, Any]]:
    """The JSON-able records an item produced, for its ``call`` report; each says what pytest
    made of it (``details.pytest_outcome``: passed, failed, error, skipped or xfailed), so that the
    summary's counts are pytest's."""
    checks = item.stash.get(CHECK_OUTCOMES_KEY, [])
    records = [Record(o, "roundtrip") for o in roundtrip_outcomes]
    records += [Record(o, "check") for o in checks]
    if report is not None:
        for record in records:
            record.outcome.details["pytest_outcome"] = pytest_outcome(record.outcome, report)
    return [record.to_dict() for record in records]


def pytest_outcome(outcome: Outcome, report: pytest.TestReport) -> str:
    """The pytest result of ``outcome``'s item, as far as this outcome is concerned: a failed
    kind is ``xfailed`` in an item marked xfail; an unsupported one ``skipped`` unless its item
    failed (``--persist-strict``)."""
    if outcome.failed:
        if hasattr(report, "wasxfail"):
            return "xfailed"
        return "error" if report.when == "setup" else "failed"
    if outcome.kind in (OutcomeKind.UNSUPPORTED, OutcomeKind.UNAVAILABLE):
        return "failed" if report.failed else "skipped"
    return "failed" if report.failed and not hasattr(report, "wasxfail") else "passed"


def isolation_line(records: list[Record]) -> str:
    """How the stored artifacts were loaded, e.g. "loaded in: 31 forked children of a warm
    loader", and why any was not (the fallback to one interpreter per artifact)."""
    checks = [r.outcome for r in records if r.mode == "check" and "isolation" in r.outcome.details]
    if not checks:
        return ""
    forked = sum(o.details["isolation"] == "fork" for o in checks)
    parts = []
    if forked:
        parts.append(f"{forked} in forked children of a warm loader")
    notes: dict[str, int] = {}
    for outcome in checks:
        if outcome.details["isolation"] != "fork":
            note = outcome.details.get("isolation_note", "")
            notes[note] = notes.get(note, 0) + 1
    for note, count in notes.items():
        parts.append(f"{count} in one interpreter each" + (f" ({note})" if note else ""))
    return "isolation: " + ", ".join(parts)


def records_from_report(report: pytest.TestReport) -> list[Record]:
    return [Record.from_dict(data) for data in getattr(report, REPORT_ATTRIBUTE, None) or []]


class PersistReporter:
    """Gathers the records of every report (on the xdist controller too) and writes the
    terminal section and the ``--persist-report*`` files; registered by the plugin."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings: StoreSettings = config.stash[STORE_SETTINGS_KEY]
        self.is_worker = hasattr(config, "workerinput")
        #: The reports that could not be written, by option: what to say, instead of "written".
        self.write_errors: dict[str, str] = {}

    def _order(self) -> list[str] | None:
        """The summary's columns: the registry's order (built-in backends, then hooks')."""
        return None if self.settings.registry is None else self.settings.registry.names

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.settings.records.extend(records_from_report(report))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        stop_default_loaders()  # also ends the children of checks started ahead in vain
        for pending in self.settings.started_ahead:
            pending.discard()
        if self.is_worker:
            return  # the xdist controller writes the reports
        from .results.report import write_json_report, write_markdown_report

        settings = self.settings
        writers = (
            (
                "--persist-report",
                settings.report_json,
                lambda path: write_json_report(path, settings.records, settings.environment),
            ),
            (
                "--persist-report-md",
                settings.report_md,
                lambda path: write_markdown_report(
                    path, settings.records, backend_order=self._order()
                ),
            ),
        )
        for option, path, write in writers:
            if path is None:
                continue
            try:  # one report that cannot be written does not stop the other
                write(path)
            except OSError as exc:
                self.write_errors[option] = (
                    f"pytest-persist: could not write {option} to {path}: "
                    f"{exc.strerror or exc} (errno {exc.errno})"
                )
        if self.write_errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # CI must not miss a lost report

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        from .results.report import summary_lines

        lines = summary_lines(self.settings.records, backend_order=self._order())
        isolation = isolation_line(self.settings.records)
        if lines and isolation:
            lines.append(isolation)
        if lines:
            terminalreporter.section("pytest-persist")
            for line in lines:
                terminalreporter.write_line(line)
        written = [
            (option, path)
            for option, path in (
                ("--persist-report", self.settings.report_json),
                ("--persist-report-md", self.settings.report_md),
            )
            if path is not None
        ]
        for option, path in written:
            if option in self.write_errors:
                terminalreporter.write_line(self.write_errors[option], red=True, bold=True)
            else:
                terminalreporter.write_line(f"pytest-persist: {option} written to {path}")
        if self.settings.save_dir is not None:
            terminalreporter.write_line(saved_line(self.settings.records, self.settings.save_dir))
        for line in trust_lines(self.settings):
            terminalreporter.write_line(line)


def saved_line(records: list[Record], save_dir: Path) -> str:
    """``pytest-persist: saved N artifacts (X MB) to DIR (R replaced)``, from the records of
    every report.

    The records come from the workers' reports under xdist, so the controller counts what they
    saved; an entry is counted once however many records name it (subtests). The size is what
    the entries hold on disk (artifact, inputs, expected outputs, metadata), or the artifact
    alone where an entry is not on this machine; *replaced* counts entries that existed before
    this run saved them again (the others in DIR are left as they were).
    """
    entries: dict[str, tuple[int, bool]] = {}
    for record in records:
        saved_to = record.outcome.details.get("saved_to")
        if record.mode == "roundtrip" and saved_to and saved_to not in entries:
            size = _entry_bytes(Path(saved_to), record.outcome.artifact_bytes)
            entries[saved_to] = (size, bool(record.outcome.details.get("replaced")))
    count = len(entries)
    megabytes = sum(size for size, _ in entries.values()) / 1e6
    replaced = sum(again for _, again in entries.values())
    noun = "artifact" if count == 1 else "artifacts"
    return (
        f"pytest-persist: saved {count} {noun} ({megabytes:.3g} MB) to {save_dir} "
        f"({replaced} replaced)"
    )


def _entry_bytes(entry: Path, artifact_bytes: int | None) -> int:
    if entry.is_dir():
        return sum(path.stat().st_size for path in entry.rglob("*") if path.is_file())
    return artifact_bytes or 0


def trust_lines(settings: StoreSettings) -> list[str]:
    """The entries loaded without a trusted signature because of --persist-trust-unsigned."""
    lines = []
    unsigned = loaded_unsigned(settings.records)
    if unsigned:
        lines.append(
            f"pytest-persist: {len(unsigned)} stored artifact(s) loaded WITHOUT a trusted "
            "signature (--persist-trust-unsigned):"
        )
        lines.extend(
            f"  {r.outcome.test_id} [{r.outcome.backend}]: {r.outcome.details['trust_warning']}"
            for r in unsigned
        )
    return lines
