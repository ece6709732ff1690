"""``pytest-persist bisect STORE``: the package release that broke each entry failing here."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .check_command import check_command
from .common import EXIT_BAD_INPUT, fail

_BISECT_EXAMPLES = """\
examples:
  pytest-persist bisect artifacts
  pytest-persist bisect artifacts -k forest --report bisect.json
  pytest-persist bisect artifacts --python 3.10=/opt/py310/bin/python

For every entry that fails here (checked here first, with pytest --persist-load): rebuild
the environment it was saved in with uv from the installed set its entry.json records, check
it passes there (else: cannot be reproduced), then move the packages that differ, dependents
first, towards their versions here, and bisect the releases (patch releases included; from
PyPI's simple API, with wheels for the interpreter) of the one whose move breaks it. The
resolver moves what a pinned release needs; the report says what else moved. Environments
are cached under the user cache directory (--cache-dir); pytest-persist itself is installed
in each from the checkout or wheel this command runs from.

exit status: 0 the breaking release of every failing entry was found, 1 some entry could
not be bisected (not reproducible, no installed set recorded, an environment failed),
2 bad input (no store, no entry failing here, no uv, no interpreter for the saving Python).
"""


def add_parser(commands: Any) -> None:
    """Add the command to ``commands`` (argparse sub-parsers)."""
    bisect = commands.add_parser(
        "bisect",
        help="find the package release that breaks each entry failing here",
        description=(
            "For every entry of STORE that fails here, find which package, and which release of "
            "it, breaks it, rebuilding environments with uv."
        ),
        epilog=_BISECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bisect.add_argument("store", metavar="STORE", help="a store directory (--persist-save's)")
    bisect.add_argument(
        "-k", dest="keyword", metavar="EXPR", help="only the entries pytest -k selects"
    )
    bisect.add_argument("--report", metavar="FILE.json", help="write one record per failing entry")
    bisect.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="VERSION=PATH",
        help="the interpreter to use for a Python version (repeatable); by default uv finds "
        "them (it never downloads one), and pyenv's are looked at",
    )
    bisect.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where environments are kept (default: the user cache directory's "
        "pytest-persist/environments)",
    )
    bisect.add_argument(
        "--max-environments",
        type=int,
        default=40,
        metavar="N",
        help="give up on an entry after building N environments for it (default 40)",
    )
    bisect.add_argument(
        "--timeout", type=float, default=600, metavar="SECONDS", help="per check (default 600)"
    )
    bisect.add_argument(
        "--uv", metavar="PATH", help="the uv to build environments with (default: uv on PATH)"
    )
    bisect.add_argument(
        "--pytest-persist",
        metavar="PATH",
        help="the pytest-persist wheel or source folder to install in every environment "
        "(default: this one's source checkout, built once into a wheel)",
    )
    bisect.set_defaults(run=run)


#: Never moved nor rebuilt: the installers, and pytest-persist (this one goes everywhere).
_NOT_BISECTED = {"pip", "uv", "pytest-persist"}
#: What an environment must import for a check there to say anything about the entry.
_BACKEND_IMPORTS = {
    "joblib": ("joblib",),
    "joblib-mmap": ("joblib",),
    "joblib-compressed": ("joblib",),
    "cloudpickle": ("cloudpickle",),
    "skops": ("skops.io",),
    "onnx": ("onnxruntime",),
}


def _progress(line: str) -> None:
    print(f"pytest-persist bisect: {line}", file=sys.stderr, flush=True)


def _check_environ() -> dict[str, str]:
    """The environment of a check in a rebuilt environment: nothing of this one's Python
    setup (its virtual environment, PYTHONPATH, pytest options for plugins not there)."""
    dropped = {"PYTEST_ADDOPTS", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTEST_PLUGINS"}
    return {k: v for k, v in os.environ.items() if k not in dropped}


def run_check(
    python: str,
    store: Path,
    folder: Path,
    extra: list[str] | None = None,
    *,
    timeout: float | None = None,
) -> tuple[int, list[dict[str, Any]], str]:
    """``pytest --persist-load=store`` with ``python`` in the empty ``folder``: its exit
    status, the records of its JSON report and the tail of its output."""
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    report = folder / "report.json"
    report.unlink(missing_ok=True)
    command = check_command(
        store,
        ["-q", f"--rootdir={folder}", "-c", str(ini), f"--persist-report={report}", *(extra or [])],
        python=python,
    )
    command.append(str(folder))
    try:
        result = subprocess.run(
            command,
            cwd=folder,
            capture_output=True,
            text=True,
            env=_check_environ(),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return -1, [], f"the check took over {timeout:.0f} s"
    output = (result.stdout + result.stderr).strip().splitlines()
    try:
        records = json.loads(report.read_text(encoding="utf-8"))["records"]
    except (OSError, ValueError, KeyError):
        records = []
    return result.returncode, records, "\n".join(output[-12:])


def _failure_summary(record: dict[str, Any]) -> str:
    """How a failed check looks, on one line."""
    kind = record.get("kind", "?")
    text = str(record.get("error") or "").strip()
    if not text and record.get("differences"):
        first = record["differences"][0]
        text = f"{first.get('method', '')}: {first.get('message', '')}"
    if not text and record.get("state_differences"):
        text = f"fitted state differs: {record['state_differences'][0]}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # the last line of an error is the exception; the first says where
    shown = lines[0] if len(lines) <= 1 else f"{lines[0]} ... {lines[-1]}"
    return f"{kind}: {shown[:300]}" if shown else kind


def _pytest_persist_requirement(args: argparse.Namespace, cache: Path, uv: str) -> str:
    """What installs this pytest-persist in a rebuilt environment: a wheel built once from
    its source checkout (or the one given with --pytest-persist), by its content's sha256."""
    from .. import __version__

    given = Path(args.pytest_persist).resolve() if args.pytest_persist else None
    if given is not None and given.is_file() and given.suffix == ".whl":
        return f"pytest-persist @ {given.as_uri()}"
    source = given or Path(__file__).resolve().parents[2]  # the checkout: cli/ is two down
    pyproject = source / "pyproject.toml"
    if not pyproject.is_file() or 'name = "pytest-persist"' not in pyproject.read_text("utf-8"):
        from ..environments.installed import installed_set

        if "pytest-persist" in (installed_set().get("direct") or {}):
            raise SystemExit(
                fail(
                    "bisect installs this pytest-persist in every environment it builds: give "
                    "its wheel or source folder with --pytest-persist PATH"
                )
            )
        return f"pytest-persist=={__version__}"  # installed from an index
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels, prefix=".build-") as out:
        built = subprocess.run(
            [uv, "build", "--wheel", "--quiet", "--no-config", "--out-dir", out, str(source)],
            capture_output=True,
            text=True,
        )
        found = sorted(Path(out).glob("*.whl"))
        if built.returncode != 0 or not found:
            raise SystemExit(fail(f"cannot build pytest-persist from {source}: {built.stderr}"))
        import hashlib

        digest = hashlib.sha256(found[0].read_bytes()).hexdigest()[:16]
        final = wheels / digest / found[0].name
        if not final.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(found[0], final)
    return f"pytest-persist @ {final.as_uri()}"


