"""Hugging Face SegFormer (the paper's segmentation model) behind the segmenter interface.

Registered as ``segformer`` and ``segformer_hf``: ``SegformerForSemanticSegmentation`` started
from a hub checkpoint such as :data:`HF_SEGFORMER_B0_ADE` (read from the local cache first), or
the same MiT-b0 architecture from a ``SegformerConfig`` with random weights offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from softeq.models.backbones import HUB_HOST, PretrainedUnavailable, hub_reachable
from softeq.models.registry import register_model
from softeq.models.segmentation import Segmenter

__all__ = ["HF_SEGFORMER_B0_ADE", "HFSegformer", "build_hf_segformer"]

HF_SEGFORMER_B0_ADE = "nvidia/segformer-b0-finetuned-ade-512-512"


class HFSegformer(Segmenter):
    """Hugging Face ``SegformerForSemanticSegmentation`` with logits at the input resolution."""

    head_prefixes = ("model.decode_head",)

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__(num_classes)
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=self.normalize(images)).logits
        return self.upsample(logits, images.shape[-2:])


@register_model("segformer", task="segmentation")
@register_model("segformer_hf", task="segmentation")
def build_hf_segformer(
    num_classes: int,
    image_size: int | None = None,
    pretrained: str | None = None,
    config: dict[str, Any] | None = None,
) -> HFSegformer:
    """SegFormer with a ``num_classes`` head: MiT-b0 with random weights when ``pretrained`` is
    None (``config`` overrides ``SegformerConfig`` fields), else a hub name or a local folder.
    ``image_size`` is accepted for the common interface (SegFormer takes any size)."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    if pretrained is None:
        # MiT-b0 (SegformerConfig's defaults, spelled out so a change of defaults cannot move it)
        settings = {
            "num_channels": 3,
            "num_encoder_blocks": 4,
            "depths": [2, 2, 2, 2],
            "sr_ratios": [8, 4, 2, 1],
            "hidden_sizes": [32, 64, 160, 256],
            "patch_sizes": [7, 3, 3, 3],
            "strides": [4, 2, 2, 2],
            "num_attention_heads": [1, 2, 5, 8],
            "mlp_ratios": [4, 4, 4, 4],
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "classifier_dropout_prob": 0.1,
            "drop_path_rate": 0.1,
            "layer_norm_eps": 1e-6,
            "decoder_hidden_size": 256,
            "semantic_loss_ignore_index": 255,
            **(config or {}),
            "num_labels": num_classes,
        }
        return HFSegformer(
            SegformerForSemanticSegmentation(SegformerConfig(**settings)), num_classes
        )
    kwargs = {"num_labels": num_classes, "ignore_mismatched_sizes": True, **(config or {})}
    try:  # a local folder, or the Hugging Face cache
        model = SegformerForSemanticSegmentation.from_pretrained(
            pretrained, local_files_only=True, **kwargs
        )
    except OSError as offline_error:
        if Path(pretrained).exists() or not hub_reachable():
            raise PretrainedUnavailable(
                f"SegFormer weights {pretrained!r} are not in the local Hugging Face cache and "
                f"{HUB_HOST} cannot be reached. On a machine with internet run `python -c "
                '"from transformers import SegformerForSemanticSegmentation as S; '
                f"S.from_pretrained('{pretrained}')\"` to fill the cache (HF_HOME), or pass a "
                f"local folder. ({offline_error})"
            ) from offline_error
        model = SegformerForSemanticSegmentation.from_pretrained(pretrained, **kwargs)
    return HFSegformer(model, num_classes)
