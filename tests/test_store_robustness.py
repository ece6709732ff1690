"""Stores that survive what happens to them: re-saves while they are checked, writers killed
halfway, bad entries, reports that cannot be written, models that hog shared memory or leave
processes behind. Real stores, real ``pytest`` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from store_helpers import store_model

from pytest_persist.isolation.cgroups import make_check_group
from pytest_persist.store.entries import entry_name, read_entry
from pytest_persist.store.layout import OLD_PREFIX, TEMP_PREFIX

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def check(pytester: pytest.Pytester, store: str = "store", *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", f"--persist-load={store}", *args
    )


def records(path: Path) -> dict[str, dict]:
    return {r["test_id"]: r for r in json.loads(path.read_text())["records"]}


# ----------------------------------------------------------------------------------------------
# a legitimate re-save is never tampering

RESAVER = """
import sys, time
sys.path.insert(0, {tests!r})
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from store_helpers import store_model

X, y = load_iris(return_X_y=True)
# two different models, each saved with its own expected outputs: a check that mixed two
# versions of an entry (one's artifact, the other's outputs) would fail
models = [LogisticRegression(C=c, max_iter=300).fit(X, y) for c in (1.0, 0.01)]
deadline = time.monotonic() + {seconds}
saves = 0
while time.monotonic() < deadline:
    for i in range({count}):
        store_model({root!r}, models[saves % 2], X, y, test_id=f"t.py::test_{{i}}")
        saves += 1
print(saves)
"""


def test_checks_while_another_job_resaves_see_one_whole_version(pytester, iris):
    X, y = iris
    count = 8
    root = pytester.path / "store"
    for i in range(count):
        store_model(
            root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id=f"t.py::test_{i}"
        )
    script = pytester.path / "resave.py"
    script.write_text(
        RESAVER.format(tests=str(ROOT / "tests"), root=str(root), seconds=40, count=count)
    )
    resaver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        runs = []
        time.sleep(2)  # the re-saver is saving by now
        for _ in range(3):
            result = check(pytester, "store", "--persist-report=r.json")
            runs.append((result.ret, records(pytester.path / "r.json")))
    finally:
        resaver.kill()
        resaver.wait()
    for ret, by_test in runs:
        assert len(by_test) == count, by_test.keys()  # no entry ever missing
        failed = {t: r["error"] for t, r in by_test.items() if r["kind"] != "passed"}
        assert not failed and ret == 0, failed


# ----------------------------------------------------------------------------------------------
# nothing lost, whatever is interrupted

KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from store_helpers import store_model
import pytest_persist.store.entries as entries

X, y = load_iris(return_X_y=True)
model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if {how!r} == "exchange":  # swapped in, killed before the old version is removed
    entries.shutil.rmtree = die
else:  # no atomic swap: killed between moving the old entry aside and renaming the new in
    entries._exchange = lambda first, second: False
    rename = os.rename
    def rename_then_die(source, target):
        if os.path.basename(str(source)).startswith({temp!r}):
            die()
        rename(source, target)
    seen = []
    def rename_watch(source, target):
        seen.append(source)
        if len(seen) == 2:  # 1: temp -> final (refused, it exists), 2: final -> .old
            rename(source, target)
            entries.os.rename = rename_then_die
            return
        rename(source, target)
    entries.os.rename = rename_watch
store_model({root!r}, model, X, y, test_id="t.py::test_model")
"""


