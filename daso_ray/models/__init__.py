"""Networks returning ``(logits [n, K], feature [n, D])`` and the EMA teacher."""

from daso_ray.models.build import build_model

__all__ = ["build_model"]
