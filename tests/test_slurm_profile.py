"""The Slurm profile against stub Slurm commands: no cluster needed, nothing is submitted.

The stubs (first on PATH) stand in for sbatch, squeue, sinfo, scancel, sacct and scontrol. The
stub sbatch records its arguments and creates the job's outputs itself, and the stub squeue
reports every job COMPLETED, so snakemake sees the job finish at its first status check.
tools/slurm/ci_run.sh runs the same profile on a real local cluster.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow/profiles/slurm"
JOB_ID = "4242"

STUBS = {
    # argv, one call per line (NUL-separated); the job's outputs (STUB_OUTPUTS, colon-separated)
    # appear as a finished job would leave them
    "sbatch": f"""#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done >> "$STUB_DIR/sbatch.calls"
printf '\\n' >> "$STUB_DIR/sbatch.calls"
IFS=:
for out in ${{STUB_OUTPUTS:-}}; do mkdir -p "$(dirname "$out")"; : > "$out"; done
echo {JOB_ID}
""",
    "squeue": f"#!/bin/sh\necho '{JOB_ID}|COMPLETED'\n",
    # the plugin asks sacct for a default account (answer: none) and, should it fall back from
    # squeue, for job states
    "sacct": f"""#!/bin/sh
case "$*" in *JobIdRaw,State*) echo '{JOB_ID}|COMPLETED' ;; esac
""",
    "sinfo": "#!/bin/sh\necho PARTITION\necho 'debug*'\n",
    "scancel": "#!/bin/sh\nexit 0\n",
    # MinJobAge high enough that the plugin keeps squeue for status (it falls back to sacct
    # below 3 x its first status-check delay)
    "scontrol": "#!/bin/sh\necho 'MinJobAge = 600 sec'\necho 'MaxArraySize = 1001'\n",
}


@pytest.fixture
def stub_env(tmp_path):
    """An environment whose PATH finds the stub Slurm commands before any real ones."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {**os.environ, "PATH": path, "STUB_DIR": str(tmp_path)}
    for key in [k for k in env if k.startswith("SLURM_")]:  # not inside a real job
        del env[key]
    return env


def snakemake(args, env, cwd=ROOT):
    result = subprocess.run(
        ["snakemake", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def planned_jobs(dry_run: str) -> list[tuple[str, dict[str, list[str]]]]:
    """(rule, {field: paths}) of each job a dry run prints: its output, benchmark, ..."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", dry_run):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        if head:
            fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.MULTILINE))
            jobs.append((head[1], {k: v.split(", ") for k, v in fields.items()}))
    return jobs


def test_profile_dry_run_lists_paper_jobs(stub_env, tmp_path):
    out = snakemake(
        ["all", "--workflow-profile", str(PROFILE), "--configfile", "config/paper.yaml", "-n"],
        stub_env,
    )
    rules = {rule for rule, _ in planned_jobs(out)}
    assert {"finetune", "evaluate", "aggregate"} <= rules, out[-3000:]
    assert not (tmp_path / "sbatch.calls").exists()  # a dry run submits nothing


def test_finetune_job_requests_gpus(stub_env, tmp_path):
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert config["gpus"] >= 1
    config["results"] = str(tmp_path / "results")
    config["resources"] = str(tmp_path / "resources")
    config["allow_outside"] = True  # results in a temporary folder
    config_path = tmp_path / "paper.yaml"
    config_path.write_text(yaml.safe_dump(config))
    work = tmp_path / "work"  # .snakemake/, logs/ and slurm logs stay out of the repo
    work.mkdir()
    args = ["--snakefile", str(ROOT / "workflow/Snakefile"), "--workflow-profile", str(PROFILE)]
    args += ["--configfile", str(config_path)]

    # One fine-tuning job of the paper DAG, as snakemake itself plans it.
    plan = planned_jobs(snakemake(["all", *args, "-n"], stub_env, cwd=work))
    finetune = next(  # a model with weights: the constant-velocity baseline requests no GPU
        fields
        for rule, fields in plan
        if rule == "finetune" and "/constvel/" not in fields["output"][0]
    )
    target = finetune["output"][0]
    # Its upstream jobs' outputs (dataset manifest, projectors, ...) are made here, so that it
    # is the only job to run; only their existence matters, as the job itself is a stub.
    for rule, fields in planned_jobs(snakemake([target, *args, "-n"], stub_env, cwd=work)):
        if rule != "finetune":
            for path in fields["output"]:
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).touch()

    outputs = [str(work / path) for path in finetune["output"] + finetune.get("benchmark", [])]
    out = snakemake(
        [target, *args, "--allowed-rules", "finetune", "--latency-wait", "5"],
        {**stub_env, "STUB_OUTPUTS": os.pathsep.join(outputs)},
        cwd=work,
    )
    assert "1 of 1 steps (100%) done" in out, out[-3000:]
    calls = [
        call.rstrip("\0").split("\0")
        for call in (tmp_path / "sbatch.calls").read_text().splitlines()
    ]
    assert len(calls) == 1, calls
    argv = calls[0]
    line = shlex.join(argv)
    assert f"--gpus={config['gpus']}" in argv, line  # what the plugin emits for gpu=N
    assert argv[argv.index("--comment") + 1].startswith("rule_finetune"), line
    partition = yaml.safe_load((PROFILE / "config.yaml").read_text())["default-resources"]
    assert argv[argv.index("-p") + 1] == partition["slurm_partition"], line
    assert "--mem" in argv and "-t" in argv, line
    assert "--export=ALL" in argv, line  # the submitting PATH (the venv's softeq) reaches jobs
    wrap = next(arg for arg in argv if arg.startswith("--wrap="))
    assert "slurm-jobstep" in wrap, line
