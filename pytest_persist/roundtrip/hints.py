"""Hints for load errors whose cause is known: a class defined in a test module, a lambda
stored by skops. Pytest-free; used by the in-process round trip and the stored checks."""

from __future__ import annotations

import re

_NO_MODULE = re.compile(r"No module named '(?P<module>[^']+)'")
_NO_FUNCTION = re.compile(r"module '(?P<module>[^']+)' has no attribute '(?P<name>[^']*<[^']+)'")


def load_error_hint(message: str, *, estimator_class: str, backend: str, test_id: str = "") -> str:
    """A sentence saying why a load failed and what to do, or "" when the cause is unknown.

    ``estimator_class`` is ``module.Name``; ``test_id`` the saving test's node id.
    """
    missing = _NO_MODULE.search(message)
    module, _, name = estimator_class.rpartition(".")
    if missing and _is_test_module(missing["module"], module, test_id):
        gone = missing["module"]
        where = f"{name}'s class lives in" if gone == module else f"{name} needs"
        return (
            f"{where} the test module {gone!r}, which the loading environment cannot import "
            f"({backend} stores a class by module and name, not its code). Define it in an "
            "importable package installed where the model is loaded; or, with the cloudpickle "
            f"backend, call cloudpickle.register_pickle_by_value({gone}) before saving so the "
            "class is stored by value."
        )
    function = _NO_FUNCTION.search(message)
    if function and backend == "skops":
        what = "lambda" if "<lambda>" in function["name"] else "local function"
        return (
            f"skops stores a function by module and name, so it cannot store the {what} in "
            f"{name} ({function['module']}.{function['name']}); the cloudpickle backend can, "
            "or define the function at module level in an importable package."
        )
    return ""


def _is_test_module(missing: str, estimator_module: str, test_id: str) -> bool:
    """``missing`` is the saving test's module, or named like one (``test_*``, ``*_test``)."""
    test_file = test_id.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    leaf = missing.rsplit(".", 1)[-1]
    return (
        missing in (estimator_module, test_file)
        or leaf == test_file
        or leaf.startswith("test_")
        or leaf.endswith("_test")
        or leaf == "conftest"
    )
