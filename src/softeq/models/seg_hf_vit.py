"""The reference code's ViT / DINOv2 segmenters: a transformers ``ViTModel`` / ``Dinov2Model`` and
a linear (1 x 1 conv) head on its patch-token grid (docs/fidelity.md).

Registered as ``vit_hf`` (default checkpoint ``google/vit-base-patch16-224``, the reference's
``models/filtered_vit_seg.py``) and ``dinov2_hf`` (``facebook/dinov2-base``,
``models/filtered_dino2_seg.py``).  Unlike the timm segmenters (``vit`` / ``dinov2``), the model
keeps its STORED positional grid (the config's image_size over the patch size; DINOv2's 37 x 37)
and transformers interpolates it to the input's grid at every forward, so ``softeq.soften``
filters the stored grid before the interpolation, and ``soften: {in_place: true}`` projects it in
place at every forward (:attr:`HFViTSegmenter.reference_in_place`), both as the reference does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from softeq.models.hf_classifier import (
    HFBackboneSpec,
    from_hub,
    hf_config,
    interpolation_kwargs,
)
from softeq.models.registry import register_model
from softeq.models.segmentation import PatchGridSegmenter, check_patch_multiple
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "HF_DINOV2_BASE",
    "HF_VIT_BASE",
    "HFViTSegmenter",
    "build_hf_vit_segmenter",
]

HF_VIT_BASE = "google/vit-base-patch16-224"
HF_DINOV2_BASE = "facebook/dinov2-base"

_BACKBONE_CLASSES = {
    "vit": "ViTModel",
    "dinov2": "Dinov2Model",
    "dinov2_with_registers": "Dinov2WithRegistersModel",
}
"""transformers model type -> the backbone class (no task head) the segmenter wraps."""


class HFViTSegmenter(PatchGridSegmenter):
    """A transformers ViT / DINOv2 backbone + a 1 x 1 conv head on its patch-token grid +
    bilinear upsampling to the input size, as the reference's segmenters.

    The head is initialised as the reference's (weights normal with std 0.02, bias zero); the
    CLS token (and DINOv2's register tokens) are dropped from the backbone's last hidden state
    (after its final layer norm).  Input sides must be multiples of the patch size unless
    ``crop_remainder``: the patch conv then drops the last rows and columns, as the reference's
    DINOv2 at 512 px does (36 x 14 = 504 px seen, the logits upsampled to 512).  ViT is built
    without its pooler: the reference's ``ViTModel`` keeps one that never reaches the logits;
    DINOv2's mask token (masked pre-training only) is frozen for the same reason.
    """

    head_prefixes = ("head",)

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        crop_remainder: bool = False,
    ) -> None:
        super().__init__(num_classes, mean, std)
        config = backbone.config
        if config.model_type not in _BACKBONE_CLASSES:
            raise TypeError(
                f"{type(backbone).__name__}: model type {config.model_type!r} is not one of "
                f"{sorted(_BACKBONE_CLASSES)}"
            )
        self.backbone = backbone
        mask_token = getattr(backbone.embeddings, "mask_token", None)
        if isinstance(mask_token, nn.Parameter):  # DINOv2's: used only with bool_masked_pos
            mask_token.requires_grad_(False)  # no gradient ever, and DDP needs none unused
        patch = config.patch_size
        self.patch_size = (patch, patch) if isinstance(patch, int) else tuple(patch)
        self.num_prefix_tokens = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
        self.crop_remainder = crop_remainder
        self.head = nn.Conv2d(config.hidden_size, self.num_classes, kernel_size=1, bias=True)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self._position_kwargs = interpolation_kwargs(backbone)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=images, **self._position_kwargs).last_hidden_state

    @property
    def reference_in_place(self) -> tuple[str, ...]:
        """The tensor the reference filters in place at every forward: the positional grid
        (its patch part; ``models/filtered_layers_vit.py:48``, ``filtered_layers_dinov2.py:47``)."""
        return ("backbone.embeddings.position_embeddings",)


def _backbone_class(model_type: str) -> type[nn.Module]:
    import transformers

    if model_type not in _BACKBONE_CLASSES:
        raise ValueError(
            f"hf: a {model_type!r} checkpoint is not a ViT / DINOv2 backbone "
            f"(model types {sorted(_BACKBONE_CLASSES)})"
        )
    return getattr(transformers, _BACKBONE_CLASSES[model_type])


def build_hf_vit_segmenter(
    num_classes: int,
    image_size: int,
    pretrained: str | None = None,
    hf: str = HF_VIT_BASE,
    config: dict[str, Any] | None = None,
    crop_remainder: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> HFViTSegmenter:
    """The reference's segmenter on a transformers ViT / DINOv2 backbone.

    Args:
        pretrained: the weights (and config): a hub name such as ``google/vit-base-patch16-224``
            or a local model folder, read from the Hugging Face cache first; None: random weights
            with the architecture of ``hf``.
        hf: the checkpoint (or model type ``vit`` / ``dinov2``) whose architecture is built when
            ``pretrained`` is None (ignored otherwise); the reference's checkpoints build offline
            (:data:`~softeq.models.hf_classifier.KNOWN_ARCHITECTURES`).
        config: config fields to override (a tiny test model; ``drop_path_rate``).
        image_size: the square input size; a multiple of the patch size unless ``crop_remainder``
            (the stored positional grid is the config's, interpolated to the input's grid).
        mean, std: input normalisation (default ImageNet's, the reference's VOC loader).
    """
    source = pretrained or None
    spec = HFBackboneSpec(source or hf, image_size, dict(config or {}), source)
    settings = hf_config(spec, spec.hf, None, offline_ok=source is None)
    backbone_class = _backbone_class(settings.model_type)
    patch = settings.patch_size
    patch = patch if isinstance(patch, int) else patch[0]
    check_patch_multiple(source or hf, image_size, patch, crop_remainder)
    extra = {"add_pooling_layer": False} if settings.model_type == "vit" else {}
    if source is None:
        backbone = backbone_class(settings, **extra)
    else:
        name = backbone_class.__name__
        backbone = from_hub(
            backbone_class.from_pretrained, "pretrained weights", name, source,
            config=settings, **extra,
        )  # fmt: skip
    return HFViTSegmenter(
        backbone,
        num_classes,
        IMAGENET_MEAN if mean is None else mean,
        IMAGENET_STD if std is None else std,
        crop_remainder,
    )


@register_model("vit_hf", task="segmentation")
def _vit_hf(
    num_classes: int, image_size: int, pretrained: str | None = None, hf: str = HF_VIT_BASE,
    **kwargs: Any,
) -> HFViTSegmenter:  # fmt: skip
    return build_hf_vit_segmenter(num_classes, image_size, pretrained, hf, **kwargs)


@register_model("dinov2_hf", task="segmentation")
def _dinov2_hf(
    num_classes: int, image_size: int, pretrained: str | None = None, hf: str = HF_DINOV2_BASE,
    **kwargs: Any,
) -> HFViTSegmenter:  # fmt: skip
    return build_hf_vit_segmenter(num_classes, image_size, pretrained, hf, **kwargs)
