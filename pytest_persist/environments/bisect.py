"""Which change between two environments breaks something: the package, then the release.

Plain data in, a callable that tries an environment out: ``Bisection(changes, try_moves,
releases).run()``. ``try_moves({"scikit-learn": "1.3.0"})`` builds the saved environment
with those packages moved (the resolver carrying what it must) and says whether the thing
passes there (``PASS``), fails (``FAIL``) or could not be tried (``BROKEN``: no coherent
environment, e.g. scikit-learn 1.2 with numpy 2). Nothing here builds or checks anything.

The search:

1. The saved environment, rebuilt, must pass (else it cannot be reproduced).
2. The changes, ordered dependents first (scikit-learn before numpy: an old scikit-learn
   rarely runs with a new numpy, a new one usually supports an old numpy), are moved one more
   at a time: the first prefix that fails names the package. All the version changes are
   tried first, then the packages only on one side, only if the changes alone pass.
3. Within that package, the releases between the two versions (patch releases included)
   are bisected, with the packages before it in the order moved too.
4. One more environment: everything as here but that package at its last good release. If
   it passes, every other change is harmless.

A ``BROKEN`` environment is skipped, as ``git bisect skip`` does: its neighbours are tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BROKEN",
    "FAIL",
    "PASS",
    "Bisection",
    "Change",
    "Finding",
    "Trial",
    "dependents_first",
    "differences",
]

PASS, FAIL, BROKEN = "pass", "fail", "broken"
ABSENT = "absent"


@dataclass(frozen=True)
class Change:
    """One package whose version differs (``None``: not installed on that side)."""

    package: str
    saved: str | None
    here: str | None

    def describe(self) -> str:
        return f"{self.package} {self.saved or ABSENT} -> {self.here or ABSENT}"

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.package, "saved": self.saved, "here": self.here}


@dataclass
class Trial:
    """One environment tried: the moves asked for (relative to the saved set), the outcome."""

    moves: dict[str, str | None]
    status: str
    summary: str = ""
    #: what is installed there (name -> version), as resolved
    installed: dict[str, str] = field(default_factory=dict)
    #: what the resolver moved besides the moves asked for ("joblib 1.3.2 -> 1.6.0")
    also_moved: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def label(self) -> str:
        if not self.moves:
            return "as saved"
        return ", ".join(f"{p} {v or ABSENT}" for p, v in self.moves.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "moves": self.moves,
            "status": self.status,
            "summary": self.summary,
            "installed": self.installed,
            "also_moved": self.also_moved,
            "details": self.details,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Finding:
    """What the search found. ``status``: ``found`` (``culprit``, ``last_good`` and
    ``first_bad`` set), ``not_reproducible`` (the saved environment does not pass), ``not_found``
    (every change together passes) or ``inconclusive`` (environments that could not be tried
    hid the boundary, or the budget ran out)."""

    status: str
    message: str
    culprit: Change | None = None
    last_good: dict[str, str] | None = None  # {"package", "version"}
    first_bad: dict[str, str] | None = None
    good: Trial | None = None
    bad: Trial | None = None
    harmless: list[Change] = field(default_factory=list)
    untested: list[Change] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "culprit": self.culprit.to_dict() if self.culprit else None,
            "last_good": self.last_good,
            "first_bad": self.first_bad,
            "good": self.good.to_dict() if self.good else None,
            "bad": self.bad.to_dict() if self.bad else None,
            "harmless": [c.to_dict() for c in self.harmless],
            "untested": [c.to_dict() for c in self.untested],
            "notes": self.notes,
            "trials": [t.to_dict() for t in self.trials],
        }


def differences(
    saved: Mapping[str, str], here: Mapping[str, str], *, ignore: Iterable[str] = ()
) -> list[Change]:
    """Every package whose version differs between the two sets, sorted by name."""
    skipped = set(ignore)
    names = sorted((set(saved) | set(here)) - skipped)
    return [
        Change(name, saved.get(name), here.get(name))
        for name in names
        if saved.get(name) != here.get(name)
    ]


def dependents_first(
    changes: Sequence[Change],
    requires: Mapping[str, Iterable[str]],
    priority: Sequence[str] = (),
) -> list[Change]:
    """``changes`` with every package before the packages it requires (directly or not,
    among the changes), version changes first, then added, then removed packages; ties in
    ``priority``'s order, then by name. A cycle is broken at its first package by that order."""
    rank = {name: i for i, name in enumerate(priority)}

    def key(change: Change) -> tuple[int, int, str]:
        group = 0 if change.saved and change.here else (1 if change.here else 2)
        return (group, rank.get(change.package, len(rank)), change.package)

    by_name = {c.package: c for c in changes}
    # edges among the changes: package -> the changed packages it requires, transitively
    reach: dict[str, set[str]] = {}

    def closure(name: str, stack: tuple[str, ...] = ()) -> set[str]:
        if name in reach:
            return reach[name]
        found: set[str] = set()
        for dep in requires.get(name, ()):
            if dep == name or dep in stack:
                continue
            if dep in by_name:
                found.add(dep)
            found |= closure(dep, (*stack, name))
        reach[name] = found
        return found

    ordered: list[Change] = []
    for group in (0, 1, 2):
        remaining = sorted((c for c in changes if key(c)[0] == group), key=key)
        while remaining:
            # a package nobody remaining requires (a dependent of the rest) goes first
            required = set().union(*(closure(c.package) for c in remaining))
            free = [c for c in remaining if c.package not in required]
            chosen = free[0] if free else remaining[0]  # a cycle
            ordered.append(chosen)
            remaining.remove(chosen)
    return ordered


