"""The cluster installs a Python the lock file can be installed on (issue 13, case 13), and
pyproject's ``requires-python`` says the same. No network: the lock's minimum Python comes from
a table of the known minimums of its key pins, and from the installed distributions' own
``Requires-Python`` where the installed version is the pinned one."""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = ["cluster.yaml", "cluster.local.yaml"]

# First release of each package that needs the given Python (from their release notes).
KNOWN_MIN_PYTHON = {
    "numpy": [("2.1", "3.10"), ("2.3", "3.11")],
    "scipy": [("1.14", "3.10"), ("1.16", "3.11")],
    "pandas": [("2.3", "3.10"), ("3.0", "3.11")],
    "torch": [("2.9", "3.10")],
}
# The python3 an image's setup would get if the cluster file used the system one.
IMAGE_PYTHON = {"ubuntu/server/22.04": "3.10", "ubuntu-22.04": "3.10", "ubuntu/server/24.04": "3.12",
                "ubuntu-24.04": "3.12"}


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def lock_min_python(pins: dict[str, str]) -> tuple[Version, list[str]]:
    """The lowest Python every pin supports, and why (the pins that set it)."""
    needs: dict[str, Version] = {}
    for name, table in KNOWN_MIN_PYTHON.items():
        for since, py in table:
            if name in pins and Version(pins[name]) >= Version(since):
                needs[f"{name}=={pins[name]}"] = Version(py)
    for name, spec in installed_requires_python(pins).items():
        floor = [Version(s.version) for s in spec if s.operator in (">=", ">")]
        if floor:
            key = f"{name}=={pins[name]}"
            needs[key] = max([*floor, needs.get(key, Version("0"))])
    low = max(needs.values())
    return low, sorted(k for k, v in needs.items() if v == low)


def installed_requires_python(pins: dict[str, str]) -> dict[str, SpecifierSet]:
    out = {}
    for dist in md.distributions():
        name = dist.metadata["Name"].lower().replace("_", "-")
        if pins.get(name) == dist.version and dist.metadata.get("Requires-Python"):
            out[name] = SpecifierSet(dist.metadata["Requires-Python"])
    return out


def cluster_python(name: str) -> str:
    """The Python version the file's setup commands build the project's venv with."""
    raw = yaml.safe_load((ROOT / name).read_text())
    setup = " ".join(raw["setup_commands"])
    found = set(re.findall(r"python(3\.\d+) -m venv", setup))
    if found:
        assert len(found) == 1, f"{name}: venvs of several Pythons {found}"
        return found.pop()
    assert re.search(r"python3 -m venv", setup), f"{name}: no venv is created in setup_commands"
    images = " ".join(str(t.get("node_config", {}).get("ImageId", ""))
                      for t in raw.get("available_node_types", {}).values())
    for key, py in IMAGE_PYTHON.items():
        if key in images:
            return py  # the image's system python3
    pytest.fail(f"{name}: setup uses the system python3 of unknown machines — install a fixed "
                "Python (python3.X -m venv)")


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_python_can_install_the_lock_file(name):
    pins = lock_pins()
    assert "numpy" in pins and "torch" in pins
    need, why = lock_min_python(pins)
    py = cluster_python(name)
    assert Version(py) >= need, f"{name} installs Python {py}; constraints.txt needs >= {need} ({why})"
    for pkg, spec in installed_requires_python(pins).items():  # upper bounds too (triton < 3.15)
        assert spec.contains(py + ".0"), f"{name}: Python {py} outside {pkg}'s Requires-Python {spec}"
    setup = " ".join(yaml.safe_load((ROOT / name).read_text())["setup_commands"])
    # The headers FFCV compiles against and the venv module are those of the same Python, and a
    # venv left by another Python is rebuilt.
    assert f"python{py}-dev" in setup and f"python{py}-venv" in setup
    assert f"sys.version_info[:2] != ({py.replace('.', ', ')})" in setup


def test_requires_python_matches_the_lock_file():
    need, why = lock_min_python(lock_pins())
    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    below = Version(f"{need.major}.{need.minor - 1}")
    assert spec.contains(str(need)) and not spec.contains(str(below)), (
        f"requires-python {spec}: the lock file needs >= {need} ({why})")
    py = {cluster_python(n) for n in CLUSTER_FILES}
    assert len(py) == 1 and spec.contains(py.pop())


def test_known_minimums_agree_with_installed_metadata():
    """The table is not stale: where a pin is installed, its metadata says at least as much."""
    pins = lock_pins()
    meta = installed_requires_python(pins)
    if "numpy" not in meta:
        pytest.skip("numpy of the lock file is not installed here")
    assert not meta["numpy"].contains("3.10.0") and meta["numpy"].contains("3.11.0")
