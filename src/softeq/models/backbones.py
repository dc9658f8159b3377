"""Classification backbones from timm, described by a small spec (config/config.yaml: backbones);
specs with an ``hf`` key are transformers checkpoints (softeq.models.hf_classifier).

A spec names a timm architecture, its keyword arguments, the input size the model expects and,
optionally, pre-trained weights: a timm pretrained tag (downloaded from the Hugging Face hub on a
machine with internet, read from its cache otherwise) or a local checkpoint file.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import timm
import torch
from torch import nn

from softeq.models import simple_cnn as _simple_cnn  # noqa: F401  (registers timm's simple_cnn)
from softeq.models.canonicalize import SPEC_KEY as CANONICALIZE_KEY
from softeq.models.canonicalize import Canonicalize
from softeq.models.registry import register_model
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "HUB_HOST",
    "INTERPOLATIONS",
    "BackboneSpec",
    "ImageInput",
    "PretrainedUnavailable",
    "build_backbone",
    "build_classifier",
    "cached_weights",
    "host_reachable",
    "hub_cache_dir",
    "hub_reachable",
    "parse_channels",
]

HUB_HOST = "huggingface.co"


class PretrainedUnavailable(RuntimeError):
    """Pre-trained weights were asked for and cannot be had here."""


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True, kw_only=True)
class ImageInput:
    """How image files reach a classifier: the normalisation (``mean`` / ``std``; None: the
    checkpoint's own) and the resize interpolation of evaluation (``interpolation``) and of the
    training crops (``train_interpolation``, also ``random`` as timm), docs/conventions.md §1;
    and ``canonicalize``, a learned canonicalizer in front of the model (None: none;
    :mod:`softeq.models.canonicalize`)."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"
    train_interpolation: str = "bilinear"
    canonicalize: Canonicalize | None = None

    KEYS: ClassVar[tuple[str, ...]] = ("mean", "std", "interpolation", "train_interpolation")
    MODEL_KEYS: ClassVar[tuple[str, ...]] = (CANONICALIZE_KEY,)

    @staticmethod
    def parse(spec: dict[str, Any], where: str) -> dict[str, Any]:
        """The keyword arguments of these fields in a backbone spec, checked."""
        values = {key: parse_channels(spec, key, where) for key in ("mean", "std")}
        for key, allowed in (
            ("interpolation", INTERPOLATIONS),
            ("train_interpolation", (*INTERPOLATIONS, "random")),
        ):
            if key in spec:
                if spec[key] not in allowed:
                    raise ValueError(f"{where}: {key} must be one of {allowed}, got {spec[key]!r}")
                values[key] = spec[key]
        if spec.get(CANONICALIZE_KEY) is not None:
            values[CANONICALIZE_KEY] = Canonicalize.from_dict(
                spec[CANONICALIZE_KEY], f"{where}.{CANONICALIZE_KEY}"
            )
        return values

    def checkpoint_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The checkpoint's own (mean, std), where the spec knows it."""
        return None

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) the images are normalised with: the spec's, else the checkpoint's, else
        ImageNet's."""
        own = self.checkpoint_normalization() or (IMAGENET_MEAN, IMAGENET_STD)
        return tuple(self.mean or own[0]), tuple(self.std or own[1])

    def image_transform(self, train: bool) -> dict[str, Any]:
        """``mean``, ``std`` and ``interpolation`` of the train or evaluation transform."""
        mean, std = self.normalization()
        interpolation = self.train_interpolation if train else self.interpolation
        return {"mean": mean, "std": std, "interpolation": interpolation}

    def custom_input(self) -> list[str]:
        """The image-file settings the spec sets (they do not apply to embedded tensors)."""
        default = ImageInput()
        return [key for key in self.KEYS if getattr(self, key) != getattr(default, key)]


