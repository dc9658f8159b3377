"""Segmentation models behind one interface: ``forward(images) -> logits (N, K, H, W)``.

Three backends (DESIGN.md 3.5, PAPER.md "PASCAL VOC"):

* :class:`ViTSegmenter` — a timm ViT / DeiT / DINOv2 backbone, its patch tokens (prefix tokens
  dropped) as a feature grid, a linear (1 x 1 conv) head and bilinear upsampling to the input
  size. ``softeq.soften`` finds the patch-embedding conv and the ``pos_embed`` grid inside it.
* :class:`HFSegformer` — Hugging Face ``SegformerForSemanticSegmentation`` (the paper's model,
  started from ``nvidia/segformer-b0-finetuned-ade-512-512``), or the same MiT-b0 architecture
  from a ``SegformerConfig`` with random weights offline.
* :class:`MMSegSegformer` — mmsegmentation 1.2.2's SegFormer (MiT-b0 from its config registry)
  without compiled mmcv: :func:`import_mmseg` registers a stand-in ``mmcv._ext`` whose ops raise
  ``NotImplementedError`` (SegFormer calls none of them).

Inputs are RGB in [0, 1]: every model normalises with its own mean / std first, so the black
padding and rotation fill of the data pipeline mean the same thing for every backend. Logits are
returned at the input resolution (bilinear, ``align_corners=False``, which commutes with
90-degree rotations of square inputs). ``head_prefixes`` names the parameters of the
task head, for the optimizer's head / backbone learning rates.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import logging
import pickle
import socket
import sys
import types
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from softeq.models.backbones import (
    _HUB_HOST,
    BackboneSpec,
    PretrainedUnavailable,
    _hub_reachable,
    build_backbone,
)

__all__ = [
    "HF_SEGFORMER_B0_ADE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SEGMENTER_KINDS",
    "HFSegformer",
    "MMSegSegformer",
    "PretrainedUnavailable",
    "Segmenter",
    "ViTSegmenter",
    "build_segmenter",
    "import_mmseg",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HF_SEGFORMER_B0_ADE = "nvidia/segformer-b0-finetuned-ade-512-512"
SEGMENTER_KINDS = ("vit", "dinov2", "segformer", "segformer_hf", "segformer_mmseg")


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


# ------------------------------------------------------------------------------------ ViT


class ViTSegmenter(Segmenter):
    """A timm ViT backbone + a linear head on its patch-token grid + bilinear upsampling.

    ``backbone`` is a timm ``VisionTransformer`` (any number of class / register tokens: the
    ``num_prefix_tokens`` first tokens are dropped). Input sides must be multiples of the patch
    size: timm would otherwise crop the last rows and columns, which breaks the rotation symmetry.
    """

    head_prefixes = ("head",)

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
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
        self.num_prefix_tokens = int(getattr(backbone, "num_prefix_tokens", 1))
        width = int(getattr(backbone, "embed_dim", getattr(backbone, "num_features", 0)))
        self.head = nn.Conv2d(width, self.num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        p_h, p_w = self.patch_size
        if height % p_h or width % p_w:
            raise ValueError(
                f"input {height}x{width} is not a multiple of the patch size {p_h}x{p_w}"
            )
        tokens = self.backbone.forward_features(self.normalize(images))
        tokens = tokens[:, self.num_prefix_tokens :]
        grid_h, grid_w = height // p_h, width // p_w
        if tokens.shape[1] != grid_h * grid_w:
            raise ValueError(f"{tokens.shape[1]} patch tokens for a {grid_h}x{grid_w} grid")
        features = tokens.transpose(1, 2).reshape(len(tokens), -1, grid_h, grid_w)
        return self.upsample(self.head(features), (height, width))


def _build_vit(
    num_classes: int,
    image_size: int,
    pretrained: str | None,
    backbone: str,
    backbone_kwargs: dict[str, Any] | None,
) -> ViTSegmenter:
    kwargs = {"img_size": image_size, **(backbone_kwargs or {})}
    spec = BackboneSpec(timm=backbone, input_size=image_size, kwargs=kwargs, pretrained=pretrained)
    model = build_backbone(spec, num_classes=0)
    patch = model.patch_embed.patch_size
    patch = patch[0] if isinstance(patch, Sequence) else patch
    if image_size % patch:
        below, above = image_size // patch * patch, -(-image_size // patch) * patch
        raise ValueError(
            f"{backbone}: image_size {image_size} is not a multiple of the patch size {patch} "
            f"(use {below} or {above})"
        )
    return ViTSegmenter(model, num_classes)


# ------------------------------------------------------------------------ SegFormer (HF)


class HFSegformer(Segmenter):
    """Hugging Face ``SegformerForSemanticSegmentation`` with logits at the input resolution."""

    head_prefixes = ("model.decode_head",)

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__(num_classes)
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=self.normalize(images)).logits
        return self.upsample(logits, images.shape[-2:])


def _build_hf_segformer(
    num_classes: int, pretrained: str | None, config: dict[str, Any] | None
) -> HFSegformer:
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
        if Path(pretrained).exists() or not _hub_reachable():
            raise PretrainedUnavailable(
                f"SegFormer weights {pretrained!r} are not in the local Hugging Face cache and "
                f"{_HUB_HOST} cannot be reached. On a machine with internet run `python -c "
                '"from transformers import SegformerForSemanticSegmentation as S; '
                f"S.from_pretrained('{pretrained}')\"` to fill the cache (HF_HOME), or pass a "
                f"local folder. ({offline_error})"
            ) from offline_error
        model = SegformerForSemanticSegmentation.from_pretrained(pretrained, **kwargs)
    return HFSegformer(model, num_classes)


# --------------------------------------------------------------------- SegFormer (mmseg)


def _stand_in_ext() -> types.ModuleType:
    """A module standing in for mmcv's compiled ops: every op raises NotImplementedError."""
    module = types.ModuleType("mmcv._ext")
    module.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", loader=None)
    module.__doc__ = "softeq stand-in for mmcv's compiled ops (mmcv-lite has none)."
    module.__softeq_stand_in__ = True

    def __getattr__(name: str):  # PEP 562: any op mmseg asks for exists but cannot run
        if name.startswith("_"):
            raise AttributeError(name)

        def op(*args, **kwargs):
            raise NotImplementedError(
                f"mmcv._ext.{name}: this mmcv has no compiled ops (mmcv-lite with softeq's "
                "stand-in); the model used needs them: install a compiled mmcv"
            )

        op.__name__ = name
        return op

    module.__getattr__ = __getattr__
    return module


