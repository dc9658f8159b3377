"""Figure 1 of the paper: what softening does to a network's first layer, from strict to plain.

For a plain (unsoftened) image model and one photograph, every column is the same model softened
at one softness b (``softeq.soften(copy, group, b, softness_pos=b, filter=...)``), from b = 0
(strictly equivariant) to b = 1 (the original model). The rows show, per column:

1. the softened first-layer kernels (ViT: the patch embedding ``patch_embed.proj``; ResNet:
   ``conv1``), a few output channels drawn as RGB tiles on one scale per row;
2. the first layer's feature map of the image, F(x);
3. the feature map of the image rotated by 90 degrees, rotated back, R^-1 F(R x);
4. the per-pixel equivariance error ||F(x) - R^-1 F(R x)|| (norm over channels).

Under every column the figure prints the layer's relative error and the whole network's output
invariance error KL(softmax f(x) || softmax f(R x)) for this image, so that the first-layer
picture is tied to the network-level behaviour the paper's tables measure.

Exactness at b = 0 (C4): the first layer's error map is zero to float precision when the rotated
sampling grid of the layer coincides with the original one, i.e. (S + 2 padding - kernel) is a
multiple of the stride: for a ViT, an image side that is a multiple of the patch size; for a
ResNet an odd side at every stride (33, 225, ...). The default input size is the ViT's native
``patch_embed.img_size``, and 225 for other models (224 would break exactness at ``conv1``).

:func:`figure1_data` computes every number (kernels, maps, errors) without drawing, so tests and
notebooks can check them; :func:`render_figure1` draws them (Agg canvas, no pyplot, atomic
writes, as ``plots``).
"""

from __future__ import annotations

import copy
import math
import os
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from softeq.figures.plots import save_figure
from softeq.layers import iter_soft
from softeq.metrics.equivariance import kl_divergence
from softeq.soften import soften
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "DEFAULT_SOFTNESS",
    "default_image",
    "default_input_size",
    "figure1_data",
    "first_layer",
    "render_figure1",
]

PathLike = str | os.PathLike[str]

DEFAULT_SOFTNESS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Ordered, perceptually uniform, colour-blind safe; distinct maps for features and errors.
_FEATURE_CMAP = "viridis"
_ERROR_CMAP = "cividis"
_STYLE = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.titlesize": 9,
    "pdf.fonttype": 42,
}
_ROW_LABELS = (
    "first-layer kernels\n(RGB tiles)",
    "feature map\n$F(x)$",
    "rotated back\n$R^{-1}F(Rx)$",
    "equivariance error\n$\\|F(x)-R^{-1}F(Rx)\\|$",
)


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


