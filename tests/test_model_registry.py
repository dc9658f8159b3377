"""softeq.models.registry: models by name, one error naming the unknown model and the known ones."""

import pytest
from torch import nn

from softeq.models import create_model, list_models, register_model


def test_builtin_models_are_registered_per_task():
    assert {"vit", "dinov2", "segformer", "segformer_hf", "segformer_mmseg"} <= set(
        list_models("segmentation")
    )
    assert {"tiny", "filtered", "nonequivariant", "constant_velocity"} <= set(
        list_models("trajectory")
    )
    assert list_models("classification") == ["timm"]
    assert create_model("tiny", task="trajectory", obs_len=8).obs_len == 8


def test_unknown_model_names_itself_and_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown segmentation model 'unet'.*segformer_hf"):
        create_model("unet", task="segmentation", num_classes=2, image_size=32)
    with pytest.raises(ValueError, match=r"unknown model 'nope'; known models: .*tiny"):
        create_model("nope")


def test_register_a_model_and_refuse_a_clash():
    @register_model("test_identity", task="test")
    def build(width: int = 3) -> nn.Module:
        return nn.Linear(width, width)

    assert isinstance(create_model("test_identity", width=2), nn.Linear)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny", task="trajectory")(lambda: None)
