"""Figure 1 of the paper: what softening does to a network's first layer, from strict to plain.

Draws a :class:`softeq.metrics.feature_maps.Figure1Data` (computed by
``softeq.metrics.feature_maps.figure1_data``; this module never touches a model). Every column is
one softness b, from b = 0 (strictly equivariant) to b = 1 (the original model), after a leading
"input" column with x and R x; the rows show, per column:

1. the softened first-layer kernels, a few output channels drawn as RGB tiles on one scale;
2. the first layer's feature map of the image, F(x);
3. the feature map of the image rotated by 90 degrees, rotated back, R^-1 F(R x);
4. the per-pixel equivariance error ||F(x) - R^-1 F(R x)|| (norm over channels),

with the layer's relative error and the network's KL invariance error under every column.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from softeq.figures.style import figure_style, save_figure

if TYPE_CHECKING:
    from softeq.metrics.feature_maps import Figure1Data

__all__ = ["draw_figure1"]

PathLike = str | os.PathLike[str]

# Ordered, perceptually uniform, colour-blind safe; distinct maps for features and errors.
_FEATURE_CMAP = "viridis"
_ERROR_CMAP = "cividis"
# Image panels: no grid, titles at the body size.
_OVERRIDES = {"axes.grid": False, "axes.titlesize": 8}
_ROW_LABELS = (
    "first-layer kernels\n(RGB tiles)",
    "feature map\n$F(x)$",
    "rotated back\n$R^{-1}F(Rx)$",
    "equivariance error\n$\\|F(x)-R^{-1}F(Rx)\\|$",
)


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


def _bare(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _scales(data: Figure1Data) -> dict[str, Any]:
    """One colour scale per row, shared by all columns (rows 2 and 3 share theirs)."""
    kernel = max(float(np.abs(k[data.channels]).max()) for k in data.kernels) or 1.0
    maps = [np.abs(f).mean(axis=0) for f in data.feature]
    maps_rot = [np.abs(f).mean(axis=0) for f in data.feature_rot]
    feat = max(float(m.max()) for m in (*maps, *maps_rot)) or 1.0
    err = max(float(e.max()) for e in data.error_map)
    return {
        "kernel": kernel,
        "maps": maps,
        "maps_rot": maps_rot,
        "feature": feat,
        "error": err if err > 0 else 1.0,
    }


def _draw_input_column(axes: np.ndarray, image: np.ndarray) -> None:
    """x and R x in the first column, the row names as its y labels."""
    axes[1, 0].imshow(image.transpose(1, 2, 0), interpolation="antialiased")
    axes[2, 0].imshow(
        np.rot90(image, 1, axes=(1, 2)).transpose(1, 2, 0), interpolation="antialiased"
    )
    axes[1, 0].set_xlabel("input $x$", labelpad=2)
    axes[2, 0].set_xlabel("rotated input $Rx$", labelpad=2)
    for r, label in enumerate(_ROW_LABELS):
        axes[r, 0].set_ylabel(label, labelpad=3)


def _draw_columns(axes: np.ndarray, data: Figure1Data, scales: dict[str, Any]) -> tuple:
    """One column per softness; returns the feature and error images (for the colour bars)."""
    im_f = im_e = None
    for j, b in enumerate(data.softness):
        cols = axes[:, j + 1]
        cols[0].set_title(_column_title(b), pad=3)
        mosaic = _mosaic(data.kernels[j], data.channels, scales["kernel"])
        cols[0].imshow(mosaic, interpolation="nearest")
        feat_max = scales["feature"]
        im_f = cols[1].imshow(scales["maps"][j], cmap=_FEATURE_CMAP, vmin=0, vmax=feat_max)
        cols[2].imshow(scales["maps_rot"][j], cmap=_FEATURE_CMAP, vmin=0, vmax=feat_max)
        im_e = cols[3].imshow(data.error_map[j], cmap=_ERROR_CMAP, vmin=0, vmax=scales["error"])
        cols[3].set_xlabel(
            f"layer err. {_sci(data.rel_error[j])}\nnet KL {_sci(data.net_kl[j])}", labelpad=3
        )
    return im_f, im_e


def _colorbars(fig: Figure, axes: np.ndarray, images: tuple, kernel_scale: float) -> None:
    """A labelled colour bar per row; rows 2 and 3 show one quantity, so one bar spans both."""
    im_f, im_e = images
    norm = mpl.colors.Normalize(-kernel_scale, kernel_scale)
    grey = mpl.cm.ScalarMappable(norm, mpl.colormaps["gray"])
    bars = [
        (grey, [0], "kernel weight\n(each RGB channel)", 12),
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


def _caption(data: Figure1Data) -> str:
    softened = (
        "patch-embedding kernel and positional grid"
        if data.token_grid
        else "every conv kernel larger than 1x1"
    )
    caption = (
        f"Columns: the model softened at softness b ({softened}), "
        f"b = 0 strictly {data.group}-equivariant, b = 1 the original model. Row 1: "
        f"{len(data.channels)} output channels of the softened {data.layer} "
        "kernel as RGB tiles (mid-grey = 0). Rows 2-3: mean over channels of the absolute "
        "response, for x and for the 90°-rotated input rotated back. Row 4: per-pixel "
        "channel norm of their difference. Under each column: layer err. = "
        "||F(x) - R⁻¹F(Rx)|| / ||F(x)|| (whole map), net KL = the network's output "
        "invariance error KL(softmax f(x) || softmax f(Rx)) for this image (nats)."
    )
    return "\n".join(textwrap.wrap(caption, 118))


def draw_figure1(
    data: Figure1Data, out_png: PathLike, title: str | None = None, pdf: bool = False
) -> Path:
    """Draw Figure 1 (see the module docstring) from its numbers; return the PNG path.

    One colour scale per row (a labelled colour bar each; rows 2 and 3 share theirs, so F(x) and
    R^-1 F(Rx) compare directly). Page width (7.2 in), fonts >= 8 pt, viridis / cividis; written
    atomically, a PDF beside the PNG with ``pdf``.
    """
    scales = _scales(data)
    with figure_style(_OVERRIDES):
        fig = Figure(figsize=(7.2, 6.6), layout="constrained")
        fig.get_layout_engine().set(w_pad=0.02, h_pad=0.03, wspace=0.02, hspace=0.04)
        axes = fig.subplots(4, len(data.softness) + 1, squeeze=False)
        for ax in axes.ravel():
            _bare(ax)
        _draw_input_column(axes, data.image)
        images = _draw_columns(axes, data, scales)
        _colorbars(fig, axes, images, scales["kernel"])
        fig.suptitle(
            title
            or (
                f"Soft {data.group} equivariance of {data.model_name}: first layer "
                f"{data.layer} ({data.input_size}×{data.input_size} input, "
                f"{data.filter} filter)"
            )
        )
        fig.supxlabel(_caption(data), fontsize=8, ha="left", x=0.01)
        return save_figure(fig, out_png, pdf)
