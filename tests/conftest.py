"""Shared helpers for testing the plugin as users meet it: through pytester, in a subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import textwrap
from dataclasses import dataclass

import pytest

# pytester restores sys.modules after each test, so a C extension first imported inside one
# (onnx, through skl2onnx) would be imported a second time by the next, which nanobind turns
# into "type ... was already registered" and then an abort of the whole worker. Imported here,
# they are part of what pytester restores to.
for _module in ("onnx", "onnxruntime", "skl2onnx"):
    with contextlib.suppress(ImportError):
        __import__(_module)

_WORDS = "PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS|SUBPASSED|SUBFAILED|SUBSKIPPED"
_STATUS = re.compile(rf"^(?P<id>\S+::\S+(?: \[[^\]]*\])?) (?P<status>{_WORDS})")


@dataclass
class SuiteRun:
    """The result of running a test file through pytest in a subprocess."""

    result: pytest.RunResult
    statuses: dict[str, str]

    @property
    def text(self) -> str:
        return self.result.stdout.str()

    def status(self, test_id: str) -> str:
        matches = {k: v for k, v in self.statuses.items() if k.endswith(test_id)}
        if len(matches) != 1:
            raise AssertionError(f"{test_id!r} matches {matches!r} in:\n{self.text}")
        return next(iter(matches.values()))


@pytest.fixture(scope="session", autouse=True)
def persist_user_config(tmp_path_factory: pytest.TempPathFactory):
    """Every test (and every pytest it starts) signs with a key in a temporary config
    directory, never in the real home: ``XDG_CONFIG_HOME`` is where platformdirs looks."""
    config_home = tmp_path_factory.mktemp("config-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(config_home))
        patch.delenv("PYTEST_PERSIST_KEY", raising=False)
        yield config_home


@pytest.fixture
def run_suite(pytester: pytest.Pytester):
    """Write ``source`` as a test module and run it with the plugin in a subprocess."""

    def run(source: str, *args: str, name: str = "test_suite.py", ini: str = "") -> SuiteRun:
        pytester.path.joinpath(name).write_text(textwrap.dedent(source))
        if ini:
            pytester.makeini(textwrap.dedent(ini))
        result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", "-rA", *args)
        statuses = {}
        for line in result.stdout.lines:
            match = _STATUS.match(line)
            if match:
                statuses[match["id"].split("::", 1)[1]] = match["status"]
        return SuiteRun(result, statuses)

    return run


@pytest.fixture
def child_writable(tmp_path_factory: pytest.TempPathFactory):
    """A fresh directory a loader child may write into, for a test's fake model to record
    what it saw: the child's sandbox (``pytest_persist.isolation.sandbox``) allows writes
    only beneath its own check directory and ``/dev/shm`` (joblib's semaphores), never into
    the test's folders or the store."""
    import shutil
    import tempfile
    from pathlib import Path

    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path_factory.getbasetemp()
    directory = Path(tempfile.mkdtemp(prefix="pytest-persist-test-", dir=base))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
