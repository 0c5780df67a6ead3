"""Algorithms, one file each, found by name (``algorithm.name``) through :mod:`daso_ray.registry`."""

from daso_ray.algorithms.base import Algorithm, Context, Nets, StepOut
from daso_ray.registry import build_algorithm

__all__ = ["Algorithm", "Context", "Nets", "StepOut", "build_algorithm"]
