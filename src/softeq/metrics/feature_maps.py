"""What softening does to a network's first layer: the numbers behind Figure 1.

For a plain (unsoftened) image model and one photograph, each softness b softens its own copy of
the model (``softeq.soften(copy, group, b, softness_pos=b, filter=...)``), from b = 0 (strictly
equivariant) to b = 1 (the original model), and measures, with R the 90-degree rotation
(``torch.rot90``, counter-clockwise):

1. the softened first-layer kernels (ViT: the patch embedding ``patch_embed.proj``; ResNet:
   ``conv1``);
2. the first layer's feature map of the image, F(x), and of the rotated image rotated back,
   R^-1 F(R x);
3. the per-pixel equivariance error ||F(x) - R^-1 F(R x)|| (norm over channels) and the layer's
   relative error;
4. the whole network's output invariance error KL(softmax f(x) || softmax f(R x)) for this image
   (docs/conventions.md §1), tying the first-layer picture to what the paper's tables measure.

Exactness at b = 0 (C4): the first layer's error map is zero to float precision when the rotated
sampling grid of the layer coincides with the original one, i.e. (S + 2 padding - kernel) is a
multiple of the stride: for a ViT, an image side that is a multiple of the patch size; for a
ResNet an odd side at every stride (33, 225, ...). The default input size is the ViT's native
``patch_embed.img_size``, and 225 for other models (224 would break exactness at ``conv1``).

:func:`figure1_data` returns plain arrays in a :class:`Figure1Data`; ``softeq.figures.figure1``
draws them.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softeq.layers import iter_soft
from softeq.metrics.equivariance import kl_divergence
from softeq.soften import soften
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "DEFAULT_SOFTNESS",
    "Figure1Data",
    "default_image",
    "default_input_size",
    "figure1_data",
    "first_layer",
    "has_token_grid",
    "model_name",
]

DEFAULT_SOFTNESS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class Figure1Data:
    """Every number Figure 1 draws; fields also read as ``data["error_map"]``.

    ``image`` is (3, S, S) in [0, 1]; per softness (lists, one entry each): ``kernels`` (the
    projected layer weight, out x in x k x k), ``feature`` (F(x), C x H x W), ``feature_rot``
    (R^-1 F(R x)), ``error_map`` (H x W, the channel norm of their difference), ``rel_error``
    (||F(x) - R^-1 F(Rx)|| / ||F(x)||, Frobenius) and ``net_kl`` (the network's KL invariance
    error for this image, nats; NaN for a model without (B, classes) logits). ``token_grid``:
    whether the positional token grid was softened too; ``model_name``: for titles.
    """

    softness: list[float]
    layer: str
    input_size: int
    channels: list[int]
    group: str
    filter: str
    image: np.ndarray
    model_name: str = ""
    token_grid: bool = False
    kernels: list[np.ndarray] = field(default_factory=list)
    feature: list[np.ndarray] = field(default_factory=list)
    feature_rot: list[np.ndarray] = field(default_factory=list)
    error_map: list[np.ndarray] = field(default_factory=list)
    rel_error: list[float] = field(default_factory=list)
    net_kl: list[float] = field(default_factory=list)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


# ------------------------------------------------------------------------------------ the inputs


def default_image(size: int = 224) -> Tensor:
    """The paper-style real photograph: scikit-image's ``chelsea`` (a cat), (1, 3, S, S) in [0, 1].

    A real image (not noise) makes the feature maps readable: edges and fur show what the
    first layer responds to, and where rotating the input changes that response.
    """
    from skimage import data

    return _to_square(data.chelsea(), size)


def _to_square(image: Tensor | np.ndarray, size: int) -> Tensor:
    """Centre-crop to a square and resize to ``size`` (bilinear, antialiased): (1, 3, S, S)."""
    if isinstance(image, np.ndarray):
        array = image.astype(np.float32)
        if image.dtype == np.uint8:
            array = array / 255.0
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise ValueError(f"expected an (H, W, 3) image array, got shape {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1)[None]
    else:
        x = image.detach().float().cpu()
        x = x[None] if x.dim() == 3 else x
        if x.dim() != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"expected a (1, 3, H, W) or (3, H, W) tensor, got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.clamp(0.0, 1.0).contiguous()


def _is_vit(model: nn.Module) -> bool:
    patch = getattr(model, "patch_embed", None)
    return isinstance(getattr(patch, "proj", None), nn.Conv2d)


def has_token_grid(model: nn.Module) -> bool:
    """Whether ``soften`` finds a positional token grid (then it takes ``softness_pos``)."""
    for module in model.modules():
        grid = getattr(getattr(module, "patch_embed", None), "grid_size", None)
        if isinstance(getattr(module, "pos_embed", None), nn.Parameter) and grid is not None:
            return True
    return False


def first_layer(model: nn.Module) -> str:
    """The qualified name of the first image layer: ``patch_embed.proj`` (ViT), else ``conv1``,
    else the first ``nn.Conv2d`` with a kernel larger than 1."""
    if _is_vit(model):
        return "patch_embed.proj"
    if isinstance(getattr(model, "conv1", None), nn.Conv2d):
        return "conv1"
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and max(module.kernel_size) > 1:
            return name
    raise ValueError(f"{type(model).__name__} has no Conv2d with a kernel larger than 1")


def default_input_size(model: nn.Module) -> int:
    """The ViT's native ``patch_embed.img_size``; 225 otherwise (odd at every ResNet stride)."""
    if _is_vit(model):
        size = model.patch_embed.img_size
        if size is not None:
            side = size[0] if isinstance(size, tuple | list) else int(size)
            return int(side)
    return 225