@dataclass(frozen=True)
class BackboneSpec(ImageInput):
    """What to build: ``timm`` architecture name, ``kwargs``, ``input_size`` and ``pretrained``.

    ``pretrained`` is None (random initialisation), a timm tag such as
    ``vit_base_patch16_224.augreg2_in21k_ft_in1k``, or a path to a local weights file
    (``.safetensors``, or a torch state dict read with ``weights_only=True``).
    """

    timm: str
    input_size: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None

    @classmethod
    def from_dict(cls, spec: dict[str, Any], where: str = "backbone") -> BackboneSpec:
        known = {"timm", "input_size", "kwargs", "pretrained", *ImageInput.KEYS}
        unknown = set(spec) - known - set(ImageInput.MODEL_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("timm", "input_size"):
            if key not in spec:
                raise ValueError(f"{where}: missing key {key!r}")
        return cls(
            spec["timm"],
            int(spec["input_size"]),
            dict(spec.get("kwargs") or {}),
            spec.get("pretrained"),
            **ImageInput.parse(spec, where),
        )

    def checkpoint_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The timm checkpoint's pretrained config (0.5 / 0.5 for the original ViT weights)."""
        if not self.pretrained or Path(self.pretrained).suffix in _WEIGHT_FILES:
            return None
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(self.pretrained)
        return (tuple(cfg.mean), tuple(cfg.std)) if cfg else None


_WEIGHT_FILES = (".safetensors", ".pt", ".pth", ".bin")


def parse_channels(spec: dict[str, Any], key: str, where: str) -> tuple[float, ...] | None:
    """A per-channel (mean or std) triple of the spec, checked."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"{where}: {key} must be three per-channel numbers, got {value!r}")
    values = tuple(float(v) for v in value)
    if key == "std" and min(values) <= 0:
        raise ValueError(f"{where}: std must be positive, got {value!r}")
    return values


def host_reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be reached (never when ``HF_HUB_OFFLINE=1``)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    return host_reachable(HUB_HOST, timeout)


_CLASSIFIERS = ("head", "fc", "classifier")


def _fit_state(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Adapt a checkpoint to ``model``: drop a classifier of another size (a new head is
    trained) and resample a ViT positional grid to the model's grid (another image size)."""
    own = model.state_dict()
    fitted = {}
    for name, tensor in state.items():
        if name.startswith(_CLASSIFIERS) and (name not in own or own[name].shape != tensor.shape):
            continue
        if name == "pos_embed" and name in own and own[name].shape != tensor.shape:
            from timm.layers import resample_abs_pos_embed

            prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
            tensor = resample_abs_pos_embed(
                tensor, list(model.patch_embed.grid_size), num_prefix_tokens=prefix
            )
        fitted[name] = tensor
    return fitted


def _load_local(model: nn.Module, path: Path) -> None:
    """Load a local weights file (safetensors, or a torch state dict read weights-only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
    try:
        missing, unexpected = model.load_state_dict(_fit_state(model, state), strict=False)
    except RuntimeError as error:  # shapes that do not fit
        raise ValueError(f"{path}: weights do not fit the model ({error})") from error
    if unexpected or [k for k in missing if not k.startswith(_CLASSIFIERS)]:
        raise ValueError(
            f"{path}: weights do not fit the model (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )


@register_model("timm", task="classification")
def build_backbone(spec: BackboneSpec, num_classes: int) -> nn.Module:
    """The timm model of ``spec`` with a ``num_classes`` head; pre-trained weights if asked."""
    kwargs = {**spec.kwargs, "num_classes": num_classes}
    pretrained = spec.pretrained
    if pretrained is None:
        return timm.create_model(spec.timm, pretrained=False, **kwargs)
    if Path(pretrained).suffix in _WEIGHT_FILES:
        path = Path(pretrained)
        if not path.is_file():
            raise PretrainedUnavailable(f"pretrained weights file {path} does not exist")
        model = timm.create_model(spec.timm, pretrained=False, **kwargs)
        _load_local(model, path)
        return model
    # a timm tag: the local Hugging Face cache first (no network at all), then the hub
    arch = pretrained.split(".", 1)[0]
    if arch != spec.timm:
        raise ValueError(f"pretrained tag {pretrained!r} is not a {spec.timm!r} checkpoint")
    cached = cached_weights(pretrained)
    if cached is not None:
        overlay = {"file": str(cached)}
        return timm.create_model(
            pretrained, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
        )
    if not hub_reachable():
        raise PretrainedUnavailable(
            f"pretrained weights {pretrained!r} are not in the local Hugging Face cache "
            f"({hub_cache_dir()}) and {HUB_HOST} cannot be reached. On a machine with internet, "
            "run "
            f"`python -c \"import timm; timm.create_model('{pretrained}', pretrained=True)\"` "
            "with the same HF_HOME to fill the cache, then copy it here; or set the backbone's "
            "`pretrained` to a local weights file (.safetensors or a torch state dict)."
        )
    return timm.create_model(pretrained, pretrained=True, **kwargs)


def build_classifier(
    spec: dict[str, Any] | BackboneSpec | Any,
    num_classes: int,
    random_init: bool = False,
    drop_path: float = 0.0,
) -> tuple[Any, nn.Module]:
    """The spec (from its config dict) and the classifier it builds.

    ``random_init`` ignores the spec's pretrained weights (the weights come from a checkpoint
    next); ``drop_path`` sets timm's stochastic-depth rate.  A spec with an ``hf`` key is a
    transformers checkpoint (:func:`softeq.models.hf_classifier.hf_classifier`).  A spec with a
    ``canonicalize`` key puts a learned canonicalizer in front of the model
    (:class:`softeq.models.canonicalize.CanonicalizedClassifier`).
    """
    spec_class, build = BackboneSpec, build_backbone
    if (isinstance(spec, dict) and "hf" in spec) or hasattr(spec, "hf"):
        from softeq.models.hf_classifier import HFBackboneSpec, build_hf_classifier

        spec_class, build = HFBackboneSpec, build_hf_classifier
    if not isinstance(spec, spec_class):
        spec = spec_class.from_dict(spec, "--backbone-spec")
    if random_init:
        spec = replace(spec, pretrained=None)
    if drop_path:  # a transformers config without the field raises (hf_config)
        spec = replace(spec, kwargs={**spec.kwargs, "drop_path_rate": drop_path})
    model = build(spec, num_classes)
    if spec.canonicalize is not None:
        from softeq.models.canonicalize import CanonicalizedClassifier

        model = CanonicalizedClassifier(model, spec.canonicalize, spec.input_size)
    return spec, model


def hub_cache_dir() -> str:
    """The Hugging Face hub cache, honouring HF_HUB_CACHE / HF_HOME as set now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def cached_weights(tag: str) -> Path | None:
    """The file of timm pretrained ``tag`` in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tag)
    if cfg is None:
        raise ValueError(f"unknown timm pretrained tag {tag!r}")
    if not cfg.hf_hub_id:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=hub_cache_dir())
        if isinstance(hit, str):
            return Path(hit)
    return None
