"""Hugging Face classifiers (softeq.models.hf_classifier): the reference's checkpoints' classes
built from tiny random configs, the positional grid softened on its STORED grid before HF
interpolates it, exact rot90 invariance at b = 0 (C4), the in-place positional filter (P^k after
k forwards), and the offline errors (docs/fidelity.md)."""

import copy

import pytest
import torch

import softeq
from softeq.layers import iter_soft
from softeq.models import build_classifier
from softeq.models import hf_classifier as hf_module
from softeq.models.backbones import PretrainedUnavailable
from softeq.models.hf_classifier import HFBackboneSpec, HFClassifier
from softeq.pipeline import ConfigError, validate_config
from softeq.projectors import invariant_projector
from softeq.soften_options import SoftenOptions, check_config_options
from softeq.spec import Softening
from softeq.stages.common import soften_from
from tiny_hf import TINY_DINOV2, TINY_VIT

transformers = pytest.importorskip("transformers")

# stored grid 8 x 8 (image_size 32, patch 4); inputs of 20 px: a 5 x 5 grid, interpolated
DINO = {"hf": "dinov2", "input_size": 20, "kwargs": TINY_DINOV2}
VIT = {"hf": "vit", "input_size": 24, "kwargs": TINY_VIT}
# 33 px keeps every strided input odd (33 -> 17 -> 9 -> 5): exact C4 at b = 0
RESNET = {
    "hf": "resnet",
    "input_size": 33,
    "kwargs": {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]},
}
POS = "model.dinov2.embeddings.position_embeddings"


def build(spec: dict, classes: int = 5, seed: int = 0) -> HFClassifier:
    torch.manual_seed(seed)
    _, model = build_classifier(spec, classes)
    return model.eval()


def rot90_error(model: HFClassifier, size: int) -> float:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(x)
        return max(
            float((model(torch.rot90(x, q, (2, 3))) - logits).abs().max()) for q in (1, 2, 3)
        )


def test_the_three_architectures_build_as_their_hf_classes():
    names = {
        "dinov2": "Dinov2ForImageClassification",
        "vit": "ViTForImageClassification",
        "resnet": "ResNetForImageClassification",
    }
    for spec in (DINO, VIT, RESNET):
        model = build(spec, classes=7)
        assert type(model.model).__name__ == names[spec["hf"]]
        size = spec["input_size"]
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 7)
        head = [m for m in model.get_classifier().modules() if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in head] == [7]  # the head head_epochs trains first


def test_dinov2_head_is_linear_on_cls_and_mean_patch_tokens():
    model = build(DINO)
    assert isinstance(model.model, transformers.Dinov2ForImageClassification)
    head = model.model.classifier
    assert (head.in_features, head.out_features) == (2 * 32, 5)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        tokens = model.model.dinov2(pixel_values=x).last_hidden_state
        expected = head(torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=1))
        torch.testing.assert_close(model(x), expected)


def test_dinov2_grid_is_filtered_on_the_stored_grid_and_exact_at_b0():
    model = build(DINO)
    assert rot90_error(model, 20) > 1e-3  # the plain model is not invariant
    softeq.soften(model, "C4", 0.0)
    soft = {s.name: s for s in iter_soft(model)}
    assert set(soft) == {POS, "model.dinov2.embeddings.patch_embeddings.projection.weight"}
    grid = soft[POS]
    assert grid.parametrization.projector.grid == 8  # the stored grid, not the 5 x 5 input one
    assert grid.parametrization.num_prefix_tokens == 1  # CLS untouched
    stored = grid.projected  # what interpolate_pos_encoding reads
    assert stored.shape == (1, 1 + 8 * 8, 32)
    patches = stored[0, 1:].reshape(8, 8, 32)
    torch.testing.assert_close(torch.rot90(patches, 1, (0, 1)), patches, atol=1e-6, rtol=0)
    assert rot90_error(model, 20) < 1e-4


