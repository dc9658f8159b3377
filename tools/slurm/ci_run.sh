#!/usr/bin/env bash
# CI check of the Slurm path: start a local single-node cluster, run a reduced embedded DAG
# through the slurm executor with the project's profile, check its tables and figures, and stop
# the daemons this run started (always, via the EXIT trap). Exit status 0 = the DAG ran.
#   tools/slurm/ci_run.sh          # from anywhere; needs root (see start.sh)
# Knobs: SOFTEQ_CI_TIMEOUT (s, default 600) bounds snakemake; SOFTEQ_CI_KEEP=1 keeps the temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tools/slurm"
cd "$ROOT"

# Jobs run `softeq ...` and the venv's python: sbatch exports this shell's environment to the
# job (the plugin passes --export=ALL), so putting the venv first on PATH here reaches the jobs.
if [ -x "$ROOT/.venv/bin/snakemake" ]; then
    export PATH="$ROOT/.venv/bin:$PATH"
fi
for tool in snakemake softeq python; do
    command -v "$tool" >/dev/null || { echo "[ci_run] ERROR: $tool not on PATH" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/softeq-ci-slurm.XXXXXX")
SMK_LOG="$TMP/snakemake.log"
# snakemake runs in a work dir of its own: the rules' logs/, .snakemake/
# (locks, metadata, slurm job logs) then stay with this run's results and never collide with
# another run of the same DAG in the repo (tests/test_workflow.py writes the same log paths).
WORK="$TMP/work"
mkdir -p "$WORK"
# A state dir of our own: stop.sh then kills only what this run's start.sh started (nothing,
# when start.sh reused a running cluster), never a cluster someone else started.
export SOFTEQ_SLURM_DIR="$TMP/slurm"

cleanup() {
    local rc=$?
    # Cancel any job of this run still queued or running (a timeout, a failure): stopping
    # slurmd alone would leave their processes behind.
    local run_id
    run_id=$(sed -n 's/.*SLURM run ID: \([A-Za-z0-9_-]*\).*/\1/p' "$SMK_LOG" 2>/dev/null | head -1)
    if [ -n "$run_id" ] && command -v scancel >/dev/null; then
        scancel --name "$run_id" 2>/dev/null || true
    fi
    "$HERE/stop.sh" || true
    if [ $rc -eq 0 ] && [ "${SOFTEQ_CI_KEEP:-0}" != 1 ]; then
        rm -rf "$TMP"
    else
        echo "[ci_run] kept $TMP (results, snakemake.log, work/logs, slurm/log)" >&2
    fi
    exit $rc
}
trap cleanup EXIT

fail() {
    echo "[ci_run] FAILED: $*" >&2
    if [ -f "$SMK_LOG" ]; then
        echo "----- snakemake log (tail) -----" >&2
        tail -n 60 "$SMK_LOG" >&2
    fi
    # the failed jobs' own logs (rule logs; slurm keeps the job logs of failed jobs)
    local f
    while IFS= read -r f; do
        echo "----- $f (tail) -----" >&2
        tail -n 15 "$f" >&2
    done < <(find "$WORK/logs" "$WORK/.snakemake/slurm_logs" -type f -size +0 \
             -newer "$TMP/reduced.yaml" 2>/dev/null | head -n 6)
    for f in "$SOFTEQ_SLURM_DIR"/log/slurmctld.log "$SOFTEQ_SLURM_DIR"/log/slurmd.log; do
        [ -f "$f" ] && { echo "----- $f (tail) -----" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}

T0=$(date +%s)
"$HERE/start.sh" || fail "could not start the Slurm cluster"

# The reduced config is derived from config/config.yaml (not a copy), so it follows that file:
# one tiny ViT, two softness levels, one epoch each, a two-angle sweep, outputs in $TMP.
python - "$TMP" <<'PY'
import sys
from pathlib import Path

import yaml

tmp = Path(sys.argv[1])
config = yaml.safe_load(Path("config/config.yaml").read_text())
config["results"] = str(tmp / "results")
config["resources"] = str(tmp / "resources")
config["allow_outside"] = True  # results in a temporary folder
config["backbones"] = {
    "vit": {
        "timm": "vit_tiny_patch16_224",
        "input_size": 32,
        "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 24, "depth": 1, "num_heads": 2},
    }
}
# per-task stage settings: only classification runs here (a task listed under `pretrain`
# gets a pre-training job, so the key is kept, with a one-epoch recipe)
for stage in ("pretrain", "finetune"):
    if "classification" in config.get(stage, {}):
        config[stage]["classification"]["recipe"].update(epochs=1, batch_size=128)
config["evaluate"]["classification"] = {
    **config["evaluate"].get("classification", {}),
    "sweep": [0, 90],
    "batch_size": 512,
}
config["experiments"] = [
    {**exp, "backbones": ["vit"], "softness": [0.0, 1.0]}
    for exp in config["experiments"]
    if (exp["task"], exp["dataset"]) == ("classification", "digits") and not exp.get("select")
][:1]
assert config["experiments"], "config/config.yaml has no classification/digits experiment"
config["figure1"] = {**config.get("figure1", {}), "backbones": ["vit"]}
config["figure2"] = {}  # its digits69 runs are not among the reduced experiments
config["construction_timing"] = {"widths": [4, 8], "dense_limit": 8}
(tmp / "reduced.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
PY

echo "[ci_run] snakemake through slurm (log: $SMK_LOG)" >&2
T1=$(date +%s)
# SIGINT first: snakemake then cancels its slurm jobs itself; SIGKILL 30 s later if it hangs.
set +e
timeout -s INT -k 30 "${SOFTEQ_CI_TIMEOUT:-600}" \
    snakemake all --snakefile "$ROOT/workflow/Snakefile" \
    --workflow-profile "$ROOT/workflow/profiles/slurm" --directory "$WORK" \
    --configfile "$TMP/reduced.yaml" >"$SMK_LOG" 2>&1
smk_rc=$?
set -e
T2=$(date +%s)
echo "[ci_run] snakemake wall time: $((T2 - T1)) s (cluster start included: $((T2 - T0)) s)" >&2
case $smk_rc in   # 124: timed out (SIGINT), 137: and then killed
    124 | 137) fail "snakemake timed out after ${SOFTEQ_CI_TIMEOUT:-600} s" ;;
esac
[ $smk_rc -eq 0 ] || fail "snakemake exited with $smk_rc"
grep -q "SLURM run ID" "$SMK_LOG" || fail "snakemake did not use the slurm executor"

# What `all` promises for the one (task, dataset) here: the aggregate tables and the figures
# (workflow/rules/common.smk: TABLES and FIGURES).
missing=()
for name in summary runs bounds angles; do
    f="$TMP/results/tables/classification_digits_$name.csv"
    [ -s "$f" ] || missing+=("$f")
done
for name in tunability bounds angles; do
    f="$TMP/results/figures/classification_digits_$name.png"
    [ -s "$f" ] || missing+=("$f")
done
[ ${#missing[@]} -eq 0 ] || fail "missing or empty outputs: ${missing[*]}"

echo "[ci_run] OK: reduced DAG ran through slurm in $((T2 - T1)) s; outputs checked" >&2