def _given_pythons(values: list[str]) -> dict[str, str]:
    given = {}
    for value in values:
        version, _, path = value.partition("=")
        if not path:
            raise SystemExit(
                fail(f"--python {value!r}: expected VERSION=PATH, e.g. 3.10=/usr/bin/python3.10")
            )
        given[version.strip()] = path.strip()
    return given


class _EntryBisector:
    """Everything one failing entry's bisection needs: its sets, interpreters, environments
    and the check run in each."""

    def __init__(self, entry: Any, record: dict[str, Any], context: dict[str, Any]) -> None:
        self.entry = entry
        self.record = record
        self.context = context
        self.builder = context["builder"]
        self.work = Path(context["work"]) / entry.path.name
        self.store = self.work / "store"
        self.notes: list[str] = []
        manifest = entry.manifest
        installed = manifest.get("installed")
        if isinstance(installed, dict):
            saved = dict(installed.get("distributions") or {})
            direct = set(installed.get("direct") or {})
            self.saved_python = str(installed.get("python") or entry.environment.get("python"))
        else:
            fingerprint = entry.environment
            keys = ("python", "implementation", "platform", "machine")
            saved = {k: v for k, v in fingerprint.items() if k not in keys}
            direct = set()
            self.saved_python = str(fingerprint.get("python", ""))
            self.notes.append(
                "saved before pytest-persist recorded the installed set: rebuilt from the "
                f"{len(saved)} versions of its environment fingerprint, the rest resolved anew"
            )
        skipped = sorted(direct - _NOT_BISECTED)
        if skipped:
            self.notes.append(
                "not rebuilt (installed from a folder or URL where it was saved): "
                + ", ".join(skipped)
            )
        self.saved = {k: v for k, v in saved.items() if k not in _NOT_BISECTED | direct}
        here = context["here"]
        here_direct = set(here.get("direct") or {})
        self.here = {
            k: v
            for k, v in (here.get("distributions") or {}).items()
            if k not in _NOT_BISECTED | here_direct
        }
        self.here_python = str(here["python"])

    def prepare(self) -> None:
        """A store of this entry alone (a copy: the user's store is only read)."""
        if self.store.exists():
            shutil.rmtree(self.store)
        self.store.mkdir(parents=True)
        shutil.copytree(self.entry.path, self.store / self.entry.path.name, symlinks=False)

    def interpreter(self, version: str) -> tuple[str, str] | None:
        from ..environments.rebuild import find_python

        cache = self.context["pythons"]
        if version not in cache:
            cache[version] = find_python(version, self.context["given_pythons"], self.context["uv"])
        return cache[version]

    def python_change(self) -> Any:
        from ..environments.bisect import Change

        if self.saved_python == self.here_python:
            return None
        same_minor = self.saved_python.split(".")[:2] == self.here_python.split(".")[:2]
        saved = self.interpreter(self.saved_python)
        if same_minor and (saved is None or saved[1] != self.saved_python):
            self.notes.append(
                f"saved with Python {self.saved_python}, here {self.here_python}: no "
                f"interpreter for {self.saved_python} exactly, so Python is not bisected"
            )
            return None
        return Change("python", self.saved_python, self.here_python)

    def try_moves(self, moves: dict[str, str | None]) -> Any:
        from ..environments.bisect import BROKEN, FAIL, PASS, Trial
        from ..environments.rebuild import RebuildError

        started = time.perf_counter()
        moves = dict(moves)
        python_version = moves.pop("python", None) or self.saved_python
        interpreter = self.interpreter(python_version)
        full_moves = {
            **moves,
            **({"python": python_version} if python_version != self.saved_python else {}),
        }
        if interpreter is None:
            return Trial(full_moves, BROKEN, f"no interpreter for Python {python_version} here")
        wanted = {k: v for k, v in self.saved.items() if k not in moves}
        requirements = [f"{name}=={version}" for name, version in moves.items() if version]
        requirements += [name for name in wanted]
        requirements.append(self.context["requirement"])
        try:
            environment = self.builder.build(interpreter[0], interpreter[1], requirements, wanted)
        except RebuildError as exc:
            return Trial(full_moves, BROKEN, f"no environment: {_one_line(str(exc))}")
        expected = {**self.saved, **{k: v for k, v in moves.items() if v}}
        for name, version in moves.items():
            if version is None:
                expected.pop(name, None)
        installed = {k: v for k, v in environment.installed.items() if k not in _NOT_BISECTED}
        also = [
            f"{name} {expected.get(name, 'absent')} -> {installed.get(name, 'absent')}"
            for name in sorted(set(expected) | set(installed))
            if expected.get(name) != installed.get(name)
        ]
        details = environment.to_dict()
        details.pop("installed", None)
        trial = Trial(full_moves, PASS, installed=installed, also_moved=also, details=details)
        problem = self._imports(environment)
        if problem:
            trial.status, trial.summary = BROKEN, problem
        else:
            folder = self.work / "checks" / environment.key
            code, records, output = run_check(
                environment.python, self.store, folder, timeout=self.context["timeout"]
            )
            mine = [r for r in records if r.get("mode") == "check"]
            if not mine:
                trial.status = BROKEN
                trial.summary = (
                    f"the check did not run (pytest exit status {code}): {_one_line(output)}"
                )
            elif mine[0].get("kind") == "passed":
                trial.status = PASS
            elif mine[0].get("kind") == "unavailable":
                trial.status, trial.summary = BROKEN, _failure_summary(mine[0])
            else:
                trial.status, trial.summary = FAIL, _failure_summary(mine[0])
        trial.seconds = time.perf_counter() - started
        return trial

    def _imports(self, environment: Any) -> str:
        """Why the environment cannot say anything about the entry (its libraries do not
        import), or ''. Remembered beside the environment."""
        marker = environment.path / "pytest-persist-imports.json"
        modules = ["numpy", "scipy", "sklearn", *_BACKEND_IMPORTS.get(self.entry.backend, ())]
        key = ",".join(modules)
        try:
            known = json.loads(marker.read_text(encoding="utf-8"))
            if key in known:
                return known[key]
        except (OSError, ValueError):
            known = {}
        result = subprocess.run(
            [environment.python, "-c", "".join(f"import {m}\n" for m in modules)],
            capture_output=True,
            text=True,
            env=_check_environ(),
        )
        problem = ""
        if result.returncode != 0:
            last = [line for line in result.stderr.splitlines() if line.strip()][-1:]
            problem = f"incoherent environment, {', '.join(modules)} do not import: " + (
                last[0].strip() if last else f"exit status {result.returncode}"
            )
        known[key] = problem
        with contextlib.suppress(OSError):
            marker.write_text(json.dumps(known), encoding="utf-8")
        return problem

    def releases(self, change: Any, before: dict[str, str | None]) -> list[str]:
        from ..environments.releases import releases_between

        if change.package == "python":
            return self._pythons_between(change.saved, change.here)
        python = before.get("python") or self.saved_python
        return releases_between(
            change.package,
            change.saved,
            change.here,
            str(python),
            cache_dir=self.context["cache"] / "index",
        )

    def _pythons_between(self, start: str, end: str) -> list[str]:
        from packaging.version import Version

        low, high = sorted((Version(start), Version(end)))
        found = []
        for minor in range(low.minor + 1, high.minor):
            interpreter = self.interpreter(f"{low.major}.{minor}")
            if interpreter is not None:
                found.append(interpreter[1])
        if Version(start) > Version(end):
            found.reverse()
        return [start, *found, end]

    def order(self, changes: list[Any], baseline: Any) -> list[Any]:
        from ..environments.bisect import dependents_first
        from ..environments.fingerprint import FINGERPRINT_DISTRIBUTIONS

        requires: dict[str, set[str]] = {}
        for graph in (self.context["here_requires"], self._baseline_requires(baseline)):
            for name, deps in graph.items():
                requires.setdefault(name, set()).update(deps)
        for change in changes:  # everything runs on Python: it moves last
            if change.package != "python":
                requires.setdefault(change.package, set()).add("python")
        return dependents_first(changes, requires, FINGERPRINT_DISTRIBUTIONS)

    def _baseline_requires(self, baseline: Any) -> dict[str, set[str]]:
        from ..environments.rebuild import BuiltEnvironment

        path = baseline.details.get("path")
        if not path:
            return {}
        built = BuiltEnvironment(Path(path), self.saved_python, {}, baseline.details["key"])
        return self.builder.requires(built)