@pytest.mark.parametrize(("spec", "size"), [(VIT, 24), (VIT, 16), (RESNET, 33)])
def test_vit_and_resnet_at_b0_are_rot90_invariant(spec, size):
    model = build(spec)
    assert rot90_error(model, size) > 1e-3
    softeq.soften(model, "C4", 0.0)
    assert rot90_error(model, size) < 1e-4


def test_include_and_exclude_use_the_real_qualified_name():
    model = softeq.soften(build(DINO), "C4", 0.5, exclude="*.position_embeddings")
    assert [s.name for s in iter_soft(model)] == [
        "model.dinov2.embeddings.patch_embeddings.projection.weight"
    ]
    model = softeq.soften(build(VIT), "C4", 0.5, include="*.position_embeddings")
    assert [s.name for s in iter_soft(model)] == ["model.vit.embeddings.position_embeddings"]


@pytest.mark.parametrize("spec", [DINO, VIT])
def test_in_place_grid_after_k_forwards_is_p_to_the_k(spec):
    model = build(spec)
    embeddings = model.get_submodule(model.reference_in_place[0].rsplit(".", 1)[0])
    original = embeddings.position_embeddings.detach().clone()
    side = {"dinov2": 8, "vit": 4}[spec["hf"]]
    soften_from(model, Softening("C4", 0.5), None, SoftenOptions(in_place=True))
    # the patch conv stays parametrized (filtered per forward, not in place), as the reference
    assert [s.name for s in iter_soft(model)] == [
        model.reference_in_place[0].replace("position_embeddings", "")
        + "patch_embeddings.projection.weight"
    ]
    projector = invariant_projector("C4", side, 0.5, "shrink", side="data")
    size = spec["input_size"]
    x = torch.randn(1, 3, size, size)
    expected, done = original[:, 1:], 0
    for k in (1, 3):
        for _ in range(k - done):
            expected = projector.apply_tokens(expected)
            with torch.no_grad():
                model(x)
        done = k
        now = embeddings.position_embeddings
        torch.testing.assert_close(now[:, 1:], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(now[:, :1], original[:, :1], atol=0, rtol=0)  # CLS untouched
    assert float((expected - projector.apply_tokens(original[:, 1:])).abs().max()) > 1e-4


def test_in_place_raises_where_it_cannot_apply():
    resnet = build(RESNET)
    assert resnet.reference_in_place == ()
    with pytest.raises(ValueError, match=r"in_place: HFClassifier names no tensors"):
        soften_from(resnet, Softening("C4", 0.5), None, SoftenOptions(in_place=True))
    dino = build(DINO)
    with pytest.raises(ValueError, match="match no soft tensor"):
        softeq.soften(dino, "C4", 0.5, pos_embed=False, in_place=dino.reference_in_place)
    with pytest.raises(ValueError, match="only pair maps, pair vectors and positional"):
        softeq.soften(build(DINO), "C4", 0.5, in_place="*projection.weight")


def test_config_accepts_in_place_on_hf_classifiers_only():
    hf = {"hf": "facebook/dinov2-base-imagenet1k-1-layer", "input_size": 224, "pretrained": True}
    check_config_options({"dino": {**hf, "soften": {"in_place": True}}})
    with pytest.raises(ValueError, match=r"in_place: applies to pair .* HF \(hf\) ViT"):
        check_config_options({"vit": {"timm": "vit_tiny_patch16_224", "input_size": 32,
                                      "soften": {"in_place": True}}})  # fmt: skip


def test_a_config_with_an_hf_classifier_validates(tmp_path):
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    config["backbones"]["dinohf"] = {
        "hf": "facebook/dinov2-base-imagenet1k-1-layer",
        "input_size": 224,
        "pretrained": True,
        "soften": {"in_place": True},
    }
    config["experiments"][0]["backbones"].append("dinohf")
    validate_config(config, root / "workflow/schemas/config.schema.yaml")
    config["backbones"]["dinohf"]["pretrained"] = 3
    with pytest.raises(ConfigError, match="dinohf"):
        validate_config(config, root / "workflow/schemas/config.schema.yaml")


def test_pretrained_from_a_local_folder_and_another_head(tmp_path):
    reference = build(DINO, classes=5)
    reference.model.save_pretrained(tmp_path / "dino")
    spec = {**DINO, "hf": str(tmp_path / "dino"), "pretrained": True, "kwargs": {}}
    same = build(spec, classes=5, seed=1)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(same.state_dict()[name], tensor, atol=0, rtol=0)
    other = build(spec, classes=3, seed=1)
    assert other.model.classifier.out_features == 3
    torch.testing.assert_close(
        other.model.dinov2.embeddings.position_embeddings,
        reference.model.dinov2.embeddings.position_embeddings,
    )


def _write_hf_cache(root, repo_id: str, model) -> None:
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    model.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")


def test_pretrained_loads_from_the_hf_cache_without_network(tmp_path, monkeypatch):
    reference = build(DINO, classes=5)
    _write_hf_cache(tmp_path, "facebook/tiny-dinov2-test", reference.model)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_module, "hub_reachable", lambda: pytest.fail("went online"))
    spec = HFBackboneSpec("facebook/tiny-dinov2-test", 20, {}, True)
    _, model = build_classifier(spec, 5)
    torch.testing.assert_close(model.model.classifier.weight, reference.model.classifier.weight)
    _, fresh = build_classifier(spec, 5, random_init=True)  # the config from the cache
    assert fresh.model.config.image_size == 32


