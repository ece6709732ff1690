"""Version rows, the save -> load chain between them, and the compatibility atlas.

Helpers for the project's and users' noxfiles. Importing this module never imports nox: only the
session helpers (which receive the ``session`` nox passes) and ``parametrize_rows`` touch it.

A *row* is one coherent (Python, scikit-learn, numpy) triple that installs from wheels. The
tables below were measured with ``uv pip install --only-binary :all:`` on manylinux x86_64; a row
they rule out is refused by ``validate_rows`` with the reason, before any environment is built.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .report import expand_environments
from .versions import FINGERPRINT_DISTRIBUTIONS

__all__ = [
    "ATLAS_FORMAT",
    "EXTRA_REQUIREMENTS",
    "REPORT_FORMAT",
    "CompatPair",
    "ReportError",
    "RowError",
    "RowInstall",
    "VersionRow",
    "add_pyenv_to_path",
    "chain_reports",
    "check_artifacts",
    "compat_chain",
    "default_rows",
    "describe_record",
    "install_row",
    "loads_into",
    "merge_reports",
    "parametrize_rows",
    "render_atlas_html",
    "render_atlas_markdown",
    "row_for",
    "row_install_args",
    "row_problems",
    "save_artifacts",
    "validate_rows",
    "write_atlas",
]

REPORT_FORMAT = "pytest-persist-report"
REPORT_FORMAT_VERSIONS = (1, 2)
ATLAS_FORMAT = "pytest-persist-atlas"
ATLAS_FORMAT_VERSION = 1

#: What every row installs besides scikit-learn and numpy (the plugin's own dependencies).
BASE_REQUIREMENTS = ("pytest>=7.4", "joblib>=1.1", "scipy>=1.7", "platformdirs>=3")

#: Optional pieces a row may install, by the name ``row_install_args`` takes.
EXTRA_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "cloudpickle": ("cloudpickle>=2.0",),
    "skops": ("skops>=0.9",),
    "onnx": ("skl2onnx>=1.16", "onnxruntime>=1.16"),
    "pandas": ("pandas>=1.3",),
    "xdist": ("pytest-xdist>=3.3",),
}

#: The distributions each extra brings in; a row's pin on one of them applies only with the extra.
EXTRA_PACKAGES: dict[str, frozenset[str]] = {
    "cloudpickle": frozenset({"cloudpickle"}),
    "skops": frozenset({"skops"}),
    "onnx": frozenset({"skl2onnx", "onnxruntime", "onnx"}),
    "pandas": frozenset({"pandas"}),
    "xdist": frozenset({"pytest-xdist"}),
}

#: The persistence backends each extra provides (reported as unavailable when it is dropped).
EXTRA_BACKENDS: dict[str, tuple[str, ...]] = {
    "cloudpickle": ("cloudpickle",),
    "skops": ("skops",),
    "onnx": ("onnx",),
}

DEFAULT_EXTRAS = ("cloudpickle", "skops", "onnx", "pandas")

# Series (major.minor) with manylinux x86_64 wheels for each Python, inclusive; None: no upper
# bound known. Measured by resolving every cell with ``uv pip compile --only-binary :all:``.
_WHEEL_SERIES: dict[str, dict[str, tuple[str, str | None]]] = {
    "numpy": {
        "3.10": ("1.21", "2.2"),
        "3.11": ("1.23", "2.4"),
        "3.12": ("1.26", None),
        "3.13": ("2.1", None),
    },
    "scikit-learn": {
        "3.10": ("1.0", "1.7"),
        "3.11": ("1.1", None),
        "3.12": ("1.3", None),
        "3.13": ("1.5", None),
    },
}

# Oldest numpy series each scikit-learn series resolves with (its own requirement).
_SKLEARN_MIN_NUMPY: dict[str, str] = {"1.7": "1.22", "1.8": "1.24", "1.9": "1.24"}

# scikit-learn resolves with numpy 2 from 1.0 on, but imports with it only from 1.4.2 on
# (``ImportError: cannot import name 'ComplexWarning' from 'numpy.core.numeric'``).
_FIRST_SKLEARN_FOR_NUMPY2 = (1, 4, 2)
_MIN_PYTHON = (3, 10)
_MIN_SKLEARN = (1, 0)


class _Cap(NamedTuple):
    package: str
    below: str
    reason: str


# Dependencies a scikit-learn series installs with but breaks on (its own requirements have no
# upper bound). Measured: 12 estimators of scikit-learn 1.0.2 fail with scipy 1.11 or numpy 1.24
# (Ridge family: scipy removed ``sym_pos``; NeighborhoodComponentsAnalysis; PowerTransformer
# uses ``np.warnings``); 1.1.3 uses neither. ``row_install_args`` adds the caps, and
# ``row_problems`` refuses a row whose numpy or pins require what the cap rules out.
_SKLEARN_CAPS: dict[str, tuple[_Cap, ...]] = {
    "1.0": (
        _Cap("numpy", "1.24", "uses np.warnings, removed in numpy 1.24 (PowerTransformer)"),
        _Cap("scipy", "1.11", "passes sym_pos, removed in scipy 1.11 (Ridge family, NCA)"),
    ),
}
_LOWER_BOUND_RE = re.compile(r"(===|==|~=|>=|>)\s*(\d+(?:\.\d+)*)")


class _ExtraLimit(NamedTuple):
    extra: str
    reason: str
    python_from: tuple[int, ...] | None = None
    sklearn_below: tuple[int, ...] | None = None
    numpy_below: tuple[int, ...] | None = None


# Extras that cannot install in some cells, as (extra, reason, condition). Measured: every extra
# resolves and imports in every default row and in the edge cells tried (scikit-learn 1.0 gets
# skl2onnx 1.16 and skops 0.10 there), so the table is empty; a row can still leave an extra out
# with ``VersionRow(without=...)``, and entries added here are applied by ``row_install_args``.
_EXTRA_LIMITS: tuple[_ExtraLimit, ...] = ()

_PYTHON_RE = re.compile(r"^3\.\d{1,2}$")
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?(\.post\d+)?$")
_PIN_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(===|==|!=|~=|>=|<=|<|>)")


def _pin_name(pin: str) -> str:
    match = _PIN_RE.match(pin)
    return match.group(1).lower().replace("_", "-") if match else pin.strip().lower()


def _vtuple(version: str) -> tuple[int, ...]:
    """The numeric release part of a version string: ``"1.4.1.post1"`` -> ``(1, 4, 1)``."""
    parts: list[int] = []
    for piece in version.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def _series(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _spec_range(spec: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Lowest and highest release a row's version field allows (``"1.4"`` is any 1.4.x)."""
    low = _vtuple(spec)
    if len(low) == 2:
        return (*low, 0), (*low, 10**6)
    return low, low