def _one_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = " | ".join(lines[-3:]) if lines else ""
    return joined[:limit]


def _here_requires() -> dict[str, set[str]]:
    import re
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    graph: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if not name:
            continue
        names = set()
        for text in dist.requires or []:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                names.add(re.sub(r"[-_.]+", "-", requirement.name).lower())
        graph.setdefault(re.sub(r"[-_.]+", "-", name).lower(), set()).update(names)
    return graph


def run(args: argparse.Namespace) -> int:
    from ..environments.bisect import Bisection, differences
    from ..environments.installed import installed_set
    from ..environments.rebuild import EnvironmentBuilder, find_uv
    from ..results.outcome import FAILED_KINDS
    from ..store.entries import StoreError, entry_dirs, iter_entries

    started = time.perf_counter()
    store = Path(args.store).resolve()
    try:
        if not entry_dirs(store):
            return fail(f"{store}: an empty store, nothing to bisect")
        entries = {(e.test_id, e.backend): e for e in iter_entries(store, clean=False)}
    except StoreError as exc:
        return fail(str(exc))
    uv = args.uv or find_uv()
    if uv is None or not (Path(uv).is_file() or shutil.which(uv)):
        where = f" ({args.uv} does not exist)" if args.uv else ""
        return fail(
            f"bisect builds environments with uv, which is not installed here{where}: pip "
            "install uv (or pytest-persist[bisect])"
        )
    given = _given_pythons(args.python)
    import platformdirs

    cache = Path(args.cache_dir or Path(platformdirs.user_cache_dir("pytest-persist")) / "bisect")
    cache.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="pytest-persist-bisect-") as work:
        _progress(f"checking {store} here ({sys.executable}) ...")
        extra = ["-k", args.keyword] if args.keyword else []
        code, records, output = run_check(sys.executable, store, Path(work) / "here", extra)
        checks = [r for r in records if r.get("mode") == "check"]
        if not checks:
            return fail(
                f"the check of {store} here ran no stored entry (pytest exit status {code})"
                + (f":\n{output}" if output else "")
            )
        failed_kinds = {kind.value for kind in FAILED_KINDS}
        failing = [r for r in checks if r.get("kind") in failed_kinds]
        if not failing:
            return fail(
                f"every entry checked here passes ({len(checks)} checked"
                + (f" with -k {args.keyword!r}" if args.keyword else "")
                + "): nothing to bisect"
            )
        _progress(
            f"{len(failing)} of {len(checks)} entries fail here: "
            + ", ".join(f"{r.get('estimator')} [{r.get('backend')}]" for r in failing)
        )
        builder = EnvironmentBuilder(uv, cache)
        here = installed_set()
        context = {
            "builder": builder,
            "work": work,
            "here": here,
            "here_requires": _here_requires(),
            "uv": uv,
            "given_pythons": given,
            "pythons": {},
            "cache": cache,
            "requirement": None,  # built for the first entry that needs it
            "timeout": args.timeout,
        }
        results = []
        exit_code = 0
        for record in failing:
            entry = entries.get((record.get("test_id"), record.get("backend")))
            label = f"{record.get('estimator')} [{record.get('backend')}]"
            if entry is None:
                missing = "its entry could not be found in the store"
                results.append({"label": label, "status": "inconclusive", "message": missing})
                exit_code = max(exit_code, 1)
                continue
            results.append(_bisect_one(entry, record, context, args, label, Bisection, differences))
            status = results[-1]["status"]
            if status == "no_interpreter":
                exit_code = EXIT_BAD_INPUT
            elif status != "found":
                exit_code = max(exit_code, 1)
        seconds = time.perf_counter() - started
        summary = {
            "format": "pytest-persist-bisect",
            "format_version": 1,
            "store": str(store),
            "here": {k: v for k, v in here.items() if k != "distributions"},
            "environments_built": builder.built,
            "environments_reused": builder.reused,
            "seconds": round(seconds, 1),
            "records": results,
        }
        print()
        for result in results:
            print(f"{result.get('label', result.get('test_id'))}: {result['message']}")
            failure = result.get("failure") or {}
            if result.get("status") == "found" and failure.get("first_bad"):
                bad = result["first_bad"]
                print(f"  at {bad['package']} {bad['version']}: {failure['first_bad']}")
            for note in result.get("notes") or []:
                print(f"  note: {note}")
        print(
            f"pytest-persist bisect: {builder.built} environment(s) built, {builder.reused} "
            f"reused from {cache / 'envs'}, {seconds:.1f} s"
        )
        if args.report:
            report = Path(args.report)
            report.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            print(f"pytest-persist bisect: report written to {report}")
    return exit_code