def import_mmseg() -> types.ModuleType:
    """Import mmseg (and register its modules), with a stand-in ``mmcv._ext`` if needed.

    mmseg 1.2.2 imports mmcv's compiled ops at module level; PyPI has no compiled mmcv for
    recent torch, and mmcv-lite has none. When ``mmcv._ext`` cannot be found, a stand-in is put
    in ``sys.modules`` first (with a real ``__spec__``, so ``importlib`` and ``inspect`` accept
    it). Pure-PyTorch models such as SegFormer then build, train and predict.
    """
    if "mmcv._ext" not in sys.modules:
        try:
            found = importlib.util.find_spec("mmcv._ext") is not None
        except ModuleNotFoundError as error:
            raise ImportError(
                "the mmseg backend needs `pip install mmcv-lite==2.1.0 mmengine==0.10.7 "
                f"mmsegmentation==1.2.2 ftfy regex` ({error})"
            ) from error
        if not found:
            sys.modules["mmcv._ext"] = _stand_in_ext()
    mmseg = importlib.import_module("mmseg")
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    return mmseg


def _mmseg_config(variant: str, config: str | Path | None) -> Any:
    """The mmseg model config: a config file, or the registry's segformer_mit-b0 base config."""
    from mmengine.config import Config, ConfigDict

    if config is not None:
        return Config.fromfile(str(config)).model
    if variant != "mit-b0":
        raise ValueError(f"variant {variant!r}: only 'mit-b0' is built in; pass config=<file>")
    mmseg = import_mmseg()
    base = Path(mmseg.__file__).parent / ".mim" / "configs" / "_base_" / "models"
    path = base / "segformer_mit-b0.py"
    if path.is_file():
        return Config.fromfile(str(path)).model
    return ConfigDict(  # the same as mmseg 1.2.2's configs/_base_/models/segformer_mit-b0.py
        type="EncoderDecoder",
        pretrained=None,
        backbone=dict(
            type="MixVisionTransformer",
            in_channels=3,
            embed_dims=32,
            num_stages=4,
            num_layers=[2, 2, 2, 2],
            num_heads=[1, 2, 5, 8],
            patch_sizes=[7, 3, 3, 3],
            sr_ratios=[8, 4, 2, 1],
            out_indices=(0, 1, 2, 3),
            mlp_ratio=4,
            qkv_bias=True,
            drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.1,
        ),
        decode_head=dict(
            type="SegformerHead",
            in_channels=[32, 64, 160, 256],
            in_index=[0, 1, 2, 3],
            channels=256,
            dropout_ratio=0.1,
            num_classes=19,
            norm_cfg=dict(type="SyncBN", requires_grad=True),
            align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )


def _sync_bn_to_bn(cfg: Any) -> None:
    """Replace every SyncBN norm config by BN, in place (SyncBN needs a process group)."""
    if isinstance(cfg, dict):
        if cfg.get("type") == "SyncBN":
            cfg["type"] = "BN"
        for value in cfg.values():
            _sync_bn_to_bn(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _sync_bn_to_bn(value)


class MMSegSegformer(Segmenter):
    """mmseg's ``EncoderDecoder`` (MiT backbone + SegformerHead) as a plain logits model.

    The mmseg data preprocessor is bypassed (inputs are RGB in [0, 1], normalised here with
    mmseg's ImageNet mean / std); logits come from ``decode_head.forward(extract_feat(x))`` and
    are upsampled to the input size.
    """

    head_prefixes = ("model.decode_head", "model.auxiliary_head")

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__(num_classes)
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model.extract_feat(self.normalize(images))
        logits = self.model.decode_head.forward(features)
        return self.upsample(logits, images.shape[-2:])


def _load_mmseg_weights(model: nn.Module, pretrained: str) -> None:
    """Load an mmseg checkpoint (full model, or backbone only) from a file or URL.

    Weights whose shapes differ (the classifier of another dataset) are skipped; any other missing
    backbone weight is an error.
    """
    is_url = pretrained.startswith(("http://", "https://"))
    if not is_url and not Path(pretrained).is_file():
        raise PretrainedUnavailable(f"mmseg checkpoint {pretrained} does not exist")
    if is_url and not _host_reachable(pretrained):
        raise PretrainedUnavailable(
            f"{pretrained} cannot be reached from here; download it on a machine with internet "
            "and pass the local file"
        )
    try:
        if is_url:
            state = torch.hub.load_state_dict_from_url(
                pretrained, map_location="cpu", weights_only=True
            )
        else:
            state = torch.load(pretrained, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # an mmengine file that pickles its 'meta'
        raise ValueError(
            f"{pretrained}: the checkpoint holds pickled objects besides its tensors, and softeq "
            "never unpickles arbitrary objects. If you trust the file, keep its weights only: "
            "torch.save(torch.load(PATH, weights_only=False)['state_dict'], 'weights.pth')"
        ) from error
    state = state.get("state_dict", state)
    if not any(k.startswith(("backbone.", "decode_head.")) for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}  # a backbone-only checkpoint
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in fitting and k.startswith("backbone.")]
    if missing:
        raise ValueError(f"{pretrained}: backbone weights missing or mis-shaped: {missing[:5]}")
    model.load_state_dict(fitting, strict=False)


def _host_reachable(url: str, timeout: float = 3.0) -> bool:
    host = url.split("://", 1)[1].split("/", 1)[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _quiet_mmengine() -> Iterator[None]:
    """Silence mmengine's per-parameter init log and mmseg's construction warnings."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*build_loss.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*avg_non_ignore.*", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _build_mmseg_segformer(
    num_classes: int,
    pretrained: str | None,
    variant: str,
    config: str | Path | None,
    sync_bn: bool,
) -> MMSegSegformer:
    import_mmseg()
    from mmseg.registry import MODELS

    cfg = _mmseg_config(variant, config)
    cfg.pop("data_preprocessor", None)  # inputs are normalised by the wrapper
    cfg.decode_head.num_classes = num_classes
    if not sync_bn:
        _sync_bn_to_bn(cfg)
    if pretrained is not None:  # load below, not through init_cfg (no silent download)
        cfg.backbone.pop("init_cfg", None)
    with _quiet_mmengine():
        model = MODELS.build(cfg)
        model.init_weights()
    if pretrained is not None:
        _load_mmseg_weights(model, pretrained)
    return MMSegSegformer(model, num_classes)


# ------------------------------------------------------------------------------- factory


def build_segmenter(
    kind: str,
    num_classes: int,
    image_size: int,
    pretrained: str | None = None,
    **kwargs: Any,
) -> Segmenter:
    """Build a segmentation model (logits at the input resolution).

    Args:
        kind: ``vit`` / ``dinov2`` (timm backbone + linear head), ``segformer`` or
            ``segformer_hf`` (Hugging Face), ``segformer_mmseg`` (mmsegmentation 1.2.2).
        num_classes: output classes (VOC: 21).
        image_size: the square training / evaluation size (ViTs size their token grid by it).
        pretrained: None (random weights) or, per backend: a timm tag or weights file (ViT), a
            hub name such as :data:`HF_SEGFORMER_B0_ADE` or a local folder (HF), a checkpoint
            file or URL (mmseg). Raises :class:`PretrainedUnavailable` when it cannot be had.
        kwargs: ``backbone`` (timm name; default ``vit_base_patch16_224`` /
            ``vit_base_patch14_dinov2``) and ``backbone_kwargs`` for ViTs; ``config`` (dict of
            ``SegformerConfig`` fields) for HF; ``variant`` (``mit-b0``), ``config`` (an mmseg
            config file) and ``sync_bn`` (keep SyncBN; default False: BN) for mmseg.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")

    def take(allowed: dict[str, Any]) -> dict[str, Any]:
        unknown = set(kwargs) - set(allowed)
        if unknown:
            raise TypeError(f"build_segmenter({kind!r}): unknown arguments {sorted(unknown)}")
        return {**allowed, **kwargs}

    if kind in ("vit", "dinov2"):
        default = "vit_base_patch16_224" if kind == "vit" else "vit_base_patch14_dinov2"
        args = take({"backbone": default, "backbone_kwargs": None})
        return _build_vit(num_classes, image_size, pretrained, **args)
    if kind in ("segformer", "segformer_hf"):
        args = take({"config": None})
        return _build_hf_segformer(num_classes, pretrained, **args)
    if kind == "segformer_mmseg":
        args = take({"variant": "mit-b0", "config": None, "sync_bn": False})
        return _build_mmseg_segformer(num_classes, pretrained, **args)
    raise ValueError(f"kind must be one of {SEGMENTER_KINDS}, got {kind!r}")