class Bisection:
    """The search of the module docstring over ``changes`` (ordered: see
    ``dependents_first``). ``releases(change)`` lists the versions from ``change.saved`` to
    ``change.here``, both included, in that order."""

    def __init__(
        self,
        changes: Sequence[Change],
        try_moves: Callable[[dict[str, str | None]], Trial],
        releases: Callable[[Change, dict[str, str | None]], list[str]],
        *,
        progress: Callable[[str], None] | None = None,
        max_trials: int = 40,
        confirm: bool = True,
    ) -> None:
        self.changes = list(changes)
        self._try = try_moves
        self._releases = releases
        self._progress = progress or (lambda line: None)
        self.max_trials = max_trials
        self.confirm = confirm
        self.trials: list[Trial] = []
        self._tried: dict[frozenset[tuple[str, str | None]], Trial] = {}

    # ------------------------------------------------------------------------------------------

    class _OutOfTrials(Exception):
        pass

    def trial(self, moves: dict[str, str | None]) -> Trial:
        key = frozenset(moves.items())
        if key in self._tried:
            return self._tried[key]
        if len(self.trials) >= self.max_trials:
            raise self._OutOfTrials
        started = time.perf_counter()
        self._progress(f"[{len(self.trials) + 1}] {self._label(moves)} ...")
        result = self._try(dict(moves))
        if not result.seconds:
            result.seconds = time.perf_counter() - started
        self.trials.append(result)
        self._tried[key] = result
        shown = f": {result.summary}" if result.summary and result.status != PASS else ""
        moved = f" (also moved: {', '.join(result.also_moved)})" if result.also_moved else ""
        self._progress(
            f"[{len(self.trials)}] {result.status}{shown}{moved} ({result.seconds:.1f} s)"
        )
        return result

    @staticmethod
    def _label(moves: dict[str, str | None]) -> str:
        if not moves:
            return "the saved environment, rebuilt"
        return ", ".join(f"{p} {v or ABSENT}" for p, v in moves.items())

    def _prefix(self, count: int) -> dict[str, str | None]:
        return {c.package: c.here for c in self.changes[:count]}

    def _boundary(
        self, low: int, high: int, moves_at: Callable[[int], dict[str, str | None]]
    ) -> tuple[int, int] | None:
        """Narrow (low passes, high fails) to adjacent indices; None when the environments
        between could not be tried (``BROKEN``) and hide where it changes."""
        broken: set[int] = set()
        while high - low > 1:
            middle = (low + high) // 2
            candidates = sorted(
                (i for i in range(low + 1, high) if i not in broken),
                key=lambda i: (abs(i - middle), i),
            )
            for index in candidates:
                result = self.trial(moves_at(index))
                if result.status == BROKEN:
                    broken.add(index)
                    continue
                if result.status == PASS:
                    low = index
                else:
                    high = index
                break
            else:
                return None
        return low, high

    # ------------------------------------------------------------------------------------------

    def run(self) -> Finding:
        try:
            return self._run()
        except self._OutOfTrials:
            return Finding(
                "inconclusive",
                f"gave up after {len(self.trials)} environments (--max-environments)",
                trials=self.trials,
            )

    def _run(self) -> Finding:
        baseline = self.trial({})
        if baseline.status != PASS:
            why = "cannot be rebuilt" if baseline.status == BROKEN else "fails there too"
            return Finding(
                "not_reproducible",
                f"cannot be reproduced: its saved environment {why}: {baseline.summary}",
                bad=baseline,
                trials=self.trials,
            )
        if not self.changes:
            return Finding(
                "not_found",
                "nothing differs between the installed sets where it was saved and here, "
                "yet it fails here: the cause is outside them (a local build, files, "
                "environment variables, the machine)",
                good=baseline,
                trials=self.trials,
            )
        versions_only = sum(1 for c in self.changes if c.saved and c.here)
        total = len(self.changes)
        ends = [n for n in (versions_only, total) if n > 0]
        low, high = 0, None
        for end in dict.fromkeys(ends):
            result = self.trial(self._prefix(end))
            if result.status == FAIL:
                high = end
                break
            if result.status == PASS:
                low = end
        if high is None:
            everything = self._tried.get(frozenset(self._prefix(total).items()))
            if everything is not None and everything.status == PASS:
                return Finding(
                    "not_found",
                    "with every difference moved to its version here it passes in a rebuilt "
                    "environment: the failure here comes from something the installed set "
                    "does not show (a local build, files, environment variables, the machine)",
                    good=everything,
                    harmless=list(self.changes),
                    trials=self.trials,
                )
            return Finding(
                "inconclusive",
                "the environment as here cannot be rebuilt: "
                + (everything.summary if everything else "no coherent set"),
                good=baseline,
                trials=self.trials,
            )
        boundary = self._boundary(low, high, self._prefix)
        if boundary is None:
            suspects = ", ".join(c.describe() for c in self.changes[low:high])
            return Finding(
                "inconclusive",
                f"breaks when one of these moves: {suspects} (the environments between "
                "could not be built)",
                good=self._tried.get(frozenset(self._prefix(low).items())),
                bad=self._tried.get(frozenset(self._prefix(high).items())),
                trials=self.trials,
            )
        low, high = boundary
        culprit = self.changes[high - 1]
        before = self._prefix(high - 1)
        good = self._tried[frozenset(before.items())] if before else baseline
        bad = self._tried[frozenset(self._prefix(high).items())]
        finding = Finding("found", "", culprit=culprit, good=good, bad=bad)
        finding.last_good = {"package": culprit.package, "version": culprit.saved or ABSENT}
        finding.first_bad = {"package": culprit.package, "version": culprit.here or ABSENT}
        if culprit.saved and culprit.here:
            self._versions(culprit, before, finding)
        finding.harmless = list(self.changes[: high - 1])
        finding.untested = list(self.changes[high:])
        if self.confirm and finding.untested:
            self._confirm(finding, culprit, high)
        finding.trials = self.trials
        finding.message = self._found_message(finding)
        return finding

    def _versions(self, culprit: Change, before: dict[str, str | None], finding: Finding) -> None:
        """Bisect the culprit's releases, the packages before it moved too."""
        try:
            versions = self._releases(culprit, before)
        except Exception as exc:  # e.g. the index cannot be reached
            finding.notes.append(f"the releases of {culprit.package} could not be listed: {exc}")
            return
        if len(versions) < 3:
            return

        def moves_at(index: int) -> dict[str, str | None]:
            return {**before, culprit.package: versions[index]}

        known = {0: finding.good, len(versions) - 1: finding.bad}
        for index, result in known.items():
            if result is not None:
                self._tried.setdefault(frozenset(moves_at(index).items()), result)
        boundary = self._boundary(0, len(versions) - 1, moves_at)
        if boundary is None:
            finding.notes.append(
                f"no release of {culprit.package} between {culprit.saved} and {culprit.here} "
                "could be installed with the rest; the break is somewhere between them"
            )
            return
        low, high = boundary
        finding.last_good = {"package": culprit.package, "version": versions[low]}
        finding.first_bad = {"package": culprit.package, "version": versions[high]}
        finding.good = self._tried[frozenset(moves_at(low).items())]
        finding.bad = self._tried[frozenset(moves_at(high).items())]

    def _confirm(self, finding: Finding, culprit: Change, high: int) -> None:
        """Everything as here (up to the end known to fail), the culprit at its last good
        release: passing proves every other change harmless."""
        end = sum(1 for c in self.changes if c.saved and c.here)
        end = end if high <= end else len(self.changes)
        moves = {**self._prefix(end)}
        assert finding.last_good is not None
        version = finding.last_good["version"]
        moves[culprit.package] = None if version == ABSENT else version
        result = self.trial(moves)
        others = [c for c in self.changes[:end] if c.package != culprit.package]
        if result.status == PASS:
            finding.harmless = others
            finding.untested = [c for c in self.changes[end:]]
        elif result.status == FAIL:
            finding.notes.append(
                f"it also fails with {culprit.package} {version} and the other changes as here "
                f"({result.summary}): another change breaks it too; bisect again once this one "
                "is dealt with"
            )
        else:
            finding.notes.append(
                f"{culprit.package} {version} cannot be tried with the other changes as here: "
                f"{result.summary}"
            )

    @staticmethod
    def _found_message(finding: Finding) -> str:
        assert finding.first_bad is not None and finding.last_good is not None
        package = finding.first_bad["package"]
        bad, good = finding.first_bad["version"], finding.last_good["version"]
        if bad == ABSENT:
            text = f"breaks when {package} is uninstalled (passes with {good})"
        elif good == ABSENT:
            text = f"breaks when {package} {bad} is installed"
        else:
            text = f"breaks at {package} {bad} (passes with {good})"
        if finding.harmless:
            shown = ", ".join(c.describe() for c in finding.harmless[:4])
            more = f" and {len(finding.harmless) - 4} more" if len(finding.harmless) > 4 else ""
            verb = "is" if len(finding.harmless) == 1 else "are"
            text += f"; {shown}{more} {verb} harmless"
        return text
