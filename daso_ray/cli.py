"""``daso-ray`` console script: ``daso-ray prepare ...`` == ``python -m daso_ray.prepare ...``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path

COMMANDS = {name: f"daso_ray.{name}" for name in ("prepare", "train", "search", "verify", "export", "report")}


def summary(module: str) -> str:
    """A command's one-line description: the first sentence of its module docstring after the
    usage line (or the text after the usage on that line, as in ``prepare``). Read from the
    source, so ``--help`` imports none of the heavy modules (torch, Ray)."""
    spec = importlib.util.find_spec(module)
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) if spec and spec.origin else ""
    paras = [" ".join(p.split()) for p in (doc or "").split("\n\n") if p.strip()]
    if not paras:
        return ""
    usage = re.match(r"``[^`]*``:\s*(.+)", paras[0])
    text = usage.group(1) if usage else (paras[1] if len(paras) > 1 else paras[0])
    # A sentence ends at ". " followed by a capital (not at "e.g. " or a wrapped line).
    return re.split(r"(?<=[.:])\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".:").replace("``", "")


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = [f"  {name:<{width}}  {summary(mod)}" for name, mod in COMMANDS.items()]
    return ("usage: daso-ray COMMAND [ARGS ...]   (daso-ray COMMAND --help for its options)\n\n"
            "commands:\n" + "\n".join(rows))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        if argv:
            print(f"error: unknown command '{argv[0]}' — one of {', '.join(COMMANDS)}", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
