"""Task metrics and equivariance errors (rotated-evaluation conventions: docs/conventions.md §1)."""
