"""Segmentation models behind one interface: ``forward(images) -> logits (N, K, H, W)``.

Three backends, one module each, registered by architecture name in
:mod:`softeq.models.registry` (docs/method.md §5; the paper's models: docs/paper.md, PASCAL VOC):

* ``vit`` / ``dinov2`` (:mod:`softeq.models.seg_vit`) — a timm ViT / DeiT / DINOv2 backbone, its
  patch tokens as a feature grid, a linear (1 x 1 conv) head and bilinear upsampling;
* ``vit_hf`` / ``dinov2_hf`` (:mod:`softeq.models.seg_hf_vit`) — the reference code's: the same
  head on a transformers ``ViTModel`` / ``Dinov2Model`` that keeps its stored positional grid;
* ``segformer`` / ``segformer_hf`` (:mod:`softeq.models.segformer_hf`) — Hugging Face
  ``SegformerForSemanticSegmentation`` (the paper's model), or MiT-b0 with random weights offline;
* ``segformer_mmseg`` (:mod:`softeq.models.segformer_mmseg`) — mmsegmentation 1.2.2's SegFormer
  without compiled mmcv.

Inputs are RGB in [0, 1]: every model normalises with its own mean / std first, so the black
padding and rotation fill of the data pipeline mean the same thing for every backend. Logits are
returned at the input resolution (bilinear, ``align_corners=False``, which commutes with
90-degree rotations of square inputs). ``head_prefixes`` names the parameters of the
task head, for the optimizer's head / backbone learning rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from softeq.models.backbones import PretrainedUnavailable
from softeq.models.registry import create_model, list_models
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "PatchGridSegmenter",
    "PretrainedUnavailable",
    "Segmenter",
    "build_segmenter",
    "check_patch_multiple",
    "segmenter_kinds",
]


class Segmenter(nn.Module):
    """Base class: normalisation buffers, upsampling to the input size, head parameter names."""

    head_prefixes: tuple[str, ...] = ("head",)

    def __init__(
        self,
        num_classes: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std per channel, for RGB inputs in [0, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got {tuple(images.shape)}")
        return (images - self.mean) / self.std

    @staticmethod
    def upsample(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Bilinear upsampling of (N, K, h, w) logits to ``size`` (a no-op at that size)."""
        if tuple(logits.shape[-2:]) == tuple(size):
            return logits
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)

    def is_head(self, name: str) -> bool:
        """Whether parameter ``name`` belongs to the task head."""
        return any(name == p or name.startswith(p + ".") for p in self.head_prefixes)


class PatchGridSegmenter(Segmenter):
    """A ViT-style segmenter: the backbone's patch tokens as a feature grid, a 1 x 1 conv head,
    bilinear upsampling.  Subclasses set ``patch_size``, ``num_prefix_tokens`` (class / register
    tokens, dropped), ``crop_remainder`` and ``head``, and say how tokens are computed
    (:meth:`tokens`).  Input sides must be multiples of the patch size unless ``crop_remainder``
    (the reference's DINOv2 at 512 px: the patch conv drops the last rows and columns)."""

    patch_size: tuple[int, int]
    num_prefix_tokens: int
    crop_remainder: bool
    head: nn.Module

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's last tokens (N, prefix + patches, width) for normalised images."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        p_h, p_w = self.patch_size
        if (height % p_h or width % p_w) and not self.crop_remainder:
            raise ValueError(
                f"input {height}x{width} is not a multiple of the patch size {p_h}x{p_w} "
                "(crop_remainder: true for the reference's crop)"
            )
        tokens = self.tokens(self.normalize(images))[:, self.num_prefix_tokens :]
        grid_h, grid_w = height // p_h, width // p_w
        if tokens.shape[1] != grid_h * grid_w:
            raise ValueError(f"{tokens.shape[1]} patch tokens for a {grid_h}x{grid_w} grid")
        features = tokens.transpose(1, 2).reshape(len(tokens), -1, grid_h, grid_w)
        return self.upsample(self.head(features), (height, width))


def check_patch_multiple(name: str, image_size: int, patch: int, crop_remainder: bool) -> None:
    """Refuse an image size that is not a multiple of the patch size, unless cropping."""
    if image_size % patch and not crop_remainder:
        below, above = image_size // patch * patch, -(-image_size // patch) * patch
        raise ValueError(
            f"{name}: image_size {image_size} is not a multiple of the patch size {patch} "
            f"(use {below} or {above}, or crop_remainder: true for the reference's crop)"
        )


def segmenter_kinds() -> list[str]:
    """The registered segmentation architectures (``arch`` values of a backbone spec)."""
    return list_models("segmentation")


def build_segmenter(
    kind: str,
    num_classes: int,
    image_size: int,
    pretrained: str | None = None,
    canonicalize: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Segmenter:
    """Build a segmentation model (logits at the input resolution) through the registry.

    Args:
        kind: a registered architecture (:func:`segmenter_kinds`): ``vit`` / ``dinov2`` (timm
            backbone + linear head), ``vit_hf`` / ``dinov2_hf`` (transformers backbone + linear
            head), ``segformer`` or ``segformer_hf`` (Hugging Face),
            ``segformer_mmseg`` (mmsegmentation 1.2.2).
        num_classes: output classes (VOC: 21).
        image_size: the square training / evaluation size (ViTs size their token grid by it).
        pretrained: None (random weights) or, per backend: a timm tag or weights file (ViT), a
            hub name such as ``nvidia/segformer-b0-finetuned-ade-512-512`` or a local folder
            (HF), a checkpoint file or URL (mmseg). Raises :class:`PretrainedUnavailable` when it
            cannot be had.
        kwargs: ``backbone`` (timm name) and ``backbone_kwargs`` for timm ViTs; ``hf`` (the
            architecture when ``pretrained`` is None) and ``config`` for ``vit_hf`` /
            ``dinov2_hf``; ``config`` (dict of ``SegformerConfig`` fields) for HF SegFormer;
            ``variant`` (``mit-b0``), ``config`` (an mmseg config file) and ``sync_bn`` (keep
            SyncBN; default False: BN) for mmseg.
        canonicalize: a learned canonicalizer in front of the segmenter (the spec's
            ``canonicalize`` mapping, :class:`softeq.models.canonicalize.Canonicalize`): the
            logits of the canonicalized image are rotated back by the predicted angle.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    spec = None
    if canonicalize is not None:
        from softeq.models.canonicalize import Canonicalize, CanonicalizedSegmenter

        spec = Canonicalize.from_dict(canonicalize, "canonicalize")
    model = create_model(
        kind,
        task="segmentation",
        num_classes=num_classes,
        image_size=image_size,
        pretrained=pretrained,
        **kwargs,
    )
    return model if spec is None else CanonicalizedSegmenter(model, spec, image_size)
