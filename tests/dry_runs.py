"""Snakemake from the repository root, shared by the tests: dry runs counted by rule, and a run
killed (with its jobs) at a given point."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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


def kill_when_exists(args: list[str], path: Path, what: str, timeout: float = 900) -> None:
    """Run `snakemake <args>` in a session of its own and SIGKILL it and its jobs as soon as
    ``path`` exists; fails the test if the DAG ended before (``what`` says what was awaited)."""
    job = subprocess.Popen(
        ["snakemake", *args],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not path.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.poll() is None, f"the DAG ended before {what}"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
