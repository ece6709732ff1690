"""skops.io: the persistence format that refuses to load types nobody trusted.

Loading uses exactly the types ``skops.io.get_untrusted_types`` reports for the file, so the
round trip proves the estimator survives while ``call.details["untrusted_types"]`` tells an
estimator author what trust their users will have to grant. A user's allowlist
(``call.options["trusted"]``) turns trust that was needed but not granted into an
``UntrustedTypesError`` raised before anything is constructed.

Every skops release with ``get_untrusted_types`` (the project needs skops >= 0.9) takes the
keyword-only ``data=`` / ``file=`` arguments, and every release accepts a list for ``trusted=``
(``trusted=True`` was removed in 0.10 for CVE-2024-37065), so one code path serves them all.

A dump that fails names the attributes skops cannot save (``UnsavableAttributes``): skops'
own error names a type deep inside (``no default __reduce__ due to non-trivial __cinit__``),
not where in the estimator it sits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .base import Backend, BackendCall


class UntrustedTypesError(Exception):
    """The artifact needs types the user's ``trusted=`` allowlist does not grant."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = list(missing)
        listed = "\n".join(f"  - {type_name}" for type_name in self.missing)
        super().__init__(
            f"skops needs {len(self.missing)} type(s) the trusted= allowlist does not grant:\n"
            f"{listed}\n"
            "Review them; to allow them, add their names to the allowlist, e.g. "
            f"@pytest.mark.persist_roundtrip(trusted={self.missing!r}), or, checking a store, "
            f"--persist-trusted={','.join(self.missing)}."
        )


class UnsavableAttributes(TypeError):
    """skops cannot save the estimator; ``paths`` are the attributes it cannot save."""

    def __init__(self, error: BaseException, paths: list[str]) -> None:
        self.paths = list(paths)
        first = str(error).strip().splitlines()
        super().__init__(
            f"skops cannot save {', '.join(self.paths)} "
            f"({type(error).__name__}: {first[0] if first else ''})"
        )


def unsavable_paths(
    value: Any, dumps: Callable[[Any], bytes], *, limit: int = 3, max_depth: int = 8
) -> list[str]:
    """The attributes of ``value`` (up to ``limit``) that ``dumps`` cannot save, as deep as
    containers and nested estimators go: ``mapping[0]['mapping'] (DataFrame)``."""
    found: list[str] = []

    def fails(item: Any) -> bool:
        try:
            dumps(item)
        except Exception:
            return True
        return False

    def parts(item: Any) -> list[tuple[str, Any]]:
        if isinstance(item, dict):
            return [(f"[{key!r}]", v) for key, v in item.items()]
        if isinstance(item, (list, tuple)):
            return [(f"[{index}]", v) for index, v in enumerate(item)]
        if hasattr(item, "get_params") and hasattr(item, "__dict__"):  # a nested estimator
            return [(f".{key}", v) for key, v in vars(item).items()]
        return []

    def visit(item: Any, path: str, depth: int) -> None:
        inner = parts(item) if depth < max_depth else []
        failing = [(f"{path}{step}", v) for step, v in inner if fails(v)]
        if not failing:
            found.append(f"{path.lstrip('.') or '<root>'} ({type(item).__name__})")
            return
        for where, child in failing:
            if len(found) >= limit:
                return
            visit(child, where, depth + 1)

    visit(value, "", 0)
    return found


def type_names(types: Iterable[str | type]) -> list[str]:
    """Fully qualified names, as ``get_untrusted_types`` spells them, for names or types."""
    names = []
    for entry in types:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, type):
            names.append(f"{entry.__module__}.{entry.__name__}")
        else:
            raise TypeError(f"trusted entries must be type names or types, not {entry!r}")
    return names


class SkopsBackend(Backend):
    """``skops.io.dumps`` to a file; ``skops.io.loads`` trusting what the file reports."""

    name = "skops"
    modules = ("skops",)
    load_modules = ("skops.io",)
    install_hint = "pip install skops (or pytest-persist[skops])"
    suffix = ".skops"
    runs_code_on_load = False  # only the types skops trusts by default, or an allowlist
    uses_type_allowlist = True

    def dump(self, estimator: Any, path: Path, call: BackendCall) -> None:
        import skops.io

        try:
            data = skops.io.dumps(estimator)
        except Exception as exc:
            paths = unsavable_paths(estimator, skops.io.dumps)
            if not paths or paths == ["<root> (" + type(estimator).__name__ + ")"]:
                raise
            raise UnsavableAttributes(exc, paths) from exc
        path.write_bytes(data)

    def load(self, path: Path, call: BackendCall) -> Any:
        import skops.io

        # Read once: the types audited are the types of the very bytes loaded.
        data = path.read_bytes()
        untrusted = sorted(skops.io.get_untrusted_types(data=data))
        call.details["untrusted_types"] = untrusted

        allowlist = call.options.get("trusted")
        if isinstance(allowlist, (list, tuple)):
            allowed = set(type_names(allowlist))
            missing = [type_name for type_name in untrusted if type_name not in allowed]
            call.details["untrusted_not_allowed"] = missing
            if missing:
                raise UntrustedTypesError(missing)

        return skops.io.loads(data, trusted=untrusted)
