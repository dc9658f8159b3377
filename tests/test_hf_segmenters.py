"""The reference's ViT / DINOv2 segmenters (softeq.models.seg_hf_vit, archs vit_hf / dinov2_hf):
tiny random transformers configs whose stored positional grid differs from the input's grid, the
reference's head, exact C4 equivariance at b = 0 (the grid filtered before HF interpolates it), the
in-place grid (P^k after k forwards), config validation and the offline errors
(docs/fidelity.md)."""

import pytest
import torch
import torch.nn.functional as F

import softeq
from softeq.engine.segmentation import SegRecipe, param_groups
from softeq.layers import iter_soft
from softeq.models import hf_classifier as hf_module
from softeq.models.backbones import PretrainedUnavailable
from softeq.models.registry import list_models
from softeq.models.segmentation import build_segmenter
from softeq.pipeline import ConfigError, validate_config
from softeq.projectors import invariant_projector
from softeq.soften_options import IN_PLACE_SEGMENTERS, SoftenOptions, check_config_options
from softeq.spec import Softening
from softeq.stages.common import soften_from
from tiny_hf import TINY_DINOV2, TINY_VIT

transformers = pytest.importorskip("transformers")

# DINOv2: stored grid 8 x 8 (image_size 32, patch 4), inputs of 20 px: a 5 x 5 grid (interpolated)
DINO = {"hf": "dinov2", "config": TINY_DINOV2}
# ViT: stored grid 4 x 4 (16 px), inputs of 24 px: a 6 x 6 grid
VIT = {"hf": "vit", "config": TINY_VIT}
CASES = [("dinov2_hf", DINO, 20, 8), ("vit_hf", VIT, 24, 4)]  # arch, kwargs, input, stored side
POS = "backbone.embeddings.position_embeddings"
PATCH = "backbone.embeddings.patch_embeddings.projection.weight"


def build(arch: str, kwargs: dict, size: int, classes: int = 5, seed: int = 0, **more):
    torch.manual_seed(seed)
    return build_segmenter(arch, classes, size, **kwargs, **more).eval()


def rot90_gap(model, size: int) -> float:
    """max over q of |f(rot^q x) - rot^q f(x)|."""
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(x)
        return max(
            float((model(torch.rot90(x, q, (2, 3))) - torch.rot90(out, q, (2, 3))).abs().max())
            for q in (1, 2, 3)
        )


@pytest.mark.parametrize(("arch", "kwargs", "size", "side"), CASES)
def test_strict_segmenter_is_c4_equivariant_with_the_stored_grid_filtered(arch, kwargs, size, side):
    model = build(arch, kwargs, size)
    stored = model.backbone.embeddings.position_embeddings
    assert stored.shape[1] == 1 + side * side and side != size // 4  # interpolated at forward
    assert rot90_gap(model, size) > 1e-3  # the plain model is not equivariant
    softeq.soften(model, "C4", 0.0)
    soft = {s.name: s for s in iter_soft(model)}
    assert set(soft) == {POS, PATCH}  # the 1 x 1 head stays plain
    assert soft[POS].parametrization.projector.grid == side  # the stored grid
    assert soft[POS].parametrization.num_prefix_tokens == 1  # CLS untouched
    assert rot90_gap(model, size) < 1e-4
    with torch.no_grad():
        assert model(torch.rand(1, 3, size, size)).shape == (1, 5, size, size)


@pytest.mark.parametrize(("arch", "kwargs", "size", "side"), CASES)
def test_the_head_is_the_references(arch, kwargs, size, side):
    """A 1 x 1 conv with bias on the patch tokens of the last hidden state (after the final
    layer norm, CLS dropped), weights normal std 0.02 and zero bias, logits bilinearly upsampled
    (align_corners False) to the input size (models/filtered_vit_seg.py, filtered_dino2_seg.py)."""
    model = build(arch, kwargs, size, classes=300)
    head = model.head
    assert (head.in_channels, head.out_channels, head.kernel_size) == (32, 300, (1, 1))
    assert torch.count_nonzero(head.bias) == 0
    weight = head.weight.detach()
    assert abs(float(weight.std()) - 0.02) < 0.002 and abs(float(weight.mean())) < 0.002
    assert getattr(model.backbone, "pooler", None) is None  # it never reaches the logits
    model(torch.rand(1, 3, size, size)).sum().backward()  # every trained tensor has a gradient
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    assert model.is_head("head.weight") and not model.is_head(POS)
    x = torch.rand(2, 3, size, size)
    grid = size // 4
    with torch.no_grad():
        kw = {"interpolate_pos_encoding": True} if arch == "vit_hf" else {}
        hidden = model.backbone(pixel_values=model.normalize(x), **kw).last_hidden_state
        features = hidden[:, 1:].transpose(1, 2).reshape(2, 32, grid, grid)
        expected = F.interpolate(head(features), size=(size, size), mode="bilinear")
        torch.testing.assert_close(model(x), expected)
    # ImageNet normalisation, as the reference's VOC loader (data_loader/pascal_voc.py:70)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(model.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))


