"""ViT / DINOv2 segmenters: a timm ViT backbone and a linear head on its patch-token grid.

Registered as ``vit`` (default backbone ``vit_base_patch16_224``) and ``dinov2`` (default
``vit_base_patch14_dinov2``).  ``softeq.soften`` finds the patch-embedding conv and the
``pos_embed`` grid inside the backbone (docs/method.md §5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from softeq.models.backbones import BackboneSpec, build_backbone
from softeq.models.registry import register_model
from softeq.models.segmentation import PatchGridSegmenter, check_patch_multiple
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["ViTSegmenter", "build_vit_segmenter"]


class ViTSegmenter(PatchGridSegmenter):
    """A timm ViT backbone + a linear head on its patch-token grid + bilinear upsampling.

    ``backbone`` is a timm ``VisionTransformer`` (any number of class / register tokens: the
    ``num_prefix_tokens`` first tokens are dropped). Input sides must be multiples of the patch
    size: the patch conv would otherwise drop the last rows and columns, which breaks the rotation
    symmetry.  ``crop_remainder`` accepts such sizes as the reference does (its DINOv2 at 512 px:
    36 x 36 patches over 504 px, the logits upsampled to 512; docs/fidelity.md).
    """

    head_prefixes = ("head",)

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        crop_remainder: bool = False,
    ) -> None:
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        super().__init__(
            num_classes,
            mean if mean is not None else cfg.get("mean", IMAGENET_MEAN),
            std if std is not None else cfg.get("std", IMAGENET_STD),
        )
        if not hasattr(backbone, "forward_features") or not hasattr(backbone, "patch_embed"):
            raise TypeError(f"{type(backbone).__name__} is not a timm ViT (no patch_embed)")
        self.backbone = backbone
        patch = backbone.patch_embed.patch_size
        self.patch_size = (
            (int(patch[0]), int(patch[1]))
            if isinstance(patch, Sequence)
            else (int(patch), int(patch))
        )
        self.crop_remainder = crop_remainder
        self.num_prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 1))
        width = int(getattr(backbone, "embed_dim", getattr(backbone, "num_features", 0)))
        self.head = nn.Conv2d(width, self.num_classes, kernel_size=1)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(images)


def build_vit_segmenter(
    num_classes: int,
    image_size: int,
    pretrained: str | None = None,
    backbone: str = "vit_base_patch16_224",
    backbone_kwargs: dict[str, Any] | None = None,
    crop_remainder: bool = False,
) -> ViTSegmenter:
    """A timm ViT ``backbone`` with a ``num_classes`` linear head; ``pretrained``: a timm tag or
    a local weights file.  ``image_size`` must be a multiple of the patch size unless
    ``crop_remainder`` (the reference's behaviour, :class:`ViTSegmenter`)."""
    kwargs = {"img_size": image_size, **(backbone_kwargs or {})}
    spec = BackboneSpec(timm=backbone, input_size=image_size, kwargs=kwargs, pretrained=pretrained)
    model = build_backbone(spec, num_classes=0)
    patch = model.patch_embed.patch_size
    patch = patch[0] if isinstance(patch, Sequence) else patch
    check_patch_multiple(backbone, image_size, patch, crop_remainder)
    return ViTSegmenter(model, num_classes, crop_remainder=crop_remainder)


@register_model("vit", task="segmentation")
def _vit(num_classes: int, image_size: int, pretrained: str | None = None, **kwargs: Any):
    return build_vit_segmenter(num_classes, image_size, pretrained, **kwargs)


@register_model("dinov2", task="segmentation")
def _dinov2(
    num_classes: int,
    image_size: int,
    pretrained: str | None = None,
    backbone: str = "vit_base_patch14_dinov2",
    backbone_kwargs: dict[str, Any] | None = None,
    crop_remainder: bool = False,
) -> ViTSegmenter:
    return build_vit_segmenter(
        num_classes, image_size, pretrained, backbone, backbone_kwargs, crop_remainder
    )
