"""The pipeline stages per task, called by ``softeq <stage> --task <task>`` (see softeq.cli).

Every task module offers ``projectors``, ``finetune`` and ``evaluate`` (and ``pretrain`` where a
stand-in for hub weights makes sense), each taking the parsed command-line arguments.
"""

import importlib
from types import ModuleType

TASKS = ("classification", "segmentation", "trajectory")


def task_module(task: str) -> ModuleType:
    """The stage module of ``task``."""
    if task not in TASKS:
        raise SystemExit(f"--task {task!r}: expected one of {TASKS}")
    return importlib.import_module(f"softeq.stages.{task}")
