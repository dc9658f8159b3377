"""Tables and figures for the paper, built from evaluation JSONs in two separate steps.

``aggregate`` turns the per-run evaluation JSONs into CSV + Markdown tables (runs, mean/std over
seeds, per-layer bounds, error against angle); ``plots`` draws the paper's figures from those CSVs
alone, so figures regenerate in seconds without retraining or re-evaluating anything.

The submodules are not imported here: they need pandas / matplotlib (the ``workflow`` extra),
which the core library does not.
"""
