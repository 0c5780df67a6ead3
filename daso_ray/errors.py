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


def deterministic_cause(err: BaseException) -> UserError | None:
    """The :class:`UserError` behind ``err``, however Ray wrapped it; None for any other failure
    (a killed worker, a lost node), which a retry may cure.

    A Ray Train worker's error reaches the trial as a ``WorkerGroupError`` whose
    ``worker_failures`` maps each failed rank to its own (unpickled) exception, and a remote
    task's as a ``RayTaskError`` whose ``cause`` is the original; Python chains the rest through
    ``__cause__``/``__context__``. Ranks are searched in order: the reason is the lowest rank's."""
    todo, seen = [err], set()
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError):
            return e
        ranks = getattr(e, "worker_failures", None)
        if isinstance(ranks, dict):
            todo += [ranks[r] for r in sorted(ranks)]
        todo += [getattr(e, a, None) for a in ("cause", "__cause__", "__context__")]
    return None


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