def _pin(spec: str) -> str:
    """A requirement specifier for a row's version field: ``1.4`` -> ``==1.4.*``."""
    return f"=={spec}.*" if len(spec.split(".")) == 2 else f"=={spec}"


@dataclasses.dataclass(frozen=True)
class VersionRow:
    """One coherent (Python, scikit-learn, numpy) environment.

    ``sklearn`` and ``numpy`` are a series (``"1.4"``: the newest 1.4.x) or an exact release
    (``"1.4.2"``); ``pins`` are further requirement strings (``"scipy<1.12"``); ``without``
    names extras known not to install in this row (their backends report ``unavailable``).
    """

    python: str
    sklearn: str
    numpy: str
    pins: tuple[str, ...] = ()
    id: str = ""
    without: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("pins", "without"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.id:
            object.__setattr__(self, "id", f"py{self.python}-skl{self.sklearn}-np{self.numpy}")

    @property
    def requirements(self) -> list[str]:
        """scikit-learn and numpy pinned as the row says, then the row's own pins."""
        return [f"scikit-learn{_pin(self.sklearn)}", f"numpy{_pin(self.numpy)}", *self.pins]

    def pins_for(self, extras: Iterable[str]) -> list[str]:
        """The row's pins, less those on packages of extras not in ``extras``."""
        chosen = set(extras)
        excluded = set().union(*(p for e, p in EXTRA_PACKAGES.items() if e not in chosen))
        return [pin for pin in self.pins if _pin_name(pin) not in excluded]

    @property
    def nox_params(self) -> tuple[str, str, str]:
        """The ``(python, sklearn, numpy)`` triple for ``nox.parametrize``."""
        return (self.python, self.sklearn, self.numpy)

    def sort_key(self) -> tuple[tuple[int, ...], ...]:
        """Older scikit-learn first, then older numpy, then older Python."""
        return (_vtuple(self.sklearn), _vtuple(self.numpy), _vtuple(self.python))

    def matches(self, environment: Mapping[str, Any]) -> bool:
        """Whether an environment fingerprint (a report's ``environment``) is this row."""
        python = str(environment.get("python", ""))
        sklearn = str(environment.get("scikit-learn", ""))
        numpy = str(environment.get("numpy", ""))
        return (
            _vtuple(python)[:2] == _vtuple(self.python)
            and _vtuple(sklearn)[: len(_vtuple(self.sklearn))] == _vtuple(self.sklearn)
            and _vtuple(numpy)[: len(_vtuple(self.numpy))] == _vtuple(self.numpy)
        )


def default_rows() -> list[VersionRow]:
    """The rows this project tests, oldest first; each installs every extra from wheels here.

    Chosen to cross the boundaries that matter: 1.0 (oldest supported), 1.2 -> 1.3 (tree
    pickles changed; InconsistentVersionWarning replaces the plain UserWarning), 1.4 (last with
    numpy 1 only here), 1.5 on numpy 2.0, 1.6, and the newest release on numpy 1 and 2 (numpy
    2 -> 1 is a known break for models holding a numpy Generator).
    """
    return [
        # Upper pins on the two oldest rows spare the resolver walking back through newer
        # skl2onnx/onnx/pandas releases (warm install 10.7 s -> 4.2 s).
        VersionRow(
            "3.10",
            "1.0",
            "1.21",
            pins=(
                "scipy<1.11",  # scikit-learn 1.0 breaks on scipy 1.11 (see _SKLEARN_CAPS)
                "pandas<2.1",
                "skops<0.11",
                "skl2onnx<1.17",
                "onnx<1.18",
                "onnxruntime<1.24",
            ),
        ),
        VersionRow("3.11", "1.2", "1.24", pins=("scipy<1.16", "pandas<2.4", "skops<0.12")),
        VersionRow("3.11", "1.3", "1.26"),
        VersionRow("3.11", "1.4", "1.26"),
        VersionRow("3.12", "1.5", "2.0"),
        VersionRow("3.12", "1.6", "2.2"),
        VersionRow("3.12", "1.9", "1.26"),
        VersionRow("3.13", "1.9", "2.5"),
    ]


class RowError(ValueError):
    """One or more rows cannot be built; the message lists every problem."""


def row_problems(row: VersionRow) -> list[str]:
    """Why ``row`` cannot install and import from wheels (empty when it can, as far as known)."""
    problems: list[str] = []
    if not isinstance(row.python, str) or not _PYTHON_RE.match(row.python):
        problems.append(f"python {row.python!r} is not a 'major.minor' version such as '3.12'")
    if not isinstance(row.sklearn, str) or not _VERSION_RE.match(row.sklearn):
        problems.append(
            f"sklearn {row.sklearn!r} is not a version such as '1.4' (newest 1.4.x) or '1.4.2'"
        )
    if not isinstance(row.numpy, str) or not _VERSION_RE.match(row.numpy):
        problems.append(
            f"numpy {row.numpy!r} is not a version such as '1.26' (newest 1.26.x) or '2.0.2'"
        )
    for pin in row.pins:
        match = _PIN_RE.match(pin) if isinstance(pin, str) else None
        if match is None:
            problems.append(f"pin {pin!r} is not a requirement such as 'scipy<1.12'")
        elif _pin_name(pin) in {"scikit-learn", "sklearn", "numpy"}:
            problems.append(f"pin {pin!r}: set scikit-learn and numpy through the row's fields")
    unknown = [extra for extra in row.without if extra not in EXTRA_REQUIREMENTS]
    if unknown:
        problems.append(
            f"without={unknown!r}: unknown extra(s); known: {', '.join(EXTRA_REQUIREMENTS)}"
        )
    if problems:
        return problems

    python = _vtuple(row.python)
    skl_high = _spec_range(row.sklearn)[1]
    np_low, np_high = _spec_range(row.numpy)
    if python < _MIN_PYTHON:
        problems.append(f"Python {row.python}: pytest-persist needs Python >= 3.10")
    if skl_high[:2] < _MIN_SKLEARN:
        problems.append(f"scikit-learn {row.sklearn}: pytest-persist needs scikit-learn >= 1.0")
    if np_low[0] >= 2 and skl_high < _FIRST_SKLEARN_FOR_NUMPY2:
        problems.append(
            f"scikit-learn {row.sklearn} with numpy {row.numpy}: installs, then fails at import "
            "(scikit-learn imports with numpy 2 from 1.4.2 on); pin numpy 1.x, e.g. '1.26'"
        )
    for package, spec in (("numpy", row.numpy), ("scikit-learn", row.sklearn)):
        bounds = _WHEEL_SERIES[package].get(row.python)
        if bounds is None:
            continue
        first, last = bounds
        series = _vtuple(_series(spec))
        if series < _vtuple(first) or (last is not None and series > _vtuple(last)):
            shown = f"{first} to {last}" if last else f"{first} and newer"
            problems.append(
                f"{package} {spec} has no wheels for Python {row.python} "
                f"({package} series with wheels there: {shown})"
            )
    min_numpy = _SKLEARN_MIN_NUMPY.get(_series(row.sklearn))
    if min_numpy is not None and np_high[:2] < _vtuple(min_numpy):
        problems.append(f"scikit-learn {row.sklearn} requires numpy >= {min_numpy}")
    for cap in _SKLEARN_CAPS.get(_series(row.sklearn), ()):
        lows = [np_low] if cap.package == "numpy" else _pin_lower_bounds(row.pins, cap.package)
        if any(low[:2] >= _vtuple(cap.below) for low in lows):
            problems.append(
                f"scikit-learn {row.sklearn} with {cap.package} >= {cap.below}: installs, then "
                f"fails: it {cap.reason}; use {cap.package} < {cap.below}"
            )
    return problems


def _pin_lower_bounds(pins: Iterable[str], package: str) -> list[tuple[int, ...]]:
    """The releases that ``pins`` on ``package`` require at least (``>=``, ``==``, ``~=``)."""
    return [
        _vtuple(match.group(2))
        for pin in pins
        if _pin_name(pin) == package
        for match in _LOWER_BOUND_RE.finditer(pin)
    ]


def _caps(row: VersionRow) -> list[str]:
    """The upper bounds the row's scikit-learn needs (``scipy<1.11`` for 1.0)."""
    return [f"{c.package}<{c.below}" for c in _SKLEARN_CAPS.get(_series(row.sklearn), ())]


def validate_rows(rows: Iterable[VersionRow]) -> list[VersionRow]:
    """Return ``rows`` as a list, or raise ``RowError`` naming every impossible row."""
    rows = list(rows)
    messages: list[str] = []
    seen: Counter[str] = Counter()
    for row in rows:
        if not isinstance(row, VersionRow):
            messages.append(f"{row!r} is not a VersionRow")
            continue
        seen[row.id] += 1
        messages.extend(f"row {row.id}: {problem}" for problem in row_problems(row))
    messages.extend(
        f"row id {row_id!r} appears {count} times; give rows distinct ids"
        for row_id, count in seen.items()
        if count > 1
    )
    if messages:
        raise RowError("impossible version rows:\n  " + "\n  ".join(messages))
    return rows


@dataclasses.dataclass
class RowInstall:
    """What to install for a row: requirement strings, and the extras left out with why."""

    row: VersionRow
    requirements: list[str]
    dropped: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def unavailable_backends(self) -> list[str]:
        """Backends that will report ``unavailable`` in this row because an extra was dropped."""
        return [b for extra in self.dropped for b in EXTRA_BACKENDS.get(extra, ())]


def row_install_args(row: VersionRow, extras: Iterable[str] = DEFAULT_EXTRAS) -> RowInstall:
    """The pip/uv requirement strings that build ``row`` with ``extras``.

    Extras that cannot install in this row are dropped and reported in ``dropped`` (their
    backends then report ``unavailable``, not a failure). Raises ``RowError`` for an impossible
    row and ``ValueError`` for an unknown extra.
    """
    validate_rows([row])
    extras = list(dict.fromkeys(extras))
    unknown = [e for e in extras if e not in EXTRA_REQUIREMENTS]
    if unknown:
        raise ValueError(
            f"unknown extra(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(EXTRA_REQUIREMENTS)}"
        )
    dropped: dict[str, str] = {}
    python = _vtuple(row.python)
    skl_high = _spec_range(row.sklearn)[1]
    np_high = _spec_range(row.numpy)[1]
    for extra in extras:
        if extra in row.without:
            dropped[extra] = f"left out by row {row.id} (without={list(row.without)})"
            continue
        for limit in _EXTRA_LIMITS:
            if limit.extra == extra and (
                (limit.python_from is not None and python >= limit.python_from)
                or (limit.sklearn_below is not None and skl_high < limit.sklearn_below)
                or (limit.numpy_below is not None and np_high < limit.numpy_below)
            ):
                dropped[extra] = limit.reason
                break
    kept = [extra for extra in extras if extra not in dropped]
    requirements = [*row.requirements[:2], *row.pins_for(kept), *_caps(row), *BASE_REQUIREMENTS]
    for extra in kept:
        requirements.extend(EXTRA_REQUIREMENTS[extra])
    return RowInstall(row, list(dict.fromkeys(requirements)), dropped)


class CompatPair(NamedTuple):
    """Artifacts saved under ``saved`` are loaded and checked under ``loaded``."""

    saved: VersionRow
    loaded: VersionRow

    @property
    def id(self) -> str:
        return f"{self.saved.id}->{self.loaded.id}"


def compat_chain(
    rows: Iterable[VersionRow], mode: Literal["forward", "all"] = "forward"
) -> list[CompatPair]:
    """Which row's artifacts each row loads.

    ``"all"``: every ordered pair of distinct rows. ``"forward"``: every older row into every
    newer one (ordered by scikit-learn, then numpy, then Python), the newest into the oldest
    (the downgrade users attempt when an upgrade goes wrong), and both directions between rows
    sharing a scikit-learn series (numpy 2 -> 1 alone breaks some models).
    """
    ordered = sorted(rows, key=VersionRow.sort_key)
    ids = Counter(row.id for row in ordered)
    duplicated = [row_id for row_id, count in ids.items() if count > 1]
    if duplicated:
        raise RowError(f"duplicate row ids in the chain: {', '.join(duplicated)}")
    if mode == "all":
        return [CompatPair(a, b) for a in ordered for b in ordered if a is not b]
    if mode != "forward":
        raise ValueError(f"unknown chain mode {mode!r}; use 'forward' or 'all'")
    pairs = [CompatPair(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]]
    if len(ordered) > 1:
        pairs.append(CompatPair(ordered[-1], ordered[0]))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if _series(a.sklearn) == _series(b.sklearn):
                pairs.append(CompatPair(b, a))
    return list(dict.fromkeys(pairs))


def loads_into(row: VersionRow, chain: Iterable[CompatPair]) -> list[VersionRow]:
    """The rows whose artifacts ``row`` checks, in chain order."""
    return [pair.saved for pair in chain if pair.loaded.id == row.id]


def chain_reports(
    report_dir: str | os.PathLike[str], chain: Iterable[CompatPair]
) -> tuple[list[Path], list[Path]]:
    """The reports a chain writes into ``report_dir``, as (present, missing).

    One ``<row id>__<row id>.json`` per row (its saving run) and one ``<saved>__<loaded>.json``
    per pair, as ``save_artifacts`` and ``check_artifacts`` name them in the noxfiles; reports
    of rows or pairs no longer in the chain are left out.
    """
    folder = Path(report_dir)
    chain = list(chain)
    rows = {row.id: row for pair in chain for row in pair}
    names = [f"{i}__{i}.json" for i in rows] + [f"{p.saved.id}__{p.loaded.id}.json" for p in chain]
    paths = [folder / name for name in dict.fromkeys(names)]
    return [p for p in paths if p.is_file()], [p for p in paths if not p.is_file()]


def row_for(rows: Iterable[VersionRow], python: str, sklearn: str, numpy: str) -> VersionRow:
    """The row a ``nox.parametrize``d session was called with."""
    for row in rows:
        if row.nox_params == (python, sklearn, numpy):
            return row
    raise LookupError(f"no row for python={python} sklearn={sklearn} numpy={numpy}")


# ---------------------------------------------------------------------------------------------
# Reports -> atlas


class ReportError(ValueError):
    """A report file that cannot be merged; the message names the file."""


_KINDS = (
    "passed",
    "mismatch",
    "dump_error",
    "load_error",
    "method_error",
    "unsupported",
    "unavailable",
)

# Display status: the outcome kind, with "passed" split by whether a version warning fired.
_STATUS = {
    # status: (symbol for markdown, letter for HTML, colour, label, severity)
    "mismatch": ("❌", "≠", "#c2185b", "mismatch: loaded, then predicted differently", 8),
    "load_error": ("💥", "L", "#b71c1c", "load_error: the artifact did not load", 7),
    "method_error": ("🚫", "E", "#ef6c00", "method_error: loaded, then a method raised", 6),
    "dump_error": ("🧨", "D", "#6d4c41", "dump_error: could not be saved", 5),
    "warned": ("⚠️", "w", "#c0ca33", "passed, with a version warning", 4),
    "passed": ("✅", "✓", "#43a047", "passed: same outputs", 3),
    "unsupported": ("⚪", "-", "#9e9e9e", "unsupported: the backend cannot handle it", 2),
    "unavailable": ("⬜", "·", "#e0e0e0", "unavailable: backend not installed", 1),
    "absent": ("", "", "#ffffff", "no record for this pair", 0),
}


def _env_columns(environments: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The environment columns some row has a value for."""
    return [c for c in _ENV_COLUMNS if any(c in env for env in environments.values())]


_FAILURE_KINDS = ("mismatch", "load_error", "method_error", "dump_error")
#: The environment columns of the atlas: the fingerprint's libraries that decide a load.
_ENV_COLUMNS = (
    "python",
    *(d for d in FINGERPRINT_DISTRIBUTIONS if d not in {"pandas", "pytest-persist"}),
)


def _status(record: Mapping[str, Any]) -> str:
    kind = record.get("kind", "")
    if kind == "passed" and record.get("version_warnings"):
        return "warned"
    return kind if kind in _STATUS else "absent"


def _env_label(environment: Mapping[str, Any], rows: Sequence[VersionRow]) -> str:
    for row in rows:
        if row.matches(environment):
            return row.id
    python = ".".join(str(p) for p in _vtuple(str(environment.get("python", "?")))[:2]) or "?"
    return f"py{python}-skl{environment.get('scikit-learn', '?')}-np{environment.get('numpy', '?')}"


def _env_sort_key(environment: Mapping[str, Any]) -> tuple[tuple[int, ...], ...]:
    return (
        _vtuple(str(environment.get("scikit-learn", "0"))),
        _vtuple(str(environment.get("numpy", "0"))),
        _vtuple(str(environment.get("python", "0"))),
    )


def _report_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.rglob("*.json")))
        else:
            files.append(path)
    return files


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ReportError(f"{path}: not a pytest-persist report (no format {REPORT_FORMAT!r})")
    if report.get("format_version") not in REPORT_FORMAT_VERSIONS:
        raise ReportError(
            f"{path}: report format_version {report.get('format_version')!r} is not supported "
            f"(this pytest-persist reads {', '.join(map(str, REPORT_FORMAT_VERSIONS))})"
        )
    if not isinstance(report.get("records"), list):
        raise ReportError(f"{path}: 'records' is missing or not a list")
    try:  # version 2 holds each environment once: back to the version 1 shape read below
        report = expand_environments(report)
    except ValueError as exc:
        raise ReportError(f"{path}: {exc}") from None
    if not isinstance(report.get("environment", {}), dict):
        raise ReportError(f"{path}: 'environment' is not an object")
    for index, record in enumerate(report["records"]):
        if not isinstance(record, dict) or record.get("kind") not in _KINDS:
            kind = record.get("kind") if isinstance(record, dict) else record
            raise ReportError(f"{path}: record {index} has no known kind ({kind!r})")
    return report


def merge_reports(
    paths: Iterable[str | os.PathLike[str]], rows: Sequence[VersionRow] = ()
) -> dict[str, Any]:
    """Read JSON reports (files, or folders searched for ``*.json``) into one atlas.

    Every record is tagged with ``saved_row`` and ``loaded_row``: for a ``check`` record from the
    saved and loaded environments in its details, for a ``roundtrip`` record both are the
    report's own environment. Rows are named by the matching ``VersionRow`` id, else by the
    versions found. Raises ``ReportError`` naming the file for an unreadable or foreign report.
    """
    rows = list(rows)
    environments: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    sources: list[str] = []
    for path in _report_files(paths):
        report = _read_report(path)
        sources.append(str(path))
        environment = report.get("environment") or {}
        for record in report["records"]:
            details = record.get("details") or {}
            if record.get("mode") == "check":
                saved_env = details.get("saved_environment") or {}
                loaded_env = details.get("loaded_environment") or environment
            else:
                saved_env = loaded_env = environment
            saved, loaded = _env_label(saved_env, rows), _env_label(loaded_env, rows)
            environments.setdefault(saved, dict(saved_env))
            environments.setdefault(loaded, dict(loaded_env))
            records.append(
                {
                    **record,
                    "saved_row": saved,
                    "loaded_row": loaded,
                    "pair": f"{saved} -> {loaded}",
                    "source": path.name,
                }
            )
    _label_estimators(records)
    row_order = {row.id: index for index, row in enumerate(sorted(rows, key=VersionRow.sort_key))}

    def label_key(label: str) -> tuple[Any, ...]:
        if label in row_order:
            return (0, row_order[label])
        return (1, _env_sort_key(environments.get(label, {})), label)

    labels = sorted(environments, key=label_key)
    pairs = sorted(
        {(r["saved_row"], r["loaded_row"]) for r in records},
        key=lambda p: (label_key(p[0]), label_key(p[1])),
    )
    return {
        "format": ATLAS_FORMAT,
        "format_version": ATLAS_FORMAT_VERSION,
        "sources": sources,
        "environments": {label: environments[label] for label in labels},
        "pairs": [f"{a} -> {b}" for a, b in pairs],
        "backends": list(dict.fromkeys(r.get("backend", "?") for r in records)),
        "estimators": sorted({r.get("estimator", "?") for r in records}),
        "records": records,
    }


def _test_name(test_id: str) -> str:
    """``examples/x.py::test_forest[joblib]`` -> ``test_forest``."""
    return test_id.rpartition("::")[2].partition("[")[0] or test_id


def _label_estimators(records: list[dict[str, Any]]) -> None:
    """Name estimators that several tests save (two ``Pipeline``s) after their test too.

    The class name stays in ``estimator_name``; ``estimator`` becomes ``Pipeline (test_x)``.
    """
    tests: dict[str, set[str]] = {}
    for record in records:
        name = record.get("estimator_name") or record.get("estimator", "?")
        tests.setdefault(name, set()).add(_test_name(str(record.get("test_id", ""))))
    for record in records:
        name = record.setdefault("estimator_name", record.get("estimator", "?"))
        if len(tests[name]) > 1:
            record["estimator"] = f"{name} ({_test_name(str(record.get('test_id', '')))})"


def _short_env(environment: Mapping[str, Any]) -> str:
    keys = ("python", "scikit-learn", "numpy", "scipy")
    return ", ".join(f"{k} {environment[k]}" for k in keys if environment.get(k))


def describe_record(record: Mapping[str, Any], atlas: Mapping[str, Any] | None = None) -> str:
    """A plain-text account of one atlas record: what happened, with which versions."""
    environments = (atlas or {}).get("environments", {})
    lines = [
        f"{record.get('estimator', '?')} via {record.get('backend', '?')}: "
        f"{_STATUS[_status(record)][3]}"
    ]
    saved, loaded = record.get("saved_row", "?"), record.get("loaded_row", "?")
    lines.append(f"saved under {saved} ({_short_env(environments.get(saved, {}))})")
    if loaded != saved:
        lines.append(f"loaded under {loaded} ({_short_env(environments.get(loaded, {}))})")
    if record.get("error"):
        lines.append(str(record["error"]).strip())
    for diff in record.get("differences") or []:
        if diff.get("tolerated"):
            continue
        text = f"{diff.get('method', '?')}{diff.get('path') or ''}: {diff.get('message', '')}"
        if diff.get("n_different") is not None and diff.get("n_total") is not None:
            text += f"; {diff['n_different']} of {diff['n_total']} differ"
        if diff.get("max_abs") is not None:
            text += f"; max abs diff {diff['max_abs']:.3g}"
        lines.append(text)
    state = record.get("state_differences") or []
    if state:
        lines.append("fitted state differs at: " + ", ".join(map(str, state[:5])))
    warnings = record.get("version_warnings") or []
    if warnings:
        seen = Counter(
            f"{w.get('category', 'warning')} from {w.get('estimator', '?')} "
            f"({w.get('original_version')} -> {w.get('current_version')})"
            for w in warnings
        )
        for text, count in seen.items():
            lines.append(text + (f" x{count}" if count > 1 else ""))
    return "\n".join(lines)


def _cells(atlas: Mapping[str, Any]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in atlas.get("records", []):
        key = (record["pair"], record.get("estimator", "?"), record.get("backend", "?"))
        cells.setdefault(key, []).append(record)
    return cells


def _worst(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return "absent"
    return max((_status(r) for r in records), key=lambda s: _STATUS[s][4])


def _counts(atlas: Mapping[str, Any]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {pair: Counter() for pair in atlas.get("pairs", [])}
    for record in atlas.get("records", []):
        counts.setdefault(record["pair"], Counter())[_status(record)] += 1
    return counts


def _findings(atlas: Mapping[str, Any]) -> list[dict[str, Any]]:
    failed = [r for r in atlas.get("records", []) if r.get("kind") in _FAILURE_KINDS]
    pair_index = {pair: i for i, pair in enumerate(atlas.get("pairs", []))}
    return sorted(
        failed,
        key=lambda r: (
            _FAILURE_KINDS.index(r["kind"]),
            pair_index.get(r["pair"], 0),
            r.get("estimator", ""),
            r.get("backend", ""),
        ),
    )


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")


def _status_order() -> list[str]:
    return [s for s in sorted(_STATUS, key=lambda s: -_STATUS[s][4]) if s != "absent"]


def render_atlas_markdown(atlas: Mapping[str, Any]) -> str:
    """The atlas as markdown: environments, a summary per pair, the failures, the full grid."""
    environments = atlas.get("environments", {})
    backends, estimators = atlas.get("backends", []), atlas.get("estimators", [])
    records = atlas.get("records", [])
    statuses = _status_order()
    out = [
        "# pytest-persist compatibility atlas",
        "",
        f"{len(records)} records from {len(atlas.get('sources', []))} reports: "
        f"{len(atlas.get('pairs', []))} saved -> loaded pairs, {len(backends)} backends, "
        f"{len(estimators)} estimators.",
        "",
        "Legend: " + " · ".join(f"{_STATUS[s][0]} {_STATUS[s][3]}" for s in statuses),
        "",
        "## Environments",
        "",
    ]
    columns = _env_columns(environments)
    out.append("| row | " + " | ".join(columns) + " |")
    out.append("|---" * (len(columns) + 1) + "|")
    for label, env in environments.items():
        out.append(f"| {_md(label)} | " + " | ".join(_md(env.get(c, "")) for c in columns) + " |")
    out += ["", "## Summary", ""]
    out.append(
        "| saved under | loaded under | " + " | ".join(_STATUS[s][0] for s in statuses) + " |"
    )
    out.append("|---|---" + "|---:" * len(statuses) + "|")
    for pair, counts in _counts(atlas).items():
        saved, loaded = pair.split(" -> ")
        out.append(
            f"| {_md(saved)} | {_md(loaded)} | "
            + " | ".join(str(counts.get(s, 0) or "") for s in statuses)
            + " |"
        )
    findings = _findings(atlas)
    out += ["", "## Findings", ""]
    if not findings:
        out.append("No mismatch, load error, method error or dump error.")
    for record in findings:
        text = describe_record(record, atlas).split("\n")
        out.append(f"- {_STATUS[record['kind']][0]} **{text[0]}**")
        out.extend(f"  - {line}" for line in text[1:])
    warned = Counter(r["pair"] for r in records if r.get("version_warnings"))
    if warned:
        out += ["", "### Version warnings", ""]
        out += [f"- {pair}: {count} records" for pair, count in warned.items()]
    out += ["", "## Grid", "", "| saved -> loaded | estimator | " + " | ".join(backends) + " |"]
    out.append("|---|---" + "|:---:" * len(backends) + "|")
    cells = _cells(atlas)
    for pair in atlas.get("pairs", []):
        for estimator in estimators:
            row = [_STATUS[_worst(cells.get((pair, estimator, b), []))][0] for b in backends]
            if any(row):
                out.append(f"| {_md(pair)} | {_md(estimator)} | " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse}td,th{padding:2px 6px}
.env td,.env th,.sum td,.sum th{border:1px solid #ccc}
.grid{font-size:11px}
.grid td.c{width:16px;height:16px;padding:0;text-align:center;border:1px solid #fff;
 color:#fff;font-weight:bold;cursor:default}
.grid th.est{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;vertical-align:top;
 white-space:nowrap;border-left:2px solid #fff;padding:4px 0;font-weight:normal}
.grid th.be{font-weight:normal;color:#555;font-size:10px}
.grid td.pair{white-space:nowrap;text-align:right;padding-right:8px}
.grid td.first{border-left:3px solid #fff}
.legend span.k{display:inline-block;width:16px;height:16px;text-align:center;color:#fff;
 font-weight:bold;margin:0 4px 0 12px;vertical-align:middle}
.light{color:#333!important}
details{margin:.3em 0}pre{white-space:pre-wrap;margin:.2em 0 .6em 1.5em}
"""


def render_atlas_html(atlas: Mapping[str, Any]) -> str:
    """The atlas as one self-contained HTML page (inline CSS, no scripts, no network assets)."""
    esc = html.escape
    environments = atlas.get("environments", {})
    backends, estimators = atlas.get("backends", []), atlas.get("estimators", [])
    cells = _cells(atlas)
    statuses = _status_order()
    light = {"warned", "unavailable", "absent"}

    def box(status: str, title: str, extra: str = "") -> str:
        _symbol, letter, colour, _label, _ = _STATUS[status]
        klass = f"c s-{status}" + (" light" if status in light else "") + extra
        return (
            f'<td class="{klass}" style="background:{colour}" title="{esc(title)}">'
            f"{esc(letter)}</td>"
        )

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>pytest-persist compatibility atlas</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>pytest-persist compatibility atlas</h1>",
        f"<p>{len(atlas.get('records', []))} records from {len(atlas.get('sources', []))} "
        f"reports: {len(atlas.get('pairs', []))} saved &rarr; loaded pairs, {len(backends)} "
        f"backends, {len(estimators)} estimators. Hover a cell for the error or difference.</p>",
        '<p class="legend">',
    ]
    for status in statuses:
        _symbol, letter, colour, label, _ = _STATUS[status]
        klass = "k light" if status in light else "k"
        parts.append(
            f'<span class="{klass}" style="background:{colour}">{esc(letter)}</span>{esc(label)}'
        )
    parts.append("</p><h2>Environments</h2>")
    columns = _env_columns(environments)
    parts.append('<table class="env"><tr><th>row</th>')
    parts += [f"<th>{esc(c)}</th>" for c in columns]
    parts.append("</tr>")
    for label, env in environments.items():
        parts.append(f"<tr><td>{esc(label)}</td>")
        parts += [f"<td>{esc(str(env.get(c, '')))}</td>" for c in columns]
        parts.append("</tr>")
    parts.append("</table>")

    # Each estimator gets columns only for the backends it went through.
    used = {(e, b) for (_pair, e, b) in cells}
    columns = {e: [b for b in backends if (e, b) in used] or backends for e in estimators}
    parts.append("<h2>Grid: saved under &rarr; loaded under, by estimator and backend</h2>")
    parts.append('<table class="grid"><tr><th></th>')
    parts += [f'<th class="est" colspan="{len(columns[e])}">{esc(e)}</th>' for e in estimators]
    parts.append('</tr><tr><th class="be">backend &rarr;</th>')
    for estimator in estimators:
        parts += [f'<th class="be" title="{esc(b)}">{esc(b[:2])}</th>' for b in columns[estimator]]
    parts.append("</tr>")
    for pair in atlas.get("pairs", []):
        parts.append(f'<tr><td class="pair">{esc(pair.replace(" -> ", " → "))}</td>')
        for estimator in estimators:
            for index, backend in enumerate(columns[estimator]):
                records = cells.get((pair, estimator, backend), [])
                status = _worst(records)
                title = (
                    "\n\n".join(describe_record(r, atlas) for r in records)
                    if records
                    else f"{estimator} via {backend}, {pair}: no record"
                )
                parts.append(box(status, title, " first" if index == 0 else ""))
        parts.append("</tr>")
    parts.append("</table>")
    parts.append("<p>Backends: " + ", ".join(f"{esc(b[:2])} = {esc(b)}" for b in backends) + "</p>")

    parts.append('<h2>Summary</h2><table class="sum"><tr><th>saved under</th>')
    parts.append("<th>loaded under</th>")
    parts += [f"<th>{esc(_STATUS[s][3].split(':')[0])}</th>" for s in statuses]
    parts.append("</tr>")
    for pair, counts in _counts(atlas).items():
        saved, loaded = pair.split(" -> ")
        parts.append(f"<tr><td>{esc(saved)}</td><td>{esc(loaded)}</td>")
        parts += [f"<td>{counts.get(s, 0) or ''}</td>" for s in statuses]
        parts.append("</tr>")
    parts.append("</table>")

    findings = _findings(atlas)
    parts.append("<h2>Findings</h2>")
    if not findings:
        parts.append("<p>No mismatch, load error, method error or dump error.</p>")
    for record in findings:
        text = describe_record(record, atlas)
        head, _, rest = text.partition("\n")
        parts.append(
            f"<details><summary>{esc(_STATUS[record['kind']][1])} {esc(record['pair'])}: "
            f"{esc(head)}</summary><pre>{esc(rest)}</pre></details>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_atlas(
    reports: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    rows: Sequence[VersionRow] = (),
) -> dict[str, Path]:
    """Merge ``reports``; write ``atlas.json``, ``atlas.md`` and ``atlas.html`` into ``out_dir``."""
    atlas = merge_reports(reports, rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "json": out / "atlas.json",
        "markdown": out / "atlas.md",
        "html": out / "atlas.html",
    }
    contents = {
        "json": json.dumps(atlas, indent=1, sort_keys=False, default=str),
        "markdown": render_atlas_markdown(atlas),
        "html": render_atlas_html(atlas),
    }
    for key, path in written.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(contents[key], encoding="utf-8")
        tmp.replace(path)
    return written


# ---------------------------------------------------------------------------------------------
# Session helpers (nox is imported only here, lazily)

IMPORT_CHECK = (
    "import sklearn, numpy, scipy; from sklearn.ensemble import RandomForestClassifier; "
    "print('scikit-learn', sklearn.__version__, 'numpy', numpy.__version__, "
    "'scipy', scipy.__version__)"
)


def parametrize_rows(rows: Sequence[VersionRow]) -> Any:
    """``@nox.parametrize("python,sklearn,numpy", ...)`` over ``rows``, with their ids."""
    import nox

    rows = validate_rows(rows)
    return nox.parametrize(
        "python,sklearn,numpy", [row.nox_params for row in rows], ids=[row.id for row in rows]
    )


def add_pyenv_to_path(
    pythons: Iterable[str], root: str | os.PathLike[str] | None = None
) -> list[str]:
    """Put the newest pyenv interpreter of each ``major.minor`` on PATH; return those missing.

    nox finds interpreters on PATH only; pyenv keeps them in ``$PYENV_ROOT/versions/X.Y.Z``.
    """
    base = Path(root or os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    path = os.environ.get("PATH", "").split(os.pathsep)
    missing: list[str] = []
    for python in dict.fromkeys(pythons):
        found = sorted(
            (p for p in base.glob(f"{python}.*") if (p / "bin" / f"python{python}").exists()),
            key=lambda p: _vtuple(p.name),
        )
        if not found:
            missing.append(python)
            continue
        folder = str(found[-1] / "bin")
        if folder not in path:
            path.insert(0, folder)
    os.environ["PATH"] = os.pathsep.join(path)
    return missing


def install_row(
    session: Any,
    row: VersionRow,
    extras: Iterable[str] = DEFAULT_EXTRAS,
    *,
    project: str = ".",
    packages: Sequence[str] = (),
) -> RowInstall:
    """Install ``row`` from wheels only, then ``project`` without its dependencies.

    ``packages`` are resolved together with the row (``"pytest-persist"`` in a user's project,
    whose own package is ``project``). Dropped extras are announced with ``session.warn``; their
    backends report ``unavailable``.
    """
    if session.python and str(session.python) != row.python:
        session.error(f"session runs Python {session.python} but row {row.id} needs {row.python}")
    plan = row_install_args(row, extras)
    for extra, reason in plan.dropped.items():
        session.warn(f"{row.id}: extra {extra!r} left out ({reason}); its backends are unavailable")
    session.install("--only-binary", ":all:", *plan.requirements, *packages)
    session.install("--no-deps", project)
    session.run("python", "-c", IMPORT_CHECK)
    return plan


def save_artifacts(
    session: Any,
    row: VersionRow,
    store_root: str | os.PathLike[str],
    *pytest_args: str,
    tests: Sequence[str] = ("examples/compat",),
    report_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Run ``tests`` with ``--persist-save`` into a fresh ``store_root/<row id>``; return it.

    The folder is emptied first, so entries of tests deleted since never linger. Failed round
    trips are findings of that row (in the report), so they do not stop the session.
    """
    store = Path(store_root).resolve() / row.id
    if store.exists():
        shutil.rmtree(store)
    args = [
        "python",
        "-m",
        "pytest",
        *tests,
        "-p",
        "no:cacheprovider",
        "--persist-save",
        str(store),
    ]
    if report_path is not None:
        args += ["--persist-report", str(Path(report_path).resolve())]
    session.run(*args, *pytest_args, success_codes=[0, 1])
    return store


#: What a loading row's pytest sees: no project conftest, no tests, only the stored entries.
_EMPTY_INI = "[pytest]\n# pytest-persist: checking stored artifacts only\n"


def check_artifacts(
    session: Any,
    row: VersionRow,
    store_root: str | os.PathLike[str],
    report_path: str | os.PathLike[str],
    *pytest_args: str,
    saved: Sequence[VersionRow] = (),
    workers: int | None = None,
) -> list[Path]:
    """Check, in ``row``, the artifacts each row in ``saved`` stored under ``store_root``.

    pytest runs in an empty folder, with its empty ``pytest.ini`` as ``-c`` and ``--rootdir``
    (a path argument would otherwise lead pytest to the project's ini), so nothing of the
    project (its tests, conftest or ini options) is used: only the stored entries. One run per saved
    row, each writing ``report_path`` (a folder) / ``<saved id>__<row id>.json``; ``workers``
    adds ``-n`` (pytest-xdist, the ``xdist`` extra). Failures are the atlas' findings, so they do
    not stop the session; a saved row with no store is reported with ``session.warn``.
    """
    reports: list[Path] = []
    out = Path(report_path).resolve()
    out.mkdir(parents=True, exist_ok=True)
    empty = Path(session.create_tmp()).resolve() / "persist-check"
    if empty.exists():
        shutil.rmtree(empty)
    empty.mkdir(parents=True)
    (empty / "pytest.ini").write_text(_EMPTY_INI, encoding="utf-8")
    parallel = ["-n", str(workers)] if workers and workers > 1 else []
    for saved_row in saved:
        store = Path(store_root).resolve() / saved_row.id
        if not store.is_dir():
            session.warn(f"no artifacts saved under {saved_row.id} in {store}; skipped")
            continue
        report = out / f"{saved_row.id}__{row.id}.json"
        with session.chdir(empty):
            session.run(
                "python",
                "-m",
                "pytest",
                "-c",
                str(empty / "pytest.ini"),
                "--rootdir",
                str(empty),
                "-p",
                "no:cacheprovider",
                *parallel,
                f"--persist-load={store}",
                "--persist-report",
                str(report),
                *pytest_args,
                success_codes=[0, 1],
            )
        reports.append(report)
    return reports
