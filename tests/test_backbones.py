"""Backbones: pre-trained weights from the local cache or a file, a clear error offline, and
exact rot90 invariance of full-size ViT-B/16 and ResNet-50 at b = 0."""

import pytest
import timm
import torch
from safetensors.torch import save_file

import softeq
from softeq.models import BackboneSpec, build_backbone
from softeq.models import backbones as backbones_module

TAG = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def _write_hub_cache(root, tag, state):
    repo = root / "hub" / f"models--timm--{tag}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")


def test_pretrained_offline_fails_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(backbones_module, "hub_reachable", lambda: False)
    spec = BackboneSpec("vit_tiny_patch16_224", 224, {}, TAG)
    with pytest.raises(backbones_module.PretrainedUnavailable) as info:
        build_backbone(spec, 10)
    message = str(info.value)
    assert TAG in message
    assert "local weights file" in message
    assert "timm.create_model" in message


def test_pretrained_loads_from_the_local_cache(tmp_path, monkeypatch):
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224")
    _write_hub_cache(tmp_path, TAG, reference.state_dict())
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(backbones_module, "hub_reachable", lambda: pytest.fail("went online"))
    model = build_backbone(BackboneSpec("vit_tiny_patch16_224", 224, {}, TAG), 1000)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, atol=0, rtol=0)
    fresh_head = build_backbone(BackboneSpec("vit_tiny_patch16_224", 224, {}, TAG), 10)
    assert fresh_head.head.out_features == 10
    torch.testing.assert_close(fresh_head.pos_embed, reference.pos_embed, atol=0, rtol=0)


def test_pretrained_from_a_local_file_and_mismatches(tmp_path):
    torch.manual_seed(1)
    reference = timm.create_model("resnet18", num_classes=10)
    path = tmp_path / "weights.safetensors"
    save_file(reference.state_dict(), path)
    model = build_backbone(BackboneSpec("resnet18", 224, {}, str(path)), 10)
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight, atol=0, rtol=0)
    with pytest.raises(ValueError, match="do not fit"):
        build_backbone(BackboneSpec("resnet34", 224, {}, str(path)), 10)
    with pytest.raises(ValueError, match="is not a 'resnet18' checkpoint"):
        build_backbone(BackboneSpec("resnet18", 224, {}, TAG), 10)


@pytest.mark.parametrize(
    ("name", "size", "kwargs"),
    [("vit_base_patch16_224", 224, {}), ("resnet50", 225, {})],
)
def test_full_size_backbones_at_b0_are_rot90_invariant(name, size, kwargs):
    torch.manual_seed(2)
    model = softeq.soften(timm.create_model(name, **kwargs), "C4", 0.0).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        for quarter in (1, 2):
            rotated = model(torch.rot90(x, quarter, (2, 3)))
            torch.testing.assert_close(rotated, logits, atol=1e-4, rtol=0)
