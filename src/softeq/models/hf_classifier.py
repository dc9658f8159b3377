"""Classification backbones from Hugging Face transformers: the checkpoints the reference code
fine-tuned (ViT ``google/vit-base-patch16-224``, DINOv2 ``facebook/dinov2-base-imagenet1k-1-layer``,
ResNet ``microsoft/resnet-50``; docs/fidelity.md), described by a spec with an ``hf`` key.

``AutoModelForImageClassification`` builds the model, so each checkpoint keeps its own head:
DINOv2's trained linear layer on [CLS, mean of the patch tokens], ViT's on CLS, ResNet's on the
pooled features.  :class:`HFClassifier` wraps it so that ``forward(images)`` returns the logits.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from softeq.models.backbones import (
    HUB_HOST,
    ImageInput,
    PretrainedUnavailable,
    hub_cache_dir,
    hub_reachable,
)

__all__ = [
    "KNOWN_ARCHITECTURES",
    "HFBackboneSpec",
    "HFClassifier",
    "build_hf_classifier",
    "from_hub",
    "hf_config",
    "interpolation_kwargs",
]

_KEYS = ("hf", "input_size", "kwargs", "pretrained")


@dataclass(frozen=True)
class HFBackboneSpec(ImageInput):
    """What to build: ``hf`` (a hub name such as ``facebook/dinov2-base-imagenet1k-1-layer``, a
    local model folder, or a transformers model type such as ``dinov2`` for a config from
    ``kwargs`` alone), the ``input_size``, ``kwargs`` (config fields) and ``pretrained``.

    ``pretrained``: false / None (random weights from the config of ``hf``), true (the weights
    of ``hf``), or a local folder / hub name to take the weights (and config) from.  Images are
    normalised with ImageNet's mean / std unless the spec says (what timm resolves for a model
    without a pretrained config, as the reference's loader does).
    """

    hf: str
    input_size: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool | str | None = None

    @classmethod
    def from_dict(cls, spec: dict[str, Any], where: str = "backbone") -> HFBackboneSpec:
        """Parse a config's backbone mapping; unknown or missing keys raise, naming them."""
        unknown = set(spec) - {*_KEYS, *ImageInput.KEYS, *ImageInput.MODEL_KEYS}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("hf", "input_size"):
            if key not in spec:
                raise ValueError(f"{where}: missing key {key!r}")
        pretrained = spec.get("pretrained")
        if pretrained is not None and not isinstance(pretrained, bool | str):
            raise ValueError(
                f"{where}.pretrained: expected true, false or a path, got {pretrained!r}"
            )
        return cls(
            str(spec["hf"]),
            int(spec["input_size"]),
            dict(spec.get("kwargs") or {}),
            pretrained,
            **ImageInput.parse(spec, where),
        )

    @property
    def weights(self) -> str | None:
        """Where the pre-trained weights come from (None: random initialisation)."""
        if self.pretrained is None or self.pretrained is False:
            return None
        return self.hf if self.pretrained is True else str(self.pretrained)

    @property
    def is_model_type(self) -> bool:
        """Whether ``hf`` names a transformers model type (``vit``, ``dinov2``, ``resnet``)."""
        from transformers import CONFIG_MAPPING

        return "/" not in self.hf and not Path(self.hf).exists() and self.hf in CONFIG_MAPPING


