"""Architecture rules, checked on the source text without importing it (no Ray, no torch):

- the import graph of ``daso_ray`` (module-level and lazy imports, absolute and relative) has no
  cycle;
- every module of the package stays under 300 lines;
- nothing in the repository points at design notes that a clone does not have.

Where Ray may be imported is checked in ``tests/test_imports.py``.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "daso_ray"
MAX_LINES = 300
# What a clone has: the package, its tests, tools, docs and the files a user runs.
SCANNED = ["daso_ray", "tests", "benchmarks", "pipelines", "docs", "configs", "search_spaces", ".ci",
           "README.md", "Makefile", "cluster.yaml", "cluster.local.yaml", "pyproject.toml"]
# References to notes outside the repository; explain in place or point to docs/ instead.
OUTSIDE_NOTES = ("specs/", "peers.md", "platform.md", "DESIGN.md", "../shared")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _known(name: str, modules) -> str | None:
    """``name`` or its longest prefix that is a module of the package (None: not ours)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(tree: ast.AST, importer: str, is_package: bool, modules) -> set[str]:
    """The package modules that ``importer``'s syntax tree imports, anywhere in it (a lazy import
    inside a function counts). ``from m import x`` points at ``m.x`` when that is a module, else
    at ``m``; relative imports are resolved against ``importer``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = importer.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out |= {m for n in names if (m := _known(n, modules)) and m != importer}
    return out


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(ast.parse(path.read_text()), name, path.name == "__init__.py", MODULES)
            for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph`` (depth-first, in name order), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_import_graph_is_acyclic():
    graph = import_graph()
    assert len(graph) >= 60 and "daso_ray.engine.loop" in graph["daso_ray.train"]  # the scan works
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_resolves_relative_and_lazy_imports_and_finds_cycles():
    modules = {"p", "p.a", "p.b", "p.sub", "p.sub.c"}
    src = "from . import b\ndef f():\n    from .sub.c import g\n    import p.sub\nfrom ..x import y\n"
    assert imports_of(ast.parse(src), "p.a", False, modules) == {"p.b", "p.sub.c", "p.sub"}
    assert imports_of(ast.parse("from .c import g\nfrom .. import a\n"), "p.sub", True, modules) \
        == {"p.sub.c", "p.a"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_modules_stay_under_300_lines():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in MODULES.values()}
    over = sorted(f"{p}: {n} lines" for p, n in sizes.items() if n >= MAX_LINES)
    assert not over, f"modules of {MAX_LINES} lines or more (split them):\n" + "\n".join(over)


def scanned_files() -> list[Path]:
    """The repository's files in ``SCANNED``, tracked or about to be (git's view, ignored files
    left out); without git, a walk that skips caches."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", *SCANNED],
                             cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        files = [ROOT / f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.SubprocessError):
        files = [p for s in SCANNED for p in ([ROOT / s] if (ROOT / s).is_file() else (ROOT / s).rglob("*"))
                 if p.is_file() and "__pycache__" not in p.parts]
    return [f for f in files if f.is_file() and f.resolve() != Path(__file__).resolve()]


def test_no_reference_to_notes_outside_the_repository():
    files = scanned_files()
    assert any(f.name == "README.md" for f in files) and len(files) > 100  # the scan works
    hits = []
    for f in files:
        text = f.read_bytes().decode("utf-8", errors="replace")
        for i, line in enumerate(text.splitlines(), 1):
            hits += [f"{f.relative_to(ROOT)}:{i}: {p}" for p in OUTSIDE_NOTES if p in line]
    assert not hits, ("references to files a clone does not have (cite the paper or the reference "
                      "code, or point to docs/ instead):\n" + "\n".join(hits))