@pytest.mark.parametrize("how", ["exchange", "aside"])
def test_a_writer_killed_while_replacing_loses_nothing(pytester, iris, how):
    X, y = iris
    root = pytester.path / "store"
    before = store_model(
        root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_model"
    )
    store_model(root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_other")
    script = pytester.path / "killed.py"
    script.write_text(
        KILLED_WRITER.format(tests=str(ROOT / "tests"), root=str(root), how=how, temp=TEMP_PREFIX)
    )
    died = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert died.returncode == -signal.SIGKILL, died.stderr
    leftovers = [p.name for p in root.iterdir() if p.name.startswith((TEMP_PREFIX, OLD_PREFIX))]
    assert leftovers, "the writer was not killed halfway"
    final = root / entry_name("t.py::test_model", "pickle")
    if how == "aside":
        assert not final.exists()  # the moment the issue describes: the entry is absent

    result = check(pytester, "store", "--persist-report=r.json")
    assert result.ret == 0, result.stdout.str()
    assert set(records(pytester.path / "r.json")) == {"t.py::test_model", "t.py::test_other"}
    assert not [p for p in root.iterdir() if p.name.startswith((TEMP_PREFIX, OLD_PREFIX))]
    if how == "aside":  # the old version, put back
        assert read_entry(final).manifest["created"] == before.manifest["created"]


# ----------------------------------------------------------------------------------------------
# one bad entry stops nothing, and is in every report


def test_malformed_entries_fail_alone_and_are_reported(pytester, iris):
    X, y = iris
    root = pytester.path / "store"
    store_model(root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_good")
    nested = store_model(
        root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_nested"
    )
    (nested.path / "entry.json").write_text("[" * 100_000 + "]" * 100_000)
    newer = store_model(
        root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_newer"
    )
    manifest = json.loads((newer.path / "entry.json").read_text())
    (newer.path / "entry.json").write_text(json.dumps(dict(manifest, format_version=99)))

    result = check(pytester, "store", "--persist-report=r.json", "--persist-report-md=r.md")
    assert result.ret == 1, result.stdout.str()  # failures, not an internal error
    text = result.stdout.str()
    assert "INTERNALERROR" not in text + result.stderr.str()
    result.stdout.fnmatch_lines(["PASSED persist_load::t.py::test_good*"])
    assert (
        f"{nested.path / 'entry.json'}: not a pytest-persist entry (JSON nested too deeply" in text
    )
    assert "written by a newer pytest-persist (store format version 99" in text
    by_test = records(pytester.path / "r.json")
    assert by_test["t.py::test_good"]["kind"] == "passed"
    for entry in (nested, newer):
        record = by_test[entry.path.name]
        assert record["kind"] == "load_error" and record["details"]["invalid_entry"] is True
        assert record["backend"] == "pickle"
    assert "2 load_error" in text  # the terminal summary counts them too
    markdown = (pytester.path / "r.md").read_text()
    assert nested.path.name in markdown and newer.path.name in markdown


def test_an_output_missing_from_the_data_says_so(pytester, iris):
    """An entry written incompletely (its outputs file lacks a method its manifest lists),
    signed as such: one clear sentence, not a KeyError."""
    X, y = iris
    model = LogisticRegression(max_iter=300).fit(X, y)
    entry = store_model(pytester.path / "store", model, X, y, test_id="t.py::test_gap")
    from pytest_persist.store import codec
    from pytest_persist.store.entries import sha256_file
    from pytest_persist.store.signing import own_key, sign_entry

    data = codec.read(entry.path / "data.npz", entry.path / "data.json")
    del data["outputs"]["score"]
    codec.write(entry.path / "data.npz", entry.path / "data.json", data)
    manifest = json.loads(entry.entry_file.read_text())
    for name in ("data.npz", "data.json"):
        path = entry.path / name
        manifest["files"][name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    entry.entry_file.write_text(json.dumps(manifest, indent=2))
    sign_entry(entry.path, own_key())

    result = check(pytester, "store")
    assert result.ret == 1
    text = result.stdout.str()
    assert f"{entry.path / 'data.npz'}: holds no expected output for score" in text, text
    assert "KeyError" not in text and len(text.splitlines()) < 60


# ----------------------------------------------------------------------------------------------
# reports that cannot be written


def test_a_report_path_that_cannot_work_is_a_usage_error(pytester, iris):
    X, y = iris
    store_model(pytester.path / "store", LogisticRegression(max_iter=300).fit(X, y), X, y)
    (pytester.path / "adir").mkdir()
    for option in ("--persist-report", "--persist-report-md"):
        result = check(pytester, "store", f"{option}=adir")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert f"{option}: {pytester.path / 'adir'} is a directory" in result.stderr.str()


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str, readonly: bool = False):
    where.mkdir()
    options = f"size={size}" + (",ro" if readonly else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr!r}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_loses_one_report_not_the_others(pytester, iris):
    X, y = iris
    store_model(pytester.path / "store", LogisticRegression(max_iter=300).fit(X, y), X, y)
    with small_tmpfs(pytester.path / "full", "64k") as full:
        with contextlib.suppress(OSError), open(full / "filler", "wb") as filler:
            while True:  # until the disk is full: the report does not fit any more
                filler.write(b"\0" * 4096)
                filler.flush()
        result = check(
            pytester, "store", f"--persist-report={full}/r.json", "--persist-report-md=r.md"
        )
    text = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert f"pytest-persist: could not write --persist-report to {full}/r.json: No space" in text
    assert "Traceback" not in text + result.stderr.str()
    assert "--persist-report-md written to" in text and (pytester.path / "r.md").is_file()
    assert "stored artifacts checked: 1 passed" in text  # the summary is not lost either


# ----------------------------------------------------------------------------------------------
# options and store paths


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--persist-load=store", "--persist-load-timeout=0"],
            "a positive, finite number of seconds",
        ),
        (
            ["--persist-load=store", "--persist-load-timeout=-1"],
            "a positive, finite number of seconds",
        ),
        (
            ["--persist-load=store", "--persist-load-timeout=nan"],
            "a positive, finite number of seconds",
        ),
        (
            ["--persist-load=store", "--persist-load-timeout=inf"],
            "a positive, finite number of seconds",
        ),
        (["--persist-backends="], "--persist-backends= names no backend; give one or more of"),
        (["--persist-save="], "--persist-save= needs a path"),
        (["--persist-load="], "--persist-load= needs a path"),
        (["--persist-save=afile"], "is a file, not a store directory"),
        (["--persist-load=afile"], "afile"),
    ],
)
def test_options_that_cannot_work_are_usage_errors(pytester, iris, args, said):
    X, y = iris
    store_model(pytester.path / "store", LogisticRegression(max_iter=300).fit(X, y), X, y)
    (pytester.path / "afile").write_text("not a store")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert said in result.stderr.str(), result.stderr.str()
    assert result.stderr.str().count("ERROR:") == 1  # said once, not once per test


