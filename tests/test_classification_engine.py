"""Fine-tuning through the CLI: b = 1 equals the pretrained model, and a killed run resumes from
its last checkpoint to the same final weights and metrics as an uninterrupted one."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import softeq
from softeq.data.embedded import build_digits, load_split
from softeq.engine.checkpoint import load_checkpoint
from softeq.models import BackboneSpec, build_backbone

SPEC = {
    "timm": "vit_tiny_patch16_224",
    "input_size": 32,
    "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 24, "depth": 1, "num_heads": 2},
}
RECIPE = {"epochs": 4, "batch_size": 64, "lr": 1e-3, "warmup_epochs": 1}
SOFTENING = {"group": "C4", "softness": 0.5, "softness_pos": 0.5, "filter": "shrink"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return build_digits(tmp_path_factory.mktemp("data") / "digits.safetensors")


def _softeq(*args: str, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "softeq.cli", *args, "--threads", "1"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


def _finetune(digits, out: Path) -> subprocess.Popen:
    return _softeq(
        "finetune",
        "--data",
        str(digits),
        "--backbone-spec",
        json.dumps(SPEC),
        "--softening",
        json.dumps(SOFTENING),
        "--recipe",
        json.dumps(RECIPE),
        "--seed",
        "3",
        "--checkpoint",
        f"{out}.ckpt",
        "--out",
        str(out),
    )


def _evaluate(digits, model: Path) -> dict:
    out = model.with_suffix(".json")
    proc = _softeq(
        "evaluate",
        "--data",
        str(digits),
        "--model",
        str(model),
        "--dataset",
        "digits",
        "--backbone",
        "vit",
        "--eval",
        json.dumps({"sweep": [0, 90]}),
        "--out",
        str(out),
    )
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    return json.loads(out.read_text())


def test_killed_finetune_resumes_to_the_same_result(digits, tmp_path):
    straight = tmp_path / "straight.pt"
    proc = _finetune(digits, straight)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()

    killed = tmp_path / "killed.pt"
    proc = _finetune(digits, killed)
    checkpoint = Path(f"{killed}.ckpt")
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists()
    assert not killed.exists()  # killed before the end
    epochs_done = load_checkpoint(checkpoint)["epoch"] + 1
    assert epochs_done < RECIPE["epochs"]

    proc = _finetune(digits, killed)  # the rerun resumes
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    a, b = load_checkpoint(straight), load_checkpoint(killed)
    assert [h["epoch"] for h in b["history"]] == list(range(1, RECIPE["epochs"] + 1))
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, atol=0, rtol=0, msg=name)
    assert _evaluate(digits, straight)["metrics"] == _evaluate(digits, killed)["metrics"]


def test_b1_before_finetuning_equals_the_pretrained_model(digits):
    torch.manual_seed(0)
    plain = build_backbone(BackboneSpec.from_dict(SPEC), 10).eval()
    soft = softeq.soften(copy.deepcopy(plain), "C4", 1.0, softness_pos=1.0)
    x = load_split(digits, "test").tensors[0][:16]
    with torch.no_grad():
        torch.testing.assert_close(soft(x), plain(x), atol=1e-6, rtol=0)


def test_b0_evaluation_reports_zero_rot90_error(digits, tmp_path):
    torch.manual_seed(0)
    model = softeq.soften(build_backbone(BackboneSpec.from_dict(SPEC), 10), "C4", 0.0)
    path = tmp_path / "b0.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "backbone": SPEC,
            "num_classes": 10,
            "softening": {**SOFTENING, "softness": 0.0, "softness_pos": 0.0},
        },
        path,
    )
    result = _evaluate(digits, path)
    assert result["metrics"]["inv_error_rot90"] < 1e-6  # float32 rounding of the KL
    by_angle = {row["angle"]: row["inv_error"] for row in result["angle_sweep"]}
    assert by_angle[90.0] < 1e-6
    assert {r["name"] for r in result["bounds"]} == {"patch_embed.proj.weight", "pos_embed"}
    assert result["provenance"]["device"] == "cpu"
    assert os.path.basename(result["provenance"]["config"]["model"]) == "b0.pt"
