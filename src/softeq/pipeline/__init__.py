"""The workflow's config semantics and file plan.

:mod:`softeq.pipeline.config` validates a config and expands its experiments into
:class:`Run` records; :mod:`softeq.pipeline.plan` says where every file of a run goes and which
files each rule reads, so that the Snakemake rules stay path plumbing (docs/conventions.md §2-3).
"""

from softeq.pipeline.config import ConfigError, Run, load_config, resolve, validate_config
from softeq.pipeline.plan import WILDCARDS, Plan

__all__ = ["WILDCARDS", "ConfigError", "Plan", "Run", "load_config", "resolve", "validate_config"]