def test_a_read_only_store_is_said_once(pytester):
    pytester.makepyfile(
        test_models="""
        import pytest
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        @pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
        @pytest.mark.persist_roundtrip(backends=["pickle"])
        def test_model(persist_roundtrip, c):
            X, y = load_iris(return_X_y=True)
            persist_roundtrip(LogisticRegression(C=c, max_iter=300).fit(X, y), X, y)
        """
    )
    with small_tmpfs(pytester.path / "ro", "1m", readonly=True) as readonly:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--persist-save={readonly}"
        )
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    assert f"--persist-save: cannot write into {readonly} (Read-only file system)" in err, err
    assert "Errno" not in result.stdout.str()


# ----------------------------------------------------------------------------------------------
# containment of what a loaded model does

HOG_MODULE = """
import mmap, os, subprocess, time
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))


class Hog:
    def fit(self, X, y=None):
        self.mode_ = "shared"
        return self

    def get_params(self, deep=True):
        return {}

    def predict(self, X):
        return np.zeros(len(X))

    def __setstate__(self, state):
        self.__dict__.update(state)
        mode = open(os.path.join(_HERE, "hog_mode.txt")).read().strip()
        if mode == "shared":  # 2 GiB of MAP_SHARED memory, touched: not in RLIMIT_DATA
            block = mmap.mmap(-1, 2 * 1024**3, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
            for offset in range(0, len(block), mmap.PAGESIZE):
                block[offset] = 1
        if mode.startswith("detach:"):  # a grandchild in a session of its own
            child = subprocess.Popen(["sleep", "600"], start_new_session=True)
            with open(mode.split(":", 1)[1], "w") as handle:
                handle.write(str(child.pid))
"""


@pytest.fixture
def hog(pytester, iris, monkeypatch):
    (pytester.path / "hog_model.py").write_text(HOG_MODULE)
    monkeypatch.syspath_prepend(str(pytester.path))
    import hog_model

    X, _ = iris
    store_model(pytester.path / "store", hog_model.Hog().fit(X), X, None, test_id="t.py::test_hog")
    yield lambda mode: (pytester.path / "hog_mode.txt").write_text(mode)
    sys.modules.pop("hog_model", None)


needs_cgroup = pytest.mark.skipif(
    make_check_group(None) is None, reason="no memory cgroup can be made here (needs root)"
)


@needs_cgroup
@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_shared_memory_counts_against_the_memory_limit(pytester, hog, isolation):
    hog("shared")
    result = check(
        pytester,
        "store",
        f"--persist-load-isolation={isolation}",
        "--persist-load-max-memory=1GiB",
        "--persist-load-timeout=120",
        "--persist-report=r.json",
    )
    record = records(pytester.path / "r.json")["t.py::test_hog"]
    assert record["kind"] == "load_error", result.stdout.str()
    assert "exceeded the memory limit of 1 GiB" in record["error"], record["error"]
    assert record["details"]["containment"].startswith("memory cgroup v")


@pytest.mark.parametrize("isolation", ["fork", "process"])
def test_a_detached_grandchild_ends_with_its_check(pytester, hog, isolation, child_writable):
    pid_file = child_writable / "grandchild.pid"
    hog(f"detach:{pid_file}")
    result = check(pytester, "store", f"--persist-load-isolation={isolation}")
    assert result.ret == 0, result.stdout.str()
    pid = int(pid_file.read_text())
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid), f"grandchild {pid} outlived its check"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"  # a zombie has ended


