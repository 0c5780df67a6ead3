"""Import boundaries: Ray lives only in ``daso_ray/ray_jobs/``. The search domain
(``daso_ray/study/``) and the entry points that read a finished run (export, report, pipeline)
import neither ``ray`` nor ``daso_ray.ray_jobs`` — checked on each module's syntax tree, so a
lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "daso_ray"
RAY_FREE = sorted(PKG.glob("study/*.py")) + [PKG / n for n in ("export.py", "report.py", "pipeline.py")]


def imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def forbidden(name: str) -> bool:
    return name == "ray" or name.startswith(("ray.", "daso_ray.ray_jobs"))


@pytest.mark.parametrize("path", RAY_FREE, ids=lambda p: str(p.relative_to(PKG)))
def test_module_imports_no_ray(path):
    assert len(RAY_FREE) >= 8  # the glob found the study package
    bad = sorted(n for n in imported_modules(path) if forbidden(n))
    assert not bad, f"{path.name} imports {bad}"


def test_the_checker_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from daso_ray.ray_jobs.tuner import run_studies\n    import ray\n")
    assert {"ray", "daso_ray.ray_jobs.tuner"} <= {n for n in imported_modules(f) if forbidden(n)}
