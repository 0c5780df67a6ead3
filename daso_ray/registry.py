"""Algorithms by name, with their config sections: adding an algorithm is adding one file.

An algorithm file defines a class decorated with :func:`register` that declares

- ``name``: its ``algorithm.name`` value;
- ``section``: its config section, a :class:`Strict` pydantic model validated as
  ``algorithm.<name>`` (``--set algorithm.<name>.<key>=...`` and search paths included), or None;
- ``scaled_keys``: the iteration-valued keys of that section that ``search --smoke`` shrinks
  together with the run, so schedules keep their shape.

Every module of ``daso_ray.algorithms`` is imported on the first :func:`algorithms` call
(entry-point style: a file placed there is found); a class defined elsewhere, such as a test's toy
algorithm, is registered by calling :func:`register`. The first call imports torch. Importing this
module does not: ``daso_ray.config`` imports it, and a command's ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from pydantic import BaseModel, ConfigDict

PACKAGE = "daso_ray.algorithms"
_REGISTRY: dict[str, type] = {}


class Strict(BaseModel):
    """Base of every config section: unknown keys are rejected. Defined here, not in
    ``daso_ray.config``, so an algorithm file declares its section without importing the module
    that validates it (config imports this module)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def register(cls: type) -> type:
    """Make ``cls`` the algorithm ``cls.name`` (a class decorator)."""
    section = getattr(cls, "section", None)
    if section is not None and not (isinstance(section, type) and issubclass(section, Strict)):
        raise TypeError(f"{cls.__qualname__}.section must subclass daso_ray.registry.Strict, so "
                        "unknown keys are rejected")
    taken = _REGISTRY.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"algorithm name '{cls.name}' is taken by {taken.__module__}."
                         f"{taken.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def algorithms() -> dict[str, type]:
    """Every registered algorithm by name."""
    _import_package()
    return dict(_REGISTRY)


@functools.cache
def _import_package() -> None:
    # Importing a module runs its @register; the package's own helpers register nothing.
    package = importlib.import_module(PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{PACKAGE}.{module.name}")


def build_algorithm(cfg: Any, ctx: Any) -> Any:
    """The algorithm ``cfg.algorithm.name`` for one run (``cfg``: a validated Config)."""
    return algorithms()[cfg.algorithm.name](cfg, ctx)
