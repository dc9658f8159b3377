"""Datasets: the embedded offline default (digits) and loaders for the paper's datasets."""
