"""`snakemake -n` from the repository root, counted by rule: shared by the dry-run tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake_dry_run(*args: str) -> subprocess.CompletedProcess:
    """`snakemake -n <args>`; fails the test, showing the output's tail, unless it succeeds."""
    result = subprocess.run(
        ["snakemake", "-n", *args], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def count_jobs(*args: str) -> Counter:
    """Jobs per rule (and checkpoint) of `snakemake -n <args>`."""
    stdout = snakemake_dry_run(*args).stdout
    return Counter(re.findall(r"^(?:rule|checkpoint) (\w+):", stdout, flags=re.MULTILINE))
