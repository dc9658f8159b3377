"""Task metrics and equivariance errors, with the rotated-evaluation conventions of DESIGN.md §4."""
