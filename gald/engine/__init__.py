"""Training engine: checkpoints and distributed helpers."""
