"""daso_ray: hyperparameter search for class-imbalanced semi-supervised learning on Ray."""

__version__ = "0.1.0"
