"""The soft SO(2) transformer on one real ETH/UCY fold, end to end through the CLI (CPU)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "eth_ucy"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/eth_ucy is absent")


def softeq(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "softeq.cli", *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_train_and_evaluate_on_the_zara1_fold(tmp_path):
    manifest = tmp_path / "ethucy.json"
    softeq(
        "prepare-data",
        "--dataset",
        "ethucy",
        "--root",
        str(SHARED),
        "--out",
        str(manifest),
        "--protocol",
        json.dumps({"obs_len": 8, "pred_len": 12, "min_agents": 2}),
    )
    assert json.loads(manifest.read_text())["files"] == 74  # every checksum verified
    spec = json.dumps({"preset": "tiny", "kwargs": {"d_model": 16, "layers": 1, "ffn": 32}})
    softening = json.dumps({"group": "SO2", "softness": 0.0, "filter": "shrink"})
    common = ["--task", "trajectory", "--data", str(manifest), "--threads", "2"]
    projectors = tmp_path / "projectors"
    softeq(
        "projectors",
        *common,
        "--backbone-spec",
        spec,
        "--softening",
        softening,
        "--out",
        str(projectors),
    )
    model = tmp_path / "model.pt"
    recipe = json.dumps({"epochs": 1, "batch_size": 256, "lr": 2e-3})
    softeq(
        "finetune",
        *common,
        "--dataset",
        "ethucy-zara1",
        "--backbone-spec",
        spec,
        "--softening",
        softening,
        "--projectors",
        str(projectors),
        "--recipe",
        recipe,
        "--out",
        str(model),
    )
    metrics = tmp_path / "metrics.json"
    softeq(
        "evaluate",
        *common,
        "--dataset",
        "ethucy-zara1",
        "--backbone",
        "transformer",
        "--model",
        str(model),
        "--projectors",
        str(projectors),
        "--out",
        str(metrics),
        "--eval",
        json.dumps({"eval_rot": 30, "sweep": [0, 90]}),
    )
    result = json.loads(metrics.read_text())
    m = result["metrics"]
    assert result["dataset"] == "ethucy-zara1"
    assert 0 < m["ade"] < 5  # metres, after one short epoch
    assert m["fde"] > m["ade"]
    assert m["ade_sum"] == pytest.approx(12 * m["ade"], rel=1e-5)
    assert m["eq_error"] < 1e-4  # b = 0: SO(2)-equivariant about the origin
    assert m["rot_ade"] == pytest.approx(m["ade"], rel=1e-3)
