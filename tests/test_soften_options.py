"""Per-backbone softening options (softeq.soften_options): parsing, validation that names the
key, how they reach ``softeq.soften``, and that the embedded default sets none."""

import copy
from pathlib import Path

import pytest
import yaml
from torch import nn

from softeq.layers import iter_soft
from softeq.pipeline import ConfigError, validate_config
from softeq.soften_options import SkipSmallKernels, SoftenOptions, split_backbone_spec
from softeq.spec import Softening
from softeq.stages.common import soften_from

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
RULE = {"skip_small_kernels": {"max_kernel": 3, "above_softness": 0.8}}


def small_cnn() -> nn.Module:
    """A 7 x 7 stem, a 3 x 3 conv and a 1 x 1 conv."""
    return nn.Sequential(nn.Conv2d(3, 4, 7), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 1))


def softened(model: nn.Module, softness: float, options: SoftenOptions) -> list[str]:
    soften_from(model, Softening("C4", softness, filter="rank"), None, options)
    return [soft.name for soft in iter_soft(model)]


def test_the_rule_raises_the_smallest_softened_kernel_only_above_its_softness():
    options = SoftenOptions.from_dict(RULE)
    assert options.skip_small_kernels == SkipSmallKernels(3, 0.8)
    assert options.soften_kwargs(Softening("C4", 0.8)) == {}  # strictly above, as the reference
    assert options.soften_kwargs(Softening("C4", 0.95)) == {"min_kernel": 4}
    assert SoftenOptions().soften_kwargs(Softening("C4", 0.95)) == {}


@pytest.mark.parametrize(
    ("softness", "expected"),
    [(0.5, ["0.weight", "1.weight"]), (0.8, ["0.weight", "1.weight"]), (0.95, ["0.weight"])],
)
def test_soften_from_applies_the_rule(softness, expected):
    assert softened(small_cnn(), softness, SoftenOptions.from_dict(RULE)) == expected


def test_without_options_every_kernel_of_two_or_more_is_softened():
    assert softened(small_cnn(), 0.95, SoftenOptions()) == ["0.weight", "1.weight"]


def test_an_option_that_cannot_act_on_the_model_raises():
    only_large = nn.Sequential(nn.Conv2d(3, 4, 16))
    with pytest.raises(ValueError, match=r"soften\.skip_small_kernels: .*no convolution"):
        softened(only_large, 0.95, SoftenOptions.from_dict(RULE))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"skip_small_kernel": {}}, r"soften: unknown keys \['skip_small_kernel'\]"),
        ([], "soften: expected a mapping"),
        ({"skip_small_kernels": 3}, "soften.skip_small_kernels: expected a mapping"),
        ({"skip_small_kernels": {"max_kernel": 3}}, r"missing \['above_softness'\]"),
        (
            {"skip_small_kernels": {"max_kernel": 3, "above_softness": 0.8, "min": 1}},
            r"soften.skip_small_kernels: unknown keys \['min'\]",
        ),
        (
            {"skip_small_kernels": {"max_kernel": 3.0, "above_softness": 0.8}},
            "soften.skip_small_kernels.max_kernel: expected an integer",
        ),
        (
            {"skip_small_kernels": {"max_kernel": True, "above_softness": 0.8}},
            "soften.skip_small_kernels.max_kernel: expected an integer",
        ),
        (
            {"skip_small_kernels": {"max_kernel": 3, "above_softness": "0.8"}},
            "soften.skip_small_kernels.above_softness: expected a number",
        ),
        (
            {"skip_small_kernels": {"max_kernel": 3, "above_softness": 1.5}},
            r"soften.skip_small_kernels.above_softness must lie in \[0, 1\]",
        ),
    ],
)
def test_bad_options_raise_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        split_backbone_spec({"timm": "resnet50", "input_size": 32, "soften": values})


@pytest.fixture
def paper() -> dict:
    return yaml.safe_load((ROOT / "config/paper.yaml").read_text())


@pytest.mark.parametrize(
    ("backbone", "values", "message"),
    [
        (
            "transformer",
            RULE,
            r"config key backbones\.transformer\.soften\.skip_small_kernels: .*trajectory model",
        ),
        (  # a timm ViT names no positional grid for in-place filtering (the hf ones do)
            "vitb16timm",
            {"in_place": True},
            r"config key backbones\.vitb16timm\.soften\.in_place: applies to pair",
        ),
        (
            "transformer",
            {"vector_filter": "smooth"},
            r"config key backbones\.transformer\.soften\.vector_filter: expected one of",
        ),
        ("resnet50", {"skip": 1}, r"config key backbones\.resnet50\.soften: unknown keys"),
        (
            "segformerb0",
            {"skip_small_kernels": {"max_kernel": "3", "above_softness": 0.9}},
            r"config key backbones\.segformerb0\.soften\.skip_small_kernels\.max_kernel",
        ),
    ],
)
def test_a_config_with_bad_options_fails_naming_the_key(paper, backbone, values, message):
    config = copy.deepcopy(paper)
    config["backbones"][backbone]["soften"] = values
    with pytest.raises(ConfigError, match=message):
        validate_config(config, SCHEMA)


def test_the_embedded_default_sets_no_option():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    validate_config(config, SCHEMA)
    for name, spec in config["backbones"].items():
        assert "soften" not in spec, name
