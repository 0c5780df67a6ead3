"""Import boundaries: Ray lives only in ``daso_ray/ray_jobs/`` — no other module of the package
imports ``ray``. The search domain (``daso_ray/study/``) and the entry points that read a finished
run (export, report, pipeline) do not import ``daso_ray.ray_jobs`` either. Both are checked on each
module's syntax tree, so a lazy import inside a function counts too. Algorithm files never import
the config, which finds them through the registry; importing the config imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "daso_ray"
RAY_FREE = sorted(PKG.glob("study/*.py")) + [PKG / n for n in ("export.py", "report.py", "pipeline.py")]
OUTSIDE_RAY_JOBS = sorted(p for p in PKG.rglob("*.py") if "ray_jobs" not in p.relative_to(PKG).parts)


def imported_modules(path: Path) -> set[str]:
    return tree_imports(ast.parse(path.read_text()))


def tree_imports(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def is_ray(name: str) -> bool:
    return name == "ray" or name.startswith("ray.")


def forbidden(name: str) -> bool:
    return is_ray(name) or name.startswith("daso_ray.ray_jobs")


@pytest.mark.parametrize("path", OUTSIDE_RAY_JOBS, ids=lambda p: str(p.relative_to(PKG)))
def test_only_ray_jobs_imports_ray(path):
    assert len(OUTSIDE_RAY_JOBS) >= 40  # the glob found the package
    bad = sorted(n for n in imported_modules(path) if is_ray(n))
    assert not bad, f"{path.relative_to(PKG)} imports {bad}: Ray belongs in daso_ray/ray_jobs/"


@pytest.mark.parametrize("path", RAY_FREE, ids=lambda p: str(p.relative_to(PKG)))
def test_module_imports_no_ray_jobs(path):
    """``ray`` itself is covered by :func:`test_only_ray_jobs_imports_ray`."""
    assert len(RAY_FREE) >= 8  # the glob found the study package
    bad = sorted(n for n in imported_modules(path) if n.startswith("daso_ray.ray_jobs"))
    assert not bad, f"{path.name} imports {bad}"


def test_the_checker_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from daso_ray.ray_jobs.tuner import run_studies\n    import ray\n")
    assert {"ray", "daso_ray.ray_jobs.tuner"} <= {n for n in imported_modules(f) if forbidden(n)}


def runtime_imports(path: Path) -> set[str]:
    """``imported_modules`` without the ``if TYPE_CHECKING:`` blocks (annotations only)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            node.body = [ast.Pass()]
    return tree_imports(tree)


@pytest.mark.parametrize("path", sorted(PKG.glob("algorithms/*.py")), ids=lambda p: p.name)
def test_algorithm_files_do_not_import_the_config(path):
    """config imports the registry, which imports these files: importing config back would be a
    circle. Sections subclass ``daso_ray.registry.Strict`` instead."""
    assert "daso_ray.config" not in runtime_imports(path)


def test_config_and_search_validation_import_no_torch_until_used():
    code = ("import sys, daso_ray.config, daso_ray.study.spec, daso_ray.registry\n"
            "assert 'torch' not in sys.modules\n"
            "daso_ray.config.from_dict({'algorithm': {'name': 'semi'}})\n"
            "assert 'torch' in sys.modules  # the algorithm files were found on first use\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