def interpolation_kwargs(model: nn.Module) -> dict[str, bool]:
    """``{"interpolate_pos_encoding": True}`` for models whose forward takes it (ViT), so that
    any multiple of the patch size is a valid input; nothing for the others (DINOv2 always
    interpolates, ResNet has no grid)."""
    takes = inspect.signature(model.forward).parameters
    return {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in takes else {}


class HFClassifier(nn.Module):
    """A transformers image classifier whose ``forward(images)`` returns the logits (B, classes).

    Models that take ``interpolate_pos_encoding`` (ViT) get it, so any input size that is a
    multiple of the patch size works: the stored positional grid (the config's image_size over
    the patch size) is resampled to the input's grid, after softeq's filter on the stored grid.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._position_kwargs = interpolation_kwargs(model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=images, **self._position_kwargs).logits

    def get_classifier(self) -> nn.Module:
        """The classification head (timm's name for it: the recipe's ``head_epochs`` trains it
        alone first)."""
        return self.model.classifier

    @property
    def reference_in_place(self) -> tuple[str, ...]:
        """The tensors the reference code filters in place at every forward: the positional
        embedding of ViT / DINOv2 (its patch part; none for ResNet; docs/fidelity.md)."""
        return tuple(
            f"{name}.position_embeddings"
            for name, module in self.named_modules()
            if _has_position_grid(module)
        )


def _has_position_grid(module: nn.Module) -> bool:
    own = dict(module.named_parameters(recurse=False))
    held = "position_embeddings" in own or parametrize.is_parametrized(
        module, "position_embeddings"
    )
    return held and hasattr(getattr(module, "patch_embeddings", None), "num_patches")


def _unavailable(what: str, source: str, how: str, error: Exception) -> PretrainedUnavailable:
    return PretrainedUnavailable(
        f"{what} {source!r} are not in the local Hugging Face cache ({hub_cache_dir()}) and "
        f'{HUB_HOST} cannot be reached. On a machine with internet, run `python -c "from '
        f"transformers import {how}; {how}.from_pretrained('{source}')\"` with the same HF_HOME "
        f"to fill the cache, then copy it here; or pass a local model folder. ({error})"
    )


def from_hub(loader, what: str, how: str, source: str, **kwargs: Any) -> Any:
    """``loader(source)`` from a local folder or the cache first (no network), else the hub."""
    kwargs = {"cache_dir": hub_cache_dir(), **kwargs}
    try:
        return loader(source, local_files_only=True, **kwargs)
    except OSError as offline_error:
        if Path(source).exists() or not hub_reachable():
            raise _unavailable(what, source, how, offline_error) from offline_error
    return loader(source, **kwargs)


def build_hf_classifier(spec: HFBackboneSpec, num_classes: int) -> HFClassifier:
    """The transformers classifier of ``spec`` with ``num_classes`` outputs: pre-trained weights
    when asked (a head of another size is replaced by a new one), random weights otherwise."""
    from transformers import AutoModelForImageClassification

    source = spec.weights
    if source is not None and spec.is_model_type:
        raise ValueError(
            f"hf: {spec.hf!r} is a model type, not a checkpoint; set pretrained to false "
            "or name a hub checkpoint / local folder"
        )
    config = hf_config(spec, source or spec.hf, num_classes, offline_ok=source is None)
    if source is None:
        return HFClassifier(AutoModelForImageClassification.from_config(config))
    model = from_hub(
        AutoModelForImageClassification.from_pretrained,
        "pretrained weights",
        "AutoModelForImageClassification",
        source,
        config=config,
        ignore_mismatched_sizes=True,
    )
    return HFClassifier(model)


KNOWN_ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "google/vit-base-patch16-224": ("vit", {}),
    "facebook/dinov2-base-imagenet1k-1-layer": ("dinov2", {"image_size": 518}),
    "facebook/dinov2-base": ("dinov2", {"image_size": 518}),  # the segmentation backbone
    "microsoft/resnet-50": ("resnet", {}),
    # DeiT-S (CIFAR): a ViT config with the small model's widths
    "facebook/deit-small-patch16-224": (
        "vit",
        {"hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536},
    ),
}
"""The reference's checkpoints as (model type, config fields beyond the type's defaults): their
published configs' architecture, so that random-weight builds (projectors, a model whose weights
come from a softeq checkpoint) need no download.  The classification head is set per run (the
segmenters of :mod:`softeq.models.seg_hf_vit` use the backbones alone)."""


def hf_config(
    spec: HFBackboneSpec, source: str, num_classes: int | None, offline_ok: bool = False
) -> Any:
    """The config of ``source`` (or of model type ``spec.hf``) with ``spec.kwargs`` and
    ``num_classes`` (None: left as is) set; a key the config class does not define raises (it
    would be ignored).  ``offline_ok``: a :data:`KNOWN_ARCHITECTURES` checkpoint that cannot be
    fetched is built from its known architecture (random weights only)."""
    from transformers import CONFIG_MAPPING, AutoConfig

    config = None
    if spec.is_model_type:
        config_class = CONFIG_MAPPING[spec.hf]
    else:
        try:
            config = from_hub(AutoConfig.from_pretrained, "the config of", "AutoConfig", source)
        except PretrainedUnavailable:
            if not (offline_ok and source in KNOWN_ARCHITECTURES):
                raise
            model_type, fields = KNOWN_ARCHITECTURES[source]
            config = CONFIG_MAPPING[model_type](**fields)
        config_class = type(config)
    defaults = config_class()
    unknown = sorted(key for key in spec.kwargs if not hasattr(defaults, key))
    if unknown:
        hint = " (set the recipe's drop_path to 0 for it)" if "drop_path_rate" in unknown else ""
        raise ValueError(f"hf: {config_class.__name__} has no field {unknown}{hint}")
    labels = {} if num_classes is None else {"num_labels": num_classes}
    settings = {**spec.kwargs, **labels}
    if config is None:
        return config_class(**settings)
    for key, value in settings.items():
        setattr(config, key, value)
    return config