def _has_token_grid(model: nn.Module) -> bool:
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
) -> dict[str, Any]:
    """Every number Figure 1 draws, for a plain model and one image (default: the cat).

    The model is never modified: each softness gets its own deep copy, softened with
    ``soften(copy, group, b, softness_pos=b, filter=filter)`` (``rank-hard`` = ``rank`` with a
    hard mask; ``softness_pos`` only where the model has a positional token grid). R is the
    90-degree rotation (``torch.rot90``, counter-clockwise). With ``normalize`` the image is
    normalised by the model's ``pretrained_cfg`` mean / std (ImageNet's if none), which commutes
    with R.

    Returns a dict with ``softness`` (list), ``layer`` (name), ``input_size``, ``channels``
    (shown output channels), ``image`` (3, S, S in [0, 1]) and, one entry per softness (lists):
    ``kernels`` (the projected layer weight, out x in x k x k), ``feature`` (F(x), C x H x W),
    ``feature_rot`` (R^-1 F(R x)), ``error_map`` (H x W, the channel norm of their difference),
    ``rel_error`` (||F(x) - R^-1 F(Rx)|| / ||F(x)||, Frobenius) and ``net_kl`` (the whole
    network's KL invariance error for this image; NaN for a model without (B, classes) logits).
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
    pixels = _to_square(default_image(size) if image is None else image, size)
    x = pixels
    if normalize:
        mean, std = _normalisation(model)
        x = (pixels - mean) / std
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    picked = _pick_channels(module.weight, channels)
    filt, hard = ("rank", True) if filter == "rank-hard" else (filter, False)
    grid = _has_token_grid(model)

    out: dict[str, Any] = {
        "softness": [float(b) for b in softness],
        "layer": name,
        "input_size": size,
        "channels": picked,
        "group": group,
        "filter": filter,
        "image": pixels[0].numpy(),
        **{key: [] for key in ("kernels", "feature", "feature_rot", "error_map")},
        **{key: [] for key in ("rel_error", "net_kl")},
    }
    for b in out["softness"]:
        soft = copy.deepcopy(model).eval()
        soften(soft, group, b, softness_pos=b if grid else None, filter=filt, hard_mask=hard)
        soft_layer = soft.get_submodule(name)
        feat, logits = _forward(soft, soft_layer, x)
        feat_r, logits_r = _forward(soft, soft_layer, _rot(x))
        back = _rot(feat_r, -1)
        diff = (feat - back)[0].double()
        out["kernels"].append(soft_layer.weight.detach().cpu().double().numpy())
        out["feature"].append(feat[0].detach().cpu().double().numpy())
        out["feature_rot"].append(back[0].detach().cpu().double().numpy())
        out["error_map"].append(diff.norm(dim=0).cpu().numpy())
        denom = float(feat.double().norm())
        out["rel_error"].append(float(diff.norm()) / denom if denom > 0 else math.nan)
        both = logits is not None and logits_r is not None
        out["net_kl"].append(_kl(logits, logits_r) if both else math.nan)
        del soft
    return out


# ---------------------------------------------------------------------------------- the drawing


def _mosaic(kernels: np.ndarray, picked: Sequence[int], scale: float) -> np.ndarray:
    """Selected kernels (C_in == 3: RGB; else the mean over inputs, grey) as one tiled image.

    Values map linearly to [0, 1] with 0 at mid-grey and +-``scale`` at the ends, so one
    ``scale`` for the whole row keeps tiles of different softness comparable; white separators.
    """
    tiles = []
    for c in picked:
        w = kernels[c]
        w = w if w.shape[0] == 3 else np.repeat(w.mean(axis=0, keepdims=True), 3, axis=0)
        tiles.append(np.clip(0.5 + 0.5 * w.transpose(1, 2, 0) / scale, 0.0, 1.0))
    k = tiles[0].shape[0]
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    gap = max(1, k // 8)
    canvas = np.ones((rows * k + (rows - 1) * gap, cols * k + (cols - 1) * gap, 3))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[r * (k + gap) : r * (k + gap) + k, c * (k + gap) : c * (k + gap) + k] = tile
    return canvas


def _column_title(b: float) -> str:
    tag = " (strict)" if b == 0 else " (plain)" if b == 1 else ""
    return f"b = {b:g}{tag}"


def _sci(value: float) -> str:
    """Compact scientific notation (1.2e-7); float noise below 1e-12 shows as "< 1e-12"."""
    if math.isnan(value):
        return "n/a"
    if abs(value) < 1e-12:
        return "< 1e-12"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def _bare(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def render_figure1(
    model: nn.Module,
    image: Tensor | np.ndarray | None,
    out_png: PathLike,
    group: str = "C4",
    softness: Sequence[float] = DEFAULT_SOFTNESS,
    filter: str = "shrink",
    layer: str | None = None,
    input_size: int | None = None,
    channels: int | Sequence[int] = 4,
    title: str | None = None,
    pdf: bool = False,
) -> Path:
    """Draw Figure 1 (see the module docstring) for a plain model; return the PNG path.

    ``image`` None uses :func:`default_image` (the cat). Columns are the softness levels, plus a
    leading "input" column with x and R x. One colour scale per row (a labelled colour bar each;
    rows 2 and 3 share theirs, so F(x) and R^-1 F(Rx) compare directly). Page width (7.2 in),
    fonts >= 8 pt, viridis / cividis; written atomically at the figures' DPI, a PDF beside the
    PNG with ``pdf``.
    """
    data = figure1_data(model, image, group, softness, filter, layer, input_size, channels)
    bs, n = data["softness"], len(data["softness"])
    kernel_scale = max(float(np.abs(k[data["channels"]]).max()) for k in data["kernels"]) or 1.0
    maps = [np.abs(f).mean(axis=0) for f in data["feature"]]
    maps_rot = [np.abs(f).mean(axis=0) for f in data["feature_rot"]]
    feat_max = max(float(m.max()) for m in (*maps, *maps_rot)) or 1.0
    err_max = max(float(e.max()) for e in data["error_map"])
    err_max = err_max if err_max > 0 else 1.0

    with mpl.rc_context(_STYLE):
        fig = Figure(figsize=(7.2, 6.6), layout="constrained")
        fig.get_layout_engine().set(w_pad=0.02, h_pad=0.03, wspace=0.02, hspace=0.04)
        axes = fig.subplots(4, n + 1, squeeze=False)
        for ax in axes.ravel():
            _bare(ax)
        # the input column: x and R x, row names as y labels
        axes[1, 0].imshow(data["image"].transpose(1, 2, 0), interpolation="antialiased")
        axes[2, 0].imshow(
            np.rot90(data["image"], 1, axes=(1, 2)).transpose(1, 2, 0),
            interpolation="antialiased",
        )
        axes[1, 0].set_xlabel("input $x$", labelpad=2)
        axes[2, 0].set_xlabel("rotated input $Rx$", labelpad=2)
        for r, label in enumerate(_ROW_LABELS):
            axes[r, 0].set_ylabel(label, labelpad=3)

        grey = mpl.colormaps["gray"]
        for j, b in enumerate(bs):
            cols = axes[:, j + 1]
            cols[0].set_title(_column_title(b), pad=3)
            mosaic = _mosaic(data["kernels"][j], data["channels"], kernel_scale)
            cols[0].imshow(mosaic, interpolation="nearest")
            im_f = cols[1].imshow(maps[j], cmap=_FEATURE_CMAP, vmin=0, vmax=feat_max)
            cols[2].imshow(maps_rot[j], cmap=_FEATURE_CMAP, vmin=0, vmax=feat_max)
            im_e = cols[3].imshow(data["error_map"][j], cmap=_ERROR_CMAP, vmin=0, vmax=err_max)
            cols[3].set_xlabel(
                f"layer err. {_sci(data['rel_error'][j])}\nnet KL {_sci(data['net_kl'][j])}",
                labelpad=3,
            )
        norm = mpl.colors.Normalize(-kernel_scale, kernel_scale)
        # rows 2 and 3 show the same quantity on one scale: one bar spans both
        bars = [
            (mpl.cm.ScalarMappable(norm, grey), [0], "kernel weight\n(each RGB channel)", 12),
            (im_f, [1, 2], "mean |response| over channels", 24),
            (im_e, [3], "channel norm\nof the difference", 12),
        ]
        for mappable, rows, label, aspect in bars:
            ax_list = list(axes[rows, 1:].ravel())
            bar = fig.colorbar(mappable, ax=ax_list, shrink=0.9, pad=0.01, aspect=aspect)
            bar.set_label(label, fontsize=8)
            bar.ax.tick_params(labelsize=8)
            bar.formatter = mpl.ticker.ScalarFormatter(useMathText=True)
            bar.formatter.set_powerlimits((-3, 4))
            bar.update_ticks()

        fig.suptitle(
            title
            or (
                f"Soft {group} equivariance of {_model_name(model)}: first layer "
                f"{data['layer']} ({data['input_size']}×{data['input_size']} input, "
                f"{filter} filter)"
            )
        )
        softened = (
            "patch-embedding kernel and positional grid"
            if _has_token_grid(model)
            else "every conv kernel larger than 1x1"
        )
        caption = (
            f"Columns: the model softened at softness b ({softened}), "
            f"b = 0 strictly {group}-equivariant, b = 1 the original model. Row 1: "
            f"{len(data['channels'])} output channels of the softened {data['layer']} "
            "kernel as RGB tiles (mid-grey = 0). Rows 2-3: mean over channels of the absolute "
            "response, for x and for the 90°-rotated input rotated back. Row 4: per-pixel "
            "channel norm of their difference. Under each column: layer err. = "
            "||F(x) - R⁻¹F(Rx)|| / ||F(x)|| (whole map), net KL = the network's output "
            "invariance error KL(softmax f(x) || softmax f(Rx)) for this image (nats)."
        )
        fig.supxlabel("\n".join(textwrap.wrap(caption, 118)), fontsize=8, ha="left", x=0.01)
        return save_figure(fig, out_png, pdf)
