"""Training engine: checkpoints, distributed helpers and shared training-loop pieces."""
