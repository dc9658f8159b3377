"""Training and evaluation loops per task, with atomic checkpoints and resume."""