def test_the_loader_child_writes_only_its_own_directory(pytester, iris):
    """What predict tries to write into the store fails, whoever signed the model."""
    pytester.makepyfile(
        writer_model=textwrap.dedent(
            """
            import os
            import numpy as np

            class Writer:
                def fit(self, X, y=None):
                    self.fitted_ = True  # a state, so that unpickling calls __setstate__
                    return self

                def get_params(self, deep=True):
                    return {}

                def __setstate__(self, state):
                    self.__dict__.update(state, loaded_=True)

                def predict(self, X):
                    if not getattr(self, "loaded_", False):  # not while it is being saved
                        return np.zeros(len(X))
                    store = os.path.join(os.path.dirname(os.path.abspath(__file__)), "store")
                    for name in sorted(os.listdir(store)):
                        with open(os.path.join(store, name, "entry.json"), "a") as handle:
                            handle.write(" ")
                    return np.zeros(len(X))
            """
        )
    )
    sys.path.insert(0, str(pytester.path))
    try:
        import writer_model

        X, y = iris
        root = pytester.path / "store"
        other = store_model(
            root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_a"
        )
        store_model(root, writer_model.Writer().fit(X), X, None, test_id="t.py::test_w")
    finally:
        sys.path.remove(str(pytester.path))
        sys.modules.pop("writer_model", None)
    before = other.entry_file.read_bytes()
    result = check(pytester, "store", "--persist-report=r.json")
    by_test = records(pytester.path / "r.json")
    writer = by_test["t.py::test_w"]
    if "landlock" not in writer["details"].get("sandbox", ""):
        pytest.skip(f"no filesystem sandbox here: {writer['details'].get('sandbox')}")
    assert writer["kind"] == "method_error", result.stdout.str()
    assert "PermissionError" in writer["error"]
    assert other.entry_file.read_bytes() == before
    assert by_test["t.py::test_a"]["kind"] == "passed"


def test_an_outputs_archive_that_would_expand_is_refused(pytester, iris):
    """A 'zip bomb' planted as an unsigned ONNX entry's data.npz: refused before anything is
    decompressed, in the child and in this process, naming the file."""
    import hashlib

    import numpy as np

    X, y = iris
    entry = store_model(
        pytester.path / "store", LogisticRegression(max_iter=300).fit(X, y), X, y, backend="onnx"
    )
    bomb = entry.path / "data.npz"
    np.savez_compressed(bomb, X=np.zeros(64 * 1024**2, dtype=np.uint8))
    assert bomb.stat().st_size < 1024**2
    manifest = json.loads(entry.entry_file.read_text())
    payload = bomb.read_bytes()
    manifest["files"]["data.npz"] = {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    entry.entry_file.write_text(json.dumps(manifest, indent=2))
    (entry.path / "signature.json").unlink(missing_ok=True)

    result = check(pytester, "store", "--persist-report=r.json")
    assert result.ret == 1, result.stdout.str()
    [record] = records(pytester.path / "r.json").values()
    assert record["kind"] == "load_error"
    assert f"{entry.path / 'data.npz'}: unreadable" in record["error"], record["error"]
    assert "would expand to 671089" in record["error"]  # 64 MiB and the .npy header


@pytest.mark.parametrize("planted", ["fifo-manifest", "fifo-artifact", "huge-manifest"])
def test_a_planted_fifo_or_huge_manifest_fails_alone(pytester, iris, planted):
    """Reading a FIFO blocks until someone writes to it, and a huge entry.json fills memory:
    neither may stop the session."""
    X, y = iris
    root = pytester.path / "store"
    store_model(root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_ok")
    bad = store_model(
        root, LogisticRegression(max_iter=300).fit(X, y), X, y, test_id="t.py::test_bad"
    )
    if planted == "fifo-manifest":
        (bad.path / "entry.json").unlink()
        os.mkfifo(bad.path / "entry.json")
        said = "entry.json: not a regular file"
    elif planted == "fifo-artifact":
        (bad.path / "artifact.pkl").unlink()
        os.mkfifo(bad.path / "artifact.pkl")
        said = "artifact.pkl: not a regular file"
    else:
        with open(bad.path / "entry.json", "ab") as handle:
            handle.truncate(20 * 1024**2)  # sparse: 20 MB of nothing
        said = "too large for a pytest-persist entry's metadata"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--persist-load=store"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert time.monotonic() - started < 120
    assert result.returncode == 1, result.stdout
    assert "PASSED persist_load::t.py::test_ok[pickle]" in result.stdout
    assert said in result.stdout, result.stdout
