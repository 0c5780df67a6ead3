"""``daso-ray`` console script: ``daso-ray prepare ...`` == ``python -m daso_ray.prepare ...``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {name: f"daso_ray.{name}" for name in ("prepare", "train", "search", "verify", "export", "report")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: daso-ray {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
