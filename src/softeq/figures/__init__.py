"""The paper's figures, drawn from tables (``softeq.results``) and arrays handed to them.

Nothing here computes a model: ``plots`` and ``timing`` read CSV tables, ``figure1`` draws the
arrays of ``softeq.metrics.feature_maps``; every figure shares ``style`` (palette, rcParams,
atomic save). ``render`` draws one task and dataset's figures from its aggregated tables.

The submodules are not imported here: they need pandas / matplotlib (the ``workflow`` extra),
which the core library does not.
"""
