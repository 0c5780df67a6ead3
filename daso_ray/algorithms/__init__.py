"""Algorithms, one file each, registered by name (``algorithm.name``)."""

from daso_ray.algorithms.base import REGISTRY, Algorithm, Context, Nets, StepOut, build_algorithm

__all__ = ["REGISTRY", "Algorithm", "Context", "Nets", "StepOut", "build_algorithm"]
