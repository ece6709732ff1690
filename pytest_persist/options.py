"""Every ``--persist-*`` option and ``persist_*`` ini key, in one group, and the session-wide
defaults of the marker's keywords that they set.

Imported by ``plugin`` for every pytest run, so nothing here imports numpy.
"""

from __future__ import annotations

from typing import Any

import pytest


def add_options(parser: pytest.Parser) -> None:
    """Register the options (``pytest_addoption``)."""
    group = parser.getgroup("persist", "model persistence (pytest-persist)")
    group.addoption(
        "--persist-backends",
        metavar="NAMES",
        help="comma-separated backends to run (default: every registered backend; "
        "ini: persist_backends)",
    )
    group.addoption(
        "--persist-strict",
        action="store_true",
        default=None,
        help="fail, rather than skip, when a backend cannot handle an estimator "
        "(ini: persist_strict)",
    )
    group.addoption(
        "--persist-trusted",
        metavar="TYPES",
        help="comma-separated types skops may load; needing any other fails the test "
        "(ini: persist_trusted; the marker's trusted= wins)",
    )
    group.addoption(
        "--persist-max-label-flips",
        metavar="FRACTION",
        type=float,
        help="fraction of labels allowed to flip, e.g. under ONNX float32 (default 0; "
        "ini: persist_max_label_flips)",
    )
    group.addoption(
        "--persist-save",
        metavar="DIR",
        help="also store every passed round trip in DIR (artifact, X, expected outputs, "
        "environment, checksums) to check it later, elsewhere, with --persist-load",
    )
    group.addoption(
        "--persist-load",
        metavar="DIR",
        help="check every artifact stored in DIR in this environment, each as its own test "
        "(loaded in an isolated child process; select them alone with -k persist_load)",
    )
    group.addoption(
        "--persist-version-warning",
        choices=("record", "error"),
        default=None,
        help="scikit-learn version warnings while loading: record them beside the outcome "
        "(default) or fail at the first one (ini: persist_version_warning)",
    )
    group.addoption(
        "--persist-load-timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help="give up on a stored artifact whose load and predictions take longer "
        "(default 120; ini: persist_load_timeout)",
    )
    group.addoption(
        "--persist-load-isolation",
        choices=("fork", "process"),
        default=None,
        help="how each stored artifact is isolated: a forked child of a warm loader that "
        "imported scikit-learn once (default, Linux), or a fresh interpreter each "
        "(ini: persist_load_isolation)",
    )
    group.addoption(
        "--persist-load-max-memory",
        metavar="SIZE",
        default=None,
        help="memory one stored artifact's check may allocate, e.g. 2GiB, 512MB, none "
        "(default 4GiB; ini: persist_load_max_memory)",
    )
    group.addoption(
        "--persist-key-file",
        metavar="FILE",
        help="sign saved entries with the key in FILE: an HMAC key (hex), or an elliptic-curve "
        "private key (PEM, P-256/384/521: a model-signing model.sig; passphrase from "
        "$PYTEST_PERSIST_KEY_PASSPHRASE) (default: $PYTEST_PERSIST_KEY, else a per-user key "
        "created on first save; ini: persist_key_file)",
    )
    group.addoption(
        "--persist-trust-key",
        metavar="FILE",
        action="append",
        default=None,
        help="also trust entries signed with the key in FILE: a public key (PEM) for "
        "model.sig, or an HMAC key, e.g. a CI secret (repeatable; ini: persist_trust_keys)",
    )
    group.addoption(
        "--persist-trust-unsigned",
        action="store_true",
        default=False,
        help="unpickle stored entries not signed by a trusted key anyway (each is reported)",
    )
    group.addoption(
        "--persist-report", metavar="FILE.json", help="write a JSON report of every record"
    )
    group.addoption(
        "--persist-report-md",
        metavar="FILE.md",
        help="write a markdown report (for a CI job summary, e.g. $GITHUB_STEP_SUMMARY)",
    )
    parser.addini("persist_backends", "backends to run (names, comma or space separated)")
    parser.addini("persist_strict", "fail when a backend cannot handle an estimator", "bool")
    parser.addini("persist_trusted", "types skops may load (names, comma or space separated)")
    parser.addini("persist_max_label_flips", "fraction of labels allowed to flip (default 0)")
    parser.addini("persist_version_warning", "record | error (see --persist-version-warning)")
    parser.addini("persist_load_timeout", "seconds allowed per stored artifact (default 120)")
    parser.addini("persist_load_isolation", "fork | process (see --persist-load-isolation)")
    parser.addini("persist_load_max_memory", "memory per stored artifact's check (default 4GiB)")
    parser.addini("persist_key_file", "key file saved entries are signed with")
    parser.addini("persist_trust_keys", "key files whose signatures are trusted", "paths")


def session_defaults(config: pytest.Config) -> dict[str, Any]:
    """Marker keywords whose defaults the command line or ini set for the whole session."""
    from .roundtrip.run import PersistUsageError
    from .roundtrip.settings import build_request, parse_name_list

    defaults: dict[str, Any] = {}
    trusted = config.getoption("persist_trusted") or config.getini("persist_trusted")
    if trusted:
        defaults["trusted"] = parse_name_list(trusted)
    flips = config.getoption("persist_max_label_flips")
    if flips is None and config.getini("persist_max_label_flips"):
        try:
            flips = float(config.getini("persist_max_label_flips"))
        except ValueError:
            raise pytest.UsageError(
                "persist_max_label_flips must be a number, got "
                f"{config.getini('persist_max_label_flips')!r}"
            ) from None
    if flips is not None:
        defaults["max_label_flips"] = flips
    try:
        build_request({}, where="pytest-persist options", defaults=defaults)
    except PersistUsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    return defaults


def enabled_backends(config: pytest.Config, registry: Any) -> list[str]:
    """The backends ``--persist-backends`` / ``persist_backends`` enable (default: all); an
    empty or unknown name on the command line is a usage error naming what is registered."""
    from .roundtrip.settings import parse_name_list

    option = config.getoption("persist_backends")
    chosen = option if option is not None else config.getini("persist_backends")
    names = parse_name_list(chosen) if chosen else None
    if option is not None and not names:
        raise pytest.UsageError(
            "--persist-backends= names no backend; give one or more of "
            f"{', '.join(registry.names)} (comma-separated), or leave the option out for all"
        )
    try:
        return registry.select(names)
    except ValueError as exc:
        raise pytest.UsageError(f"--persist-backends / persist_backends: {exc}") from None
