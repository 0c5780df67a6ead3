"""The one training loop (no Ray here): optimizer, AMP, EMA, evaluation, checkpoints."""
