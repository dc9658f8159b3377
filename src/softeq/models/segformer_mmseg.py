"""mmsegmentation 1.2.2's SegFormer (MiT-b0 from its config registry) as a plain logits model.

Registered as ``segformer_mmseg``.  Works without compiled mmcv: :func:`import_mmseg` registers a
stand-in ``mmcv._ext`` whose ops raise ``NotImplementedError`` (SegFormer calls none of them).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import logging
import pickle
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from softeq.models.backbones import PretrainedUnavailable, host_reachable
from softeq.models.registry import register_model
from softeq.models.segmentation import Segmenter

__all__ = ["MMSegSegformer", "build_mmseg_segformer", "import_mmseg"]


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
    if is_url and not host_reachable(pretrained.split("://", 1)[1].split("/", 1)[0]):
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


@register_model("segformer_mmseg", task="segmentation")
def build_mmseg_segformer(
    num_classes: int,
    image_size: int | None = None,
    pretrained: str | None = None,
    variant: str = "mit-b0",
    config: str | Path | None = None,
    sync_bn: bool = False,
) -> MMSegSegformer:
    """mmseg's SegFormer ``variant`` (or the model of an mmseg ``config`` file) with a
    ``num_classes`` head; ``pretrained``: an mmseg checkpoint file or URL; ``sync_bn`` keeps
    SyncBN (default: BN).  ``image_size`` is accepted for the common interface."""
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
