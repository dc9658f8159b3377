# Path plumbing shared by every rule: the file plan of the config (softeq.pipeline.plan).
import os

from softeq.pipeline.plan import (
    DOWNLOADED_FAMILIES,
    DOWNLOADED_TENSORS,
    EMBEDDED_FAMILIES,
    EMBEDDED_TENSORS,
    FIGURES,
    PAPER_TABLES,
    REGRESSION,
    RUN_DIR,
    TABLES,
    WILDCARDS,
    Plan,
)

PLAN = Plan(config)
RESULTS = PLAN.results
RESOURCES = PLAN.resources
RUN = PLAN.run_dir
PROJECTORS = PLAN.projectors_dir
LOG = PLAN.log_stem
BENCHMARKS = PLAN.benchmarks


wildcard_constraints:
    **WILDCARDS,