def _bisect_one(
    entry: Any,
    record: dict[str, Any],
    context: dict[str, Any],
    args: argparse.Namespace,
    label: str,
    bisection_class: Any,
    differences: Any,
) -> dict[str, Any]:
    started = time.perf_counter()
    worker = _EntryBisector(entry, record, context)
    result: dict[str, Any] = {
        "label": label,
        "test_id": entry.test_id,
        "backend": entry.backend,
        "estimator": entry.estimator_class,
        "entry": entry.path.name,
        "saved_python": worker.saved_python,
        "here_python": worker.here_python,
        "failure_here": _failure_summary(record),
    }
    _progress(f"{label}: saved with Python {worker.saved_python}; {_failure_summary(record)}")
    if worker.interpreter(worker.saved_python) is None:
        result.update(
            status="no_interpreter",
            message=(
                f"cannot be rebuilt: no interpreter for Python {worker.saved_python} (the "
                "Python it was saved with) here; install it (pyenv, uv python install) or give "
                f"--python {'.'.join(worker.saved_python.split('.')[:2])}=PATH"
            ),
            notes=worker.notes,
            environments=[],
        )
        return result
    if context["requirement"] is None:
        context["requirement"] = _pytest_persist_requirement(args, context["cache"], context["uv"])
    worker.prepare()
    changes = differences(worker.saved, worker.here)
    python = worker.python_change()
    if python is not None:
        changes.append(python)
    bisection = bisection_class(
        [],
        worker.try_moves,
        worker.releases,
        progress=lambda line: _progress(f"{label} {line}"),
        max_trials=args.max_environments,
    )
    baseline = bisection.trial({})
    bisection.changes = worker.order(changes, baseline) if baseline.status == "pass" else changes
    if baseline.status == "pass":
        shown = ", ".join(c.describe() for c in bisection.changes[:6])
        more = f" and {len(bisection.changes) - 6} more" if len(bisection.changes) > 6 else ""
        _progress(f"{label}: {len(bisection.changes)} differences, in this order: {shown}{more}")
    finding = bisection.run()
    data = finding.to_dict()
    trials = data.pop("trials")
    result.update(
        status=finding.status,
        message=finding.message,
        last_good=finding.last_good,
        first_bad=finding.first_bad,
        failure={
            "here": _failure_summary(record),
            "last_good": finding.good.summary or finding.good.status if finding.good else None,
            "first_bad": finding.bad.summary or finding.bad.status if finding.bad else None,
        },
        last_good_environment=data["good"],
        first_bad_environment=data["bad"],
        culprit=data["culprit"],
        harmless=data["harmless"],
        untested=data["untested"],
        notes=worker.notes + finding.notes,
        environments=trials,
        seconds=round(time.perf_counter() - started, 1),
    )
    return result
