"""User-facing errors: one line naming the offending key or file and the fix, then a non-zero exit.

Every entry point wraps its main in :func:`cli_entry`, so a :class:`UserError` raised anywhere
below prints ``error: <message>`` on stderr and exits with status 2 — never a traceback.
:func:`describe_errors` turns a pydantic validation error into those lines, one per key.
"""

from __future__ import annotations

import difflib
import functools
import sys
from collections.abc import Callable
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


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


def _field_names(model: type[BaseModel], path: tuple) -> list[str]:
    """Allowed keys of the section found by walking ``path`` from the root model (through dict
    values and list items of models, e.g. ``params.<name>`` or ``scenarios.0``)."""
    node: Any = model
    for part in path:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        else:  # a dict value or a list item: step into the element type
            args = [a for a in get_args(node) if a is not type(None)]
            node = next((a for a in reversed(args) if isinstance(a, type)), None)
        args = [a for a in get_args(node) if a is not type(None)]
        if len(args) == 1 and get_origin(node) in (Union, UnionType):  # Optional[Model]
            node = args[0]
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def describe_error(err: dict[str, Any], root: type[BaseModel]) -> str:
    """One line for one pydantic error, naming the dotted key (and a close match for typos)."""
    path = tuple(p for p in err["loc"] if not str(p).startswith("function-after"))
    key = ".".join(str(p) for p in path)
    if err["type"] == "extra_forbidden":
        allowed = _field_names(root, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{'.'.join([*map(str, path[:-1]), close[0]])}'?" if close else (
            f"allowed keys here: {', '.join(allowed)}"
        )
        return f"unknown key '{key}' — {hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if msg.startswith((f"{key}:", f"{key}.")) or (not key and ":" in msg):
        return msg  # the validator already named the key (data.imb_ratio_u, not data.data...)
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    if err["type"] == "value_error" and key:
        return f"{key}.{msg}" if ":" in msg.split(" ")[0] else f"{key}: {msg}"
    return f"key '{key}': {msg}{shown}"


def describe_errors(errors: list[dict[str, Any]], root: type[BaseModel]) -> list[str]:
    """One line per pydantic error, except a "Field required" for a key that a mistyped key's
    "did you mean" line already names (one typo is one problem, one line)."""
    lines = [describe_error(e, root) for e in errors]
    named = {ln.split("did you mean '")[1].rstrip("'?") for ln in lines if "did you mean '" in ln}
    return [ln for e, ln in zip(errors, lines, strict=True)
            if not (e["type"] == "missing" and ".".join(map(str, e["loc"])) in named)]
