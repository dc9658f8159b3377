"""Rotations and resizes shared by data loading, training and evaluation.

Conventions (docs/conventions.md §1, rotated evaluation): every sample gets its own angle, uniform
in [-max, +max] degrees, drawn from a generator seeded by the evaluation seed, so reruns see the
same angles. Images are rotated with bilinear sampling, label masks with nearest sampling and the
ignore value (255) as fill. A positive angle turns the displayed image counter-clockwise, like
``torch.rot90(x, 1, (2, 3))`` (and ``softeq.groups.rotation_matrix_rot90``), about the image
centre; trajectories (points in metres) turn counter-clockwise about the origin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "fit_input",
    "inside_mask",
    "rotate_images",
    "rotate_trajectories",
    "sample_angles",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB in [0, 1] (what pretrained backbones normalise with)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB in [0, 1]."""

_MODES = ("bilinear", "nearest")


def sample_angles(n: int, max_degrees: float, seed: int) -> torch.Tensor:
    """``n`` angles in degrees, uniform in [-max_degrees, +max_degrees], float32.

    Drawn from a private ``torch.Generator`` seeded with ``seed``: the same seed gives the same
    angles on every call, and the global torch RNG is left untouched.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not math.isfinite(max_degrees) or max_degrees < 0:
        raise ValueError(f"max_degrees must be finite and >= 0, got {max_degrees}")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return ((2.0 * u - 1.0) * max_degrees).to(torch.float32)


def _angles_for(angles_deg: torch.Tensor | Sequence[float] | float, n: int) -> torch.Tensor:
    """Angles as a float64 (n,) tensor in radians; a single angle is used for every sample."""
    angles = torch.as_tensor(angles_deg, dtype=torch.float64).detach().cpu().reshape(-1)
    if angles.numel() == 1:
        angles = angles.expand(n)
    if angles.numel() != n:
        raise ValueError(f"got {angles.numel()} angles for a batch of {n}")
    return torch.deg2rad(angles)


def _source_grid(
    n: int,
    height: int,
    width: int,
    angles_deg: torch.Tensor | Sequence[float] | float,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Sampling grid (n, H, W, 2): where each output pixel reads the input, in normalised coords.

    Rotation is in pixel units about the centre, so non-square images are not sheared: the
    normalised coordinates are rescaled by the aspect ratio.
    """
    radians = _angles_for(angles_deg, n)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    # output (x_o, y_o) reads input (cos x_o - sin y_o, sin x_o + cos y_o) in pixel units; with y
    # pointing down in the array this turns the displayed image counter-clockwise (rot90 for +90).
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (height / width), zero], dim=-1),
            torch.stack([sin * (width / height), cos, zero], dim=-1),
        ],
        dim=1,
    )
    theta = theta.to(device=device, dtype=dtype)
    return F.affine_grid(theta, [n, 1, height, width], align_corners=False)


def rotate_images(
    x: torch.Tensor,
    angles_deg: torch.Tensor | Sequence[float] | float,
    mode: str = "bilinear",
    fill: float = 0.0,
    damp_border: bool = False,
) -> torch.Tensor:
    """Rotate a batch (N, C, H, W) about the centre, each sample by its own angle, in one call.

    Positive angles are counter-clockwise (``rotate_images(x, 90)`` equals
    ``torch.rot90(x, 1, (2, 3))`` for square images). ``mode`` is ``"bilinear"`` for images or
    ``"nearest"`` for label masks; pixels that read from outside the frame get ``fill`` (for
    bilinear, border pixels blend with ``fill`` exactly as if the image were padded with it).
    ``damp_border`` (bilinear) blends them once more, weighting the zero-padded result by the
    rotated image of ones as torchvision's ``rotate(..., fill=...)`` does (the reference code's
    rotation, docs/fidelity.md).  Integer inputs (masks) are rotated in float and returned in
    their own dtype.
    """
    if damp_border and mode != "bilinear":
        raise ValueError("damp_border applies to bilinear rotation only")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if x.ndim != 4:
        raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, height, width = x.shape
    work_dtype = x.dtype if x.is_floating_point() else torch.float32
    grid = _source_grid(n, height, width, angles_deg, x.device, work_dtype)
    src = x.to(work_dtype)
    out = F.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if fill != 0.0 or damp_border:
        ones = torch.ones((n, 1, height, width), device=x.device, dtype=work_dtype)
        valid = F.grid_sample(ones, grid, mode=mode, padding_mode="zeros", align_corners=False)
        if mode == "nearest":
            out = torch.where(valid < 0.5, torch.full_like(out, fill), out)
        else:
            out = (out * valid if damp_border else out) + (1.0 - valid) * fill
    if not x.is_floating_point():
        out = out.round().to(x.dtype)
    return out


def inside_mask(
    shape: Sequence[int],
    angles_deg: torch.Tensor | Sequence[float] | float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Bool (N, 1, H, W): output pixels of the rotation that read only from inside the frame.

    ``shape`` is (N, C, H, W) (or (N, H, W)). A pixel counts as inside when its source point lies
    within the span of the input's pixel centres, so bilinear sampling uses no padding there: the
    region where a rotated prediction and the prediction on the rotated image are comparable.
    All True at angle 0 (and at multiples of 90 degrees on square images).
    """
    if len(shape) not in (3, 4):
        raise ValueError(f"shape must be (N, C, H, W) or (N, H, W), got {tuple(shape)}")
    n, height, width = int(shape[0]), int(shape[-2]), int(shape[-1])
    grid = _source_grid(n, height, width, angles_deg, device, torch.float64)
    tol = 1e-6
    inside_x = grid[..., 0].abs() <= 1.0 - 1.0 / width + tol
    inside_y = grid[..., 1].abs() <= 1.0 - 1.0 / height + tol
    return (inside_x & inside_y).unsqueeze(1)


def rotate_trajectories(x: Tensor, angles_deg: Tensor | Sequence[float] | float) -> Tensor:
    """Rotate points (B, ..., 2) about the origin, counter-clockwise, sample b by angle b (degrees).

    A single angle rotates every sample.  The rotation is computed in float64 and returned in
    ``x``'s dtype.
    """
    if x.shape[-1] != 2:
        raise ValueError(f"expected points (..., 2), got shape {tuple(x.shape)}")
    angles = torch.as_tensor(angles_deg, dtype=torch.float64, device=x.device)
    if angles.numel() == 1:
        radians = torch.deg2rad(angles.reshape(()))
    else:
        angles = angles.reshape(-1)
        if x.dim() < 2 or angles.numel() != x.shape[0]:
            raise ValueError(f"got {angles.numel()} angles for points of shape {tuple(x.shape)}")
        radians = torch.deg2rad(angles).reshape(-1, *([1] * (x.dim() - 2)))
    cos, sin = torch.cos(radians), torch.sin(radians)
    px, py = x[..., 0].double(), x[..., 1].double()
    return torch.stack([cos * px - sin * py, sin * px + cos * py], dim=-1).to(x.dtype)


def fit_input(x: Tensor, size: int) -> Tensor:
    """Resize images to the backbone's input size (symmetric bilinear: commutes with rot90)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