def test_offline_without_cache_fails_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_module, "hub_reachable", lambda: False)
    spec = {"hf": "facebook/dinov2-base-imagenet1k-1-layer", "input_size": 224}
    with pytest.raises(PretrainedUnavailable) as info:
        build_classifier({**spec, "pretrained": True}, 1000)
    message = str(info.value)
    assert "facebook/dinov2-base-imagenet1k-1-layer" in message
    assert "not in the local Hugging Face cache" in message
    assert "from_pretrained" in message
    with pytest.raises(PretrainedUnavailable, match="the config of"):
        build_classifier({**spec, "hf": "someone/unknown-model"}, 10)  # needs its config
    # the reference's checkpoints have a known architecture: random weights build offline
    # (the projectors stage; a model whose weights come from a softeq checkpoint)
    _, model = build_classifier(spec, 1000)
    config = model.model.config
    assert (config.model_type, config.image_size, config.patch_size) == ("dinov2", 518, 14)
    assert model.model.dinov2.embeddings.position_embeddings.shape == (1, 1 + 37 * 37, 768)


def test_bad_specs_raise_naming_the_problem():
    with pytest.raises(ValueError, match="unknown keys"):
        HFBackboneSpec.from_dict({**DINO, "timm": "x"})
    with pytest.raises(ValueError, match="is a model type"):
        build_classifier({**DINO, "pretrained": True}, 5)
    with pytest.raises(ValueError, match=r"ViTConfig has no field \['drop_path_rate'\]"):
        build_classifier(VIT, 5, drop_path=0.1)
    spec, model = build_classifier(DINO, 5, drop_path=0.1)
    assert model.model.config.drop_path_rate == 0.1
    assert spec.kwargs["drop_path_rate"] == 0.1
    copy.deepcopy(model)  # the wrapper deep-copies (figure and EMA code copy models)


def test_deit_small_builds_offline_as_timms_deit_small(monkeypatch):
    """The CIFAR rows' DeiT-S: its random-weight build (projector jobs, offline) has timm's
    ``deit_small_patch16_224`` architecture, counted parameter by parameter."""
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, model = build_classifier({"hf": "facebook/deit-small-patch16-224", "input_size": 224}, 10)
    reference = timm.create_model("deit_small_patch16_224", num_classes=10)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) == count(reference) == 21_669_514
