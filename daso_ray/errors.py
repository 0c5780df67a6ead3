"""User-facing errors: one line naming the offending key or file and the fix, then a non-zero exit.

Every entry point wraps its main in :func:`cli_entry`, so a :class:`UserError` raised anywhere
below prints ``error: <message>`` on stderr and exits with status 2 — never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user (config, search file, source data). The message is one line."""


def error_lines(err: BaseException) -> list[str]:
    """An error's non-empty message lines, or its type's name when it has none."""
    return [ln for ln in str(err).splitlines() if ln.strip()] or [type(err).__name__]


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Decorate a CLI ``main``: a UserError becomes one ``error:`` line on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return int(main(*args, **kwargs) or 0)
        except UserError as err:
            for line in str(err).splitlines() or ["unknown error"]:
                print(f"error: {line}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130

    return wrapped
