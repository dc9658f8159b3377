"""Rotated evaluation: reproducible per-sample angles, batched image rotation, KL divergence.

Conventions (DESIGN.md §4): every sample gets its own angle, uniform in [-max, +max] degrees,
drawn from a generator seeded by the evaluation seed, so reruns see the same angles. Images are
rotated with bilinear sampling, label masks with nearest sampling and the ignore value (255) as
fill. A positive angle turns the displayed image counter-clockwise, like ``torch.rot90(x, 1,
(2, 3))`` (and ``softeq.groups.rotation_matrix_rot90``), about the image centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["inside_mask", "kl_divergence", "rotate_images", "sample_angles"]

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
) -> torch.Tensor:
    """Rotate a batch (N, C, H, W) about the centre, each sample by its own angle, in one call.

    Positive angles are counter-clockwise (``rotate_images(x, 90)`` equals
    ``torch.rot90(x, 1, (2, 3))`` for square images). ``mode`` is ``"bilinear"`` for images or
    ``"nearest"`` for label masks; pixels that read from outside the frame get ``fill`` (for
    bilinear, border pixels blend with ``fill`` exactly as if the image were padded with it).
    Integer inputs (masks) are rotated in float and returned in their own dtype.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if x.ndim != 4:
        raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, height, width = x.shape
    work_dtype = x.dtype if x.is_floating_point() else torch.float32
    grid = _source_grid(n, height, width, angles_deg, x.device, work_dtype)
    src = x.to(work_dtype)
    out = F.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if fill != 0.0:
        ones = torch.ones((n, 1, height, width), device=x.device, dtype=work_dtype)
        valid = F.grid_sample(ones, grid, mode=mode, padding_mode="zeros", align_corners=False)
        if mode == "nearest":
            out = torch.where(valid < 0.5, torch.full_like(out, fill), out)
        else:
            out = out + (1.0 - valid) * fill
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


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """KL(softmax(logits_p) || softmax(logits_q)) along ``dim``; one value per remaining index.

    For (N, K) logits this is one value per sample; for (N, K, H, W) one per pixel. Uses
    ``log_softmax`` for stability; classes with p = 0 contribute 0, and round-off below zero is
    clamped so the result is a valid (non-negative) error for log-scale plots.
    """
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"shape mismatch: {tuple(logits_p.shape)} vs {tuple(logits_q.shape)}")
    log_p = F.log_softmax(logits_p, dim=dim)
    log_q = F.log_softmax(logits_q, dim=dim)
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=dim).clamp_min(0.0)
