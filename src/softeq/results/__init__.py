"""Tables from the evaluation JSONs: aggregation, the paper's Tables 1-3 and the ablations.

- ``aggregate``: metrics JSONs -> runs / summary / bounds / angles tables (CSV + Markdown);
- ``paper_tables``: Tables 1-3 in the paper's layout (CSV, Markdown, LaTeX), with the paper's
  reported numbers (``reported.csv``, read by ``reported``) beside ours on request;
- ``ablations``: the filter ablation and the projector construction-time table;
- ``columns`` and ``writers``: the tables' display units, labels and file writers.

``softeq.figures`` draws from these tables only. The submodules are not imported here: they need
pandas (the ``workflow`` extra), which the core library does not.
"""
