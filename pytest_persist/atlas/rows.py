"""Version rows: (Python, scikit-learn, numpy) triples, what they install, which are impossible.

A *row* is one coherent (Python, scikit-learn, numpy) triple that installs from wheels. The
tables below were measured with ``uv pip install --only-binary :all:`` on manylinux x86_64; a row
they rule out is refused by ``validate_rows`` with the reason, before any environment is built.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "BASE_REQUIREMENTS",
    "DEFAULT_EXTRAS",
    "EXTRA_BACKENDS",
    "EXTRA_PACKAGES",
    "EXTRA_REQUIREMENTS",
    "RowError",
    "RowInstall",
    "VersionRow",
    "default_rows",
    "row_for",
    "row_install_args",
    "row_problems",
    "validate_rows",
]

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
        VersionRow("3.10", "1.1", "1.23"),
        VersionRow("3.11", "1.2", "1.24", pins=("scipy<1.16", "pandas<2.4", "skops<0.12")),
        VersionRow("3.11", "1.3", "1.26"),
        VersionRow("3.11", "1.4", "1.26"),
        VersionRow("3.12", "1.5", "2.0"),
        VersionRow("3.12", "1.6", "2.2"),
        VersionRow("3.10", "1.7", "2.2"),
        VersionRow("3.13", "1.8", "2.3"),
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


def row_for(rows: Iterable[VersionRow], python: str, sklearn: str, numpy: str) -> VersionRow:
    """The row a ``nox.parametrize``d session was called with."""
    for row in rows:
        if row.nox_params == (python, sklearn, numpy):
            return row
    raise LookupError(f"no row for python={python} sklearn={sklearn} numpy={numpy}")