def _normalisation(model: nn.Module) -> tuple[Tensor, Tensor]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = torch.tensor(cfg.get("mean", IMAGENET_MEAN), dtype=torch.float32)
    std = torch.tensor(cfg.get("std", IMAGENET_STD), dtype=torch.float32)
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


def _check_exact_grid(conv: nn.Conv2d, name: str, size: int) -> None:
    """Warn when the layer's rotated sampling grid cannot coincide with the original one."""
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding
    pad = p[0] if isinstance(p, tuple) else 0  # "same" / "valid" string paddings: not checked
    if isinstance(p, tuple) and (size + 2 * pad - k) % s:
        warnings.warn(
            f"{name}: input side {size} with kernel {k}, stride {s}, padding {pad} leaves an "
            "asymmetric sampling grid; the b = 0 error map will not be zero",
            stacklevel=3,
        )


def model_name(model: nn.Module) -> str:
    """The timm architecture name, else the class name."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


# ---------------------------------------------------------------------------------- the numbers


def _rot(x: Tensor, k: int = 1) -> Tensor:
    """Rotate the last two (spatial) axes by k * 90 degrees counter-clockwise."""
    return torch.rot90(x, k, dims=(-2, -1))


def _forward(model: nn.Module, layer: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """The layer's output (captured by a hook) and the network's logits, in one pass."""
    store: dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        store["out"] = output

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    out = store.get("out")
    if not isinstance(out, Tensor) or out.dim() != 4:
        raise ValueError("the chosen layer must return a (B, C, H, W) feature map")
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        logits = None  # not a classifier: no network-level readout
    return out, logits


def _kl(logits_x: Tensor, logits_rx: Tensor) -> float:
    """KL(softmax f(x) || softmax f(Rx)) in nats (the paper's invariance error), float64."""
    return float(kl_divergence(logits_x.double(), logits_rx.double(), dim=-1).mean())


def _pick_channels(weight: Tensor, channels: int | Sequence[int]) -> list[int]:
    """Explicit indices, or the ``channels`` output channels of largest plain-kernel norm."""
    if isinstance(channels, int):
        norms = weight.detach().flatten(1).norm(dim=1)
        n = max(1, min(channels, norms.numel()))
        return sorted(int(i) for i in torch.topk(norms, n).indices)
    picked = [int(c) for c in channels]
    if not picked or not all(0 <= c < weight.shape[0] for c in picked):
        raise ValueError(f"channels {picked} must index the {weight.shape[0]} output channels")
    return picked


def _prepare_input(
    model: nn.Module, image: Tensor | np.ndarray | None, size: int, normalize: bool
) -> tuple[Tensor, Tensor]:
    """The image as (1, 3, S, S) pixels in [0, 1] and as the model's (normalised) input."""
    pixels = _to_square(default_image(size) if image is None else image, size)
    x = pixels
    if normalize:
        mean, std = _normalisation(model)
        x = (pixels - mean) / std
    param = next(model.parameters())
    return pixels, x.to(device=param.device, dtype=param.dtype)


def _measure(soft: nn.Module, name: str, x: Tensor, data: Figure1Data) -> None:
    """Append one softness's kernels, feature maps, error map and errors to ``data``."""
    soft_layer = soft.get_submodule(name)
    feat, logits = _forward(soft, soft_layer, x)
    feat_r, logits_r = _forward(soft, soft_layer, _rot(x))
    back = _rot(feat_r, -1)
    diff = (feat - back)[0].double()
    data.kernels.append(soft_layer.weight.detach().cpu().double().numpy())
    data.feature.append(feat[0].detach().cpu().double().numpy())
    data.feature_rot.append(back[0].detach().cpu().double().numpy())
    data.error_map.append(diff.norm(dim=0).cpu().numpy())
    denom = float(feat.double().norm())
    data.rel_error.append(float(diff.norm()) / denom if denom > 0 else math.nan)
    both = logits is not None and logits_r is not None
    data.net_kl.append(_kl(logits, logits_r) if both else math.nan)


@torch.no_grad()
def figure1_data(
    model: nn.Module,
    image: Tensor | np.ndarray | None = None,
    group: str = "C4",
    softness: Sequence[float] = DEFAULT_SOFTNESS,
    filter: str = "shrink",
    layer: str | None = None,
    input_size: int | None = None,
    channels: int | Sequence[int] = 4,
    *,
    normalize: bool = True,
) -> Figure1Data:
    """Every number Figure 1 draws, for a plain model and one image (default: the cat).

    The model is never modified: each softness gets its own deep copy, softened with
    ``soften(copy, group, b, softness_pos=b, filter=filter)`` (``softness_pos`` only where the
    model has a positional token grid). With
    ``normalize`` the image is normalised by the model's ``pretrained_cfg`` mean / std
    (ImageNet's if none), which commutes with R. ``channels``: how many output channels to show
    (those of largest kernel norm) or their indices. See :class:`Figure1Data` for the fields.
    """
    if any(True for _ in iter_soft(model)):
        raise ValueError("figure1 needs the plain model; fold() a softened one first")
    name = layer or first_layer(model)
    module = model.get_submodule(name)
    if not isinstance(module, nn.Conv2d):
        raise ValueError(f"{name} is a {type(module).__name__}, not an nn.Conv2d")
    size = int(input_size or default_input_size(model))
    if _is_vit(model) and size % module.stride[0]:
        raise ValueError(f"input side {size} is not a multiple of the patch size {module.stride}")
    _check_exact_grid(module, name, size)
    pixels, x = _prepare_input(model, image, size, normalize)
    grid = has_token_grid(model)
    data = Figure1Data(
        softness=[float(b) for b in softness],
        layer=name,
        input_size=size,
        channels=_pick_channels(module.weight, channels),
        group=group,
        filter=filter,
        image=pixels[0].numpy(),
        model_name=model_name(model),
        token_grid=grid,
    )
    for b in data.softness:
        soft = copy.deepcopy(model).eval()
        soften(soft, group, b, softness_pos=b if grid else None, filter=filter)
        _measure(soft, name, x, data)
        del soft
    return data
