"""The search domain without Ray: the search-file schema and its checks (``spec``, ``load``), a
trial's config (``compose``), the Optuna define-by-run space and sampler (``space``), the metric
contract and objective (``objective``), the leaderboard (``leaderboard``) and the held-out
verification statistics (``verify``). Nothing here imports Ray; ``daso_ray/ray_jobs/`` runs it."""
