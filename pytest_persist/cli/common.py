"""What every command shares: exit codes and how an error is said."""

from __future__ import annotations

import sys

#: Exit codes of every command besides its own (``check`` exits with pytest's code).
EXIT_BAD_INPUT = 2


def fail(message: str) -> int:
    """Say ``message`` on stderr; the exit code of bad input."""
    print(f"pytest-persist: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