@pytest.mark.parametrize(("arch", "kwargs", "size", "side"), CASES)
def test_in_place_grid_after_k_forwards_is_p_to_the_k(arch, kwargs, size, side):
    model = build(arch, kwargs, size)
    assert model.reference_in_place == (POS,)
    embeddings = model.backbone.embeddings
    original = embeddings.position_embeddings.detach().clone()
    soften_from(model, Softening("C4", 0.5), None, SoftenOptions(in_place=True))
    # the patch conv stays parametrized (filtered per forward, not in place), as the reference
    assert [s.name for s in iter_soft(model)] == [PATCH]
    projector = invariant_projector("C4", side, 0.5, "shrink", side="data")
    x = torch.rand(1, 3, size, size)
    expected, done = original[:, 1:], 0
    for k in (1, 3):
        for _ in range(k - done):
            expected = projector.apply_tokens(expected)
            with torch.no_grad():
                model(x)
        done = k
        now = embeddings.position_embeddings
        torch.testing.assert_close(now[:, 1:], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(now[:, :1], original[:, :1], atol=0, rtol=0)
    assert float((expected - projector.apply_tokens(original[:, 1:])).abs().max()) > 1e-4


def test_the_positional_grid_is_not_decayed_by_default():
    model = softeq.soften(build("dinov2_hf", DINO, 20), "C4", 0.5)
    for decay_all, expected in ((False, 0.0), (True, 0.05)):
        recipe = SegRecipe(weight_decay=0.05, decay_all=decay_all)
        groups = {g["name"]: g for g in param_groups(model, recipe)}
        grid = model.backbone.embeddings.parametrizations.position_embeddings.original
        cls = model.backbone.embeddings.cls_token
        no_decay = groups["backbone_no_decay"]
        assert no_decay["weight_decay"] == expected
        assert any(p is grid for p in no_decay["params"])
        assert any(p is cls for p in no_decay["params"])


def test_crop_remainder_drops_the_last_pixels_as_the_reference():
    """The reference's DINOv2 at 512 px sees 36 x 14 = 504 px; the logits cover the full size."""
    with pytest.raises(ValueError, match=r"multiple of the patch size 4 \(use 20 or 24"):
        build("dinov2_hf", DINO, 22)
    model = build("dinov2_hf", DINO, 22, crop_remainder=True)
    x = torch.rand(1, 3, 22, 22)
    y = x.clone()
    y[..., 20:, :] = torch.rand_like(y[..., 20:, :])  # the 2 cropped rows and columns
    y[..., :, 20:] = torch.rand_like(y[..., :, 20:])
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 5, 22, 22)
        torch.testing.assert_close(model(y), out, atol=0, rtol=0)
        with pytest.raises(ValueError, match="crop_remainder"):
            build("dinov2_hf", DINO, 20)(x)


def test_the_references_checkpoints_build_offline_with_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_module, "hub_reachable", lambda: False)
    with pytest.raises(ValueError, match=r"image_size 512 .* \(use 504 or 518"):
        build_segmenter("dinov2_hf", 21, 512)
    dino = build_segmenter("dinov2_hf", 21, 512, crop_remainder=True)
    config = dino.backbone.config
    assert (type(dino.backbone).__name__, config.patch_size) == ("Dinov2Model", 14)
    assert dino.backbone.embeddings.position_embeddings.shape == (1, 1 + 37 * 37, 768)
    vit = build_segmenter("vit_hf", 21, 224)
    assert type(vit.backbone).__name__ == "ViTModel"
    assert vit.backbone.embeddings.position_embeddings.shape == (1, 1 + 14 * 14, 768)
    with pytest.raises(PretrainedUnavailable) as info:
        build_segmenter("dinov2_hf", 21, 518, pretrained="facebook/dinov2-base")
    message = str(info.value)
    assert "facebook/dinov2-base" in message and "not in the local Hugging Face cache" in message
    assert "from_pretrained" in message
    with pytest.raises(PretrainedUnavailable, match="the config of"):
        build_segmenter("vit_hf", 21, 224, hf="someone/unknown-vit")


def test_pretrained_from_a_local_folder_and_the_cache(tmp_path, monkeypatch):
    reference = build("dinov2_hf", DINO, 20)
    reference.backbone.save_pretrained(tmp_path / "dino")
    same = build("dinov2_hf", {}, 20, seed=1, pretrained=str(tmp_path / "dino"))
    for name, tensor in reference.backbone.state_dict().items():
        torch.testing.assert_close(same.backbone.state_dict()[name], tensor, atol=0, rtol=0)
    repo = tmp_path / "cache" / "models--facebook--tiny-dinov2-seg-test"
    reference.backbone.save_pretrained(repo / "snapshots" / "0123456789abcdef")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hf_module, "hub_reachable", lambda: pytest.fail("went online"))
    cached = build("dinov2_hf", {}, 20, pretrained="facebook/tiny-dinov2-seg-test")
    torch.testing.assert_close(
        cached.backbone.embeddings.position_embeddings,
        reference.backbone.embeddings.position_embeddings,
    )
    with pytest.raises(ValueError, match="not a ViT / DINOv2 backbone"):
        build_segmenter("vit_hf", 3, 32, hf="resnet")


def test_config_accepts_in_place_on_these_segmenters_only(tmp_path):
    from pathlib import Path

    import yaml

    assert set(IN_PLACE_SEGMENTERS) <= set(list_models("segmentation"))

    def spec(arch: str) -> dict:
        return {"seg": {"arch": arch, "image_size": 224, "soften": {"in_place": True}}}

    for arch in IN_PLACE_SEGMENTERS:
        check_config_options(spec(arch))
    for arch in ("vit", "dinov2", "segformer_hf"):
        with pytest.raises(ValueError, match=r"in_place: applies to pair .*segmenters"):
            check_config_options(spec(arch))
    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    config["backbones"]["dinohfseg"] = {
        "arch": "dinov2_hf",
        "image_size": 512,
        "pretrained": "facebook/dinov2-base",
        "kwargs": {"crop_remainder": True},
        "soften": {"in_place": True},
        "exact": {"image_size": 518, "kwargs": {}, "soften": None},
    }
    validate_config(config, root / "workflow/schemas/config.schema.yaml")
    config["backbones"]["dinohfseg"]["arch"] = "dinov2_transformers"
    with pytest.raises(ConfigError, match="dinohfseg"):
        validate_config(config, root / "workflow/schemas/config.schema.yaml")
