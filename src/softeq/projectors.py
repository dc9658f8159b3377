"""Invariant and equivariant soft projectors P_b, built once per key, cached, saved and loaded.

* :class:`InvariantProjector` acts on functions on a k x k grid.  Weight side (``side="weight"``):
  every k x k kernel slice w must satisfy w^T D = 0, so the constraint is C = D^T (stacked over
  generators).  Data side (``side="data"``): a grid function f (a positional embedding, per
  channel) must satisfy D f = 0, so C = D.  The two agree for permutation actions (C4, flip, D4).
* :class:`EquivariantProjector` acts on a linear map W (d_out x d_in) with the constraint
  L vec(W) = vec(W D_X - D_Y W) = 0, L = D_X^T (x) I - I (x) D_Y (column-major vec).  Two exact
  constructions: ``dense`` (SVD of L, the reference, O(d^6)) and ``schur`` (block-Schur,
  docs/method.md §3, O(d^3)): in the real Schur bases of D_X and D_Y, L acts block pair by
  block pair with singular values |lambda_in - lambda_out| on the commutant part of a 2 x 2
  weight block and
  |lambda_in - conj(lambda_out)| on its anti-commutant part.

Projectors are immutable and shared: one object per :class:`ProjectorKey` in an in-memory cache,
optionally backed by files (safetensors, or weights-only torch files).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from softeq.filters import FilterResult, check_softness, filter_weights, resolve_filter
from softeq.groups import (
    PairRep,
    default_grid_operator,
    grid_generators,
    pair_generators,
    parse_group,
)
from softeq.io import atomic_write
from softeq.spectral import constraint_svd, real_schur

__all__ = [
    "EquivariantProjector",
    "InvariantProjector",
    "ProjectorKey",
    "clear_cache",
    "equivariant_projector",
    "invariant_projector",
    "load_projector",
    "save_projector",
]

_SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class ProjectorKey:
    """Everything that determines a projector; equal keys give identical projectors."""

    kind: str  # "invariant" | "equivariant"
    group: str
    shape: str  # "16x16" for grids, "<in>-><out>" for equivariant maps
    filter: str
    softness: float
    operator: str = ""  # grid operator ("exact" | "bilinear"), or method ("schur" | "dense")
    side: str = ""  # invariant projectors: "weight" | "data"
    digest: str = ""  # equivariant projectors: hash of the generator matrices

    def slug(self) -> str:
        """A file-name-safe identifier."""
        parts = [self.kind, self.group, self.shape.replace("->", "to"), self.filter]
        parts.append(f"b{self.softness!r}")
        parts += [p for p in (self.operator, self.side, self.digest[:10]) if p]
        return "_".join(parts)

    def to_metadata(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ProjectorKey:
        fields = cls.__dataclass_fields__
        return cls(**{k: json.loads(v) for k, v in meta.items() if k in fields})


class _Projector:
    """Shared behaviour: torch operators per (device, dtype), spectral summary, sharing on copy."""

    key: ProjectorKey
    sigma: np.ndarray
    b_eff: float
    kept: int
    _arrays: dict[str, np.ndarray]

    def __init__(self) -> None:
        self._torch_cache: dict[tuple[torch.device, torch.dtype], dict[str, Tensor]] = {}

    @property
    def size(self) -> int:
        """Number of singular directions (the dimension the projector acts on)."""
        return int(self.sigma.size)

    @property
    def sigma_max(self) -> float:
        return float(self.sigma[-1]) if self.sigma.size else 0.0

    def tensors(self, device: torch.device | str = "cpu", dtype=torch.float32) -> dict[str, Tensor]:
        """The operator's arrays as torch tensors on ``device``, converted once and cached."""
        cache_key = (torch.device(device), dtype)
        if cache_key not in self._torch_cache:
            self._torch_cache[cache_key] = {
                name: torch.as_tensor(array, dtype=dtype, device=device)
                for name, array in self._arrays.items()
            }
        return self._torch_cache[cache_key]

    def __deepcopy__(self, memo):  # immutable: copies of a model share their projectors
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key.slug()}, size={self.size}, b_eff={self.b_eff:g})"


class InvariantProjector(_Projector):
    """P_b on functions of a k x k grid (row-major), symmetric N x N with N = k^2."""

    def __init__(
        self,
        key: ProjectorKey,
        matrix: np.ndarray,
        sigma: np.ndarray,
        constraint: np.ndarray,
        b_eff: float,
        kept: int,
    ) -> None:
        super().__init__()
        self.key, self.sigma, self.b_eff, self.kept = key, sigma, b_eff, kept
        self.constraint = constraint
        self._arrays = {"matrix": np.ascontiguousarray(matrix)}

    @property
    def matrix(self) -> np.ndarray:
        return self._arrays["matrix"]

    @property
    def grid(self) -> int:
        return math.isqrt(self.matrix.shape[0])

    def apply(self, weight: Tensor) -> Tensor:
        """Weight side: project every trailing k x k slice of ``weight`` (..., k, k)."""
        k = self.grid
        if weight.shape[-2:] != (k, k):
            raise ValueError(f"expected kernels of size {k}x{k}, got {tuple(weight.shape[-2:])}")
        p = self.tensors(weight.device, weight.dtype)["matrix"]
        return (weight.reshape(-1, k * k) @ p.T).reshape(weight.shape)

    def apply_tokens(self, tokens: Tensor) -> Tensor:
        """Data side: smooth grid functions laid out as (..., N, C), N = k^2 tokens row-major."""
        if tokens.shape[-2] != self.matrix.shape[0]:
            raise ValueError(f"expected {self.matrix.shape[0]} tokens, got {tokens.shape[-2]}")
        return self.tensors(tokens.device, tokens.dtype)["matrix"] @ tokens

    def residual(self, values: Tensor | np.ndarray) -> float:
        """||C f|| summed over all grid functions in ``values`` (kernels (..., k, k) on the weight
        side, tokens (..., N, C) on the data side)."""
        array = torch.as_tensor(values).detach().double().cpu().numpy()
        n = self.matrix.shape[0]
        if self.key.side == "weight":
            return float(np.linalg.norm(self.constraint @ array.reshape(-1, n).T))
        tokens = array.reshape(-1, n, array.shape[-1])
        return float(np.linalg.norm(np.einsum("mn,bnc->bmc", self.constraint, tokens)))


class EquivariantProjector(_Projector):
    """P_b on linear maps W (d_out x d_in) between features with generators D_X (in), D_Y (out)."""

    def __init__(
        self,
        key: ProjectorKey,
        arrays: dict[str, np.ndarray],
        sigma: np.ndarray,
        in_generators: list[np.ndarray],
        out_generators: list[np.ndarray],
        b_eff: float,
        kept: int,
    ) -> None:
        super().__init__()
        self.key, self.sigma, self.b_eff, self.kept = key, sigma, b_eff, kept
        self.in_generators, self.out_generators = in_generators, out_generators
        self._arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}

    @property
    def method(self) -> str:
        return self.key.operator

    @property
    def shape(self) -> tuple[int, int]:
        return self.out_generators[0].shape[0], self.in_generators[0].shape[0]

    def apply(self, weight: Tensor) -> Tensor:
        """P_b(W) for W of shape (d_out, d_in)."""
        if tuple(weight.shape) != self.shape:
            raise ValueError(f"expected a weight of shape {self.shape}, got {tuple(weight.shape)}")
        t = self.tensors(weight.device, weight.dtype)
        if self.method == "dense":  # column-major vec(W) = W^T flattened row-major
            flat = t["matrix"] @ weight.T.reshape(-1)
            return flat.reshape(self.shape[1], self.shape[0]).T
        rotated = t["z_out"].T @ weight @ t["z_in"]
        swapped = t["zj_out"].T @ weight @ t["zj_in"]
        return t["z_out"] @ (t["alpha"] * rotated + t["beta"] * swapped) @ t["z_in"].T

    def residual(self, weight: Tensor | np.ndarray) -> float:
        """||L vec(W)|| = sqrt(sum over generators of ||W D_X - D_Y W||_F^2)."""
        w = torch.as_tensor(weight).detach().double().cpu().numpy()
        return float(
            math.sqrt(
                sum(
                    np.linalg.norm(w @ dx - dy @ w) ** 2
                    for dx, dy in zip(self.in_generators, self.out_generators, strict=True)
                )
            )
        )


# ----------------------------------------------------------------------------------------------
# construction

_CACHE: dict[ProjectorKey, _Projector] = {}


def clear_cache() -> None:
    """Forget every projector built in this process."""
    _CACHE.clear()


def _cached(key: ProjectorKey, build, cache_dir: str | Path | None):
    if key in _CACHE:
        return _CACHE[key]
    path = Path(cache_dir) / f"{key.slug()}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        projector = load_projector(path)
        if projector.key != key:
            raise ValueError(f"{path}: holds projector {projector.key}, expected {key}")
    else:
        projector = build()
        if path is not None:
            save_projector(projector, path)
    _CACHE[key] = projector
    return projector


def _check_filter(filter: str, softness: float, hard_mask: bool) -> tuple[str, float]:
    return resolve_filter(filter, hard_mask), check_softness(softness)


def invariant_projector(
    group: str,
    size: int,
    softness: float,
    filter: str = "shrink",
    hard_mask: bool = False,
    operator: str | None = None,
    side: str = "weight",
    cache_dir: str | Path | None = None,
) -> InvariantProjector:
    """The soft invariant projector on ``size`` x ``size`` grids for ``group`` (cached per key).

    ``operator`` picks the grid action for C_n (``exact`` permutation, default where n divides 4;
    ``bilinear`` otherwise).  ``side`` is ``weight`` for kernel slices and ``data`` for grid
    functions such as positional embeddings.
    """
    g = parse_group(group)
    filter, b = _check_filter(filter, softness, hard_mask)
    if side not in ("weight", "data"):
        raise ValueError(f"side must be 'weight' or 'data', got {side!r}")
    if size < 1:
        raise ValueError(f"grid size must be positive, got {size}")
    operator = operator or default_grid_operator(g)
    key = ProjectorKey("invariant", g.name, f"{size}x{size}", filter, b, operator, side)

    def build() -> InvariantProjector:
        generators = grid_generators(g, size, operator)
        blocks = [d.T if side == "weight" else d for d in generators]
        spectrum = constraint_svd(blocks)
        result = filter_weights(spectrum.sigma, b, filter)
        return InvariantProjector(
            key,
            spectrum.projector(result.weights),
            spectrum.sigma,
            np.vstack(blocks),
            result.b_eff,
            result.kept,
        )

    return _cached(key, build, cache_dir)


def _digest(*matrices: list[np.ndarray]) -> str:
    h = hashlib.sha1()
    for group in matrices:
        for m in group:
            h.update(np.ascontiguousarray(m, dtype=np.float64).tobytes())
            h.update(b"|")
        h.update(b"#")
    return h.hexdigest()


def equivariant_projector(
    group: str,
    in_rep: PairRep | list[np.ndarray],
    out_rep: PairRep | list[np.ndarray],
    softness: float,
    filter: str = "shrink",
    hard_mask: bool = False,
    method: str = "schur",
    cache_dir: str | Path | None = None,
) -> EquivariantProjector:
    """The soft equivariant projector for maps from ``in_rep`` to ``out_rep`` (cached per key).

    Representations are :class:`PairRep` (their generators follow from ``group``) or explicit
    lists of generator matrices, one per group generator.  ``method``: ``schur`` (exact, O(d^3),
    needs one normal generator) or ``dense`` (SVD of the Kronecker operator, small sizes only).
    """
    g = parse_group(group)
    filter, b = _check_filter(filter, softness, hard_mask)
    if method not in ("schur", "dense"):
        raise ValueError(f"method must be 'schur' or 'dense', got {method!r}")
    in_gens = pair_generators(g, in_rep) if isinstance(in_rep, PairRep) else list(in_rep)
    out_gens = pair_generators(g, out_rep) if isinstance(out_rep, PairRep) else list(out_rep)
    if len(in_gens) != len(out_gens) or not in_gens:
        raise ValueError("input and output need the same, non-zero number of generators")
    d_in, d_out = in_gens[0].shape[0], out_gens[0].shape[0]
    shape = (
        f"{in_rep.key()}->{out_rep.key()}"
        if isinstance(in_rep, PairRep) and isinstance(out_rep, PairRep)
        else f"{d_in}->{d_out}"
    )
    digest = _digest(in_gens, out_gens)
    key = ProjectorKey("equivariant", g.name, shape, filter, b, method, "", digest)

    def build() -> EquivariantProjector:
        if method == "dense":
            arrays, sigma, result = _dense_equivariant(in_gens, out_gens, b, filter)
        else:
            if len(in_gens) != 1:
                raise ValueError(
                    f"{g.name} has {len(in_gens)} generators; the block-Schur path needs one "
                    "(use method='dense' for small dihedral layers)"
                )
            arrays, sigma, result = _schur_equivariant(in_gens[0], out_gens[0], b, filter)
        return EquivariantProjector(
            key, arrays, sigma, in_gens, out_gens, result.b_eff, result.kept
        )

    return _cached(key, build, cache_dir)


def kronecker_operator(in_gens: list[np.ndarray], out_gens: list[np.ndarray]) -> np.ndarray:
    """The stacked L_i = D_X,i^T (x) I - I (x) D_Y,i acting on column-major vec(W)."""
    d_in, d_out = in_gens[0].shape[0], out_gens[0].shape[0]
    return np.vstack(
        [
            np.kron(dx.T, np.eye(d_out)) - np.kron(np.eye(d_in), dy)
            for dx, dy in zip(in_gens, out_gens, strict=True)
        ]
    )


def _dense_equivariant(in_gens, out_gens, b, filter):
    operator = kronecker_operator(in_gens, out_gens)
    _, s, vt = np.linalg.svd(operator, full_matrices=True)  # plain dense SVD: the reference
    sigma = np.zeros(operator.shape[1])
    sigma[: s.size] = s
    order = np.argsort(sigma, kind="stable")
    sigma, v = sigma[order], vt.T[:, order]
    result = filter_weights(sigma, b, filter)
    return {"matrix": (v * result.weights) @ v.T}, sigma, result


def _schur_equivariant(dx, dy, b, filter):
    """Block-Schur construction; see the module docstring and docs/method.md §3."""
    sx, sy = real_schur(dx), real_schur(dy)
    lam_x = sx.real + 1j * sx.imag  # one eigenvalue per block (the one with imag >= 0)
    lam_y = sy.real + 1j * sy.imag
    both_pairs = (sy.sizes[:, None] == 2) & (sx.sizes[None, :] == 2)
    sigma_c = np.abs(lam_x[None, :] - lam_y[:, None])  # commutant part, or the whole block
    sigma_a = np.abs(lam_x[None, :] - np.conj(lam_y)[:, None])  # anti-commutant part
    mult = sy.sizes[:, None] * sx.sizes[None, :]
    # every part of every block pair: (sigma, multiplicity, part index); parts sort by sigma
    part_sigma = np.concatenate([sigma_c.ravel(), sigma_a[both_pairs]])
    part_mult = np.concatenate(
        [np.where(both_pairs, 2, mult).ravel(), np.full(both_pairs.sum(), 2)]
    )
    order = np.argsort(part_sigma, kind="stable")
    sigma = np.repeat(part_sigma[order], part_mult[order])
    result = filter_weights(sigma, b, filter)
    # a part takes the largest weight of its directions (only `rank` can split a part)
    ends = np.cumsum(part_mult[order])
    part_weight = np.empty(part_sigma.size)
    part_weight[order] = np.maximum.reduceat(result.weights, ends - part_mult[order])
    f_c = part_weight[: sigma_c.size].reshape(sigma_c.shape)
    f_a = f_c.copy()
    f_a[both_pairs] = part_weight[sigma_c.size :]
    if filter.startswith("rank"):  # report what the kept parts actually give
        weights = np.repeat(part_weight[order], part_mult[order])
        kept = int(np.count_nonzero(weights == 1.0))
        b_eff = float(np.max(weights * sigma) / sigma[-1]) if sigma[-1] > 0 else 0.0
        result = FilterResult(weights, b_eff, kept)
    # expand block coefficients to entries: W_b = Z_y (alpha * A + beta * J_y^T A J_x) Z_x^T
    rows = np.repeat(np.arange(sy.sizes.size), sy.sizes)
    cols = np.repeat(np.arange(sx.sizes.size), sx.sizes)
    alpha = ((f_c + f_a) / 2)[np.ix_(rows, cols)]
    beta = ((f_c - f_a) / 2)[np.ix_(rows, cols)]
    arrays = {
        "z_in": sx.Z,
        "z_out": sy.Z,
        "zj_in": sx.Z @ _block_j(sx),
        "zj_out": sy.Z @ _block_j(sy),
        "alpha": alpha,
        "beta": beta,
    }
    return arrays, sigma, result


def _block_j(schur) -> np.ndarray:
    """blockdiag(J for 2 x 2 blocks, 1 for 1 x 1 blocks)."""
    out = np.zeros_like(schur.Z)
    for start, size in zip(schur.starts, schur.sizes, strict=True):
        if size == 1:
            out[start, start] = 1.0
        else:
            out[start : start + 2, start : start + 2] = [[0.0, -1.0], [1.0, 0.0]]
    return out


# ----------------------------------------------------------------------------------------------
# save / load


def _state(projector: _Projector) -> tuple[dict[str, Tensor], dict[str, str]]:
    tensors = {
        f"op.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in projector._arrays.items()
    }
    tensors["sigma"] = torch.from_numpy(np.ascontiguousarray(projector.sigma))
    if isinstance(projector, InvariantProjector):
        tensors["constraint"] = torch.from_numpy(np.ascontiguousarray(projector.constraint))
    else:
        for name, gens in (("in", projector.in_generators), ("out", projector.out_generators)):
            for i, g in enumerate(gens):
                tensors[f"gen.{name}.{i}"] = torch.from_numpy(np.ascontiguousarray(g))
    meta = projector.key.to_metadata()
    meta.update(
        schema=_SCHEMA_VERSION,
        b_eff=json.dumps(projector.b_eff),
        kept=json.dumps(projector.kept),
    )
    return tensors, meta


def save_projector(projector: _Projector, path: str | Path) -> Path:
    """Write ``projector`` atomically: safetensors (``.safetensors``) or a torch file (``.pt``)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors, meta = _state(projector)
    if path.suffix == ".safetensors":
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    if path.suffix in (".pt", ".pth"):
        return atomic_write(path, lambda tmp: torch.save({"tensors": tensors, "meta": meta}, tmp))
    raise ValueError(f"{path}: use a .safetensors or .pt file name")


def load_projector(path: str | Path) -> InvariantProjector | EquivariantProjector:
    """Read a projector written by :func:`save_projector`; never unpickles arbitrary objects."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    elif path.suffix in (".pt", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        tensors, meta = state["tensors"], state["meta"]
    else:
        raise ValueError(f"{path}: use a .safetensors or .pt file name")
    if meta.get("schema") != _SCHEMA_VERSION:
        raise ValueError(f"{path}: not a softeq projector file (schema {meta.get('schema')!r})")
    key = ProjectorKey.from_metadata(meta)
    arrays = {k[3:]: v.numpy().copy() for k, v in tensors.items() if k.startswith("op.")}
    sigma = tensors["sigma"].numpy()
    b_eff, kept = json.loads(meta["b_eff"]), json.loads(meta["kept"])
    if key.kind == "invariant":
        return InvariantProjector(
            key, arrays["matrix"], sigma, tensors["constraint"].numpy(), b_eff, kept
        )
    gens = {
        side: [
            tensors[f"gen.{side}.{i}"].numpy()
            for i in range(sum(name.startswith(f"gen.{side}.") for name in tensors))
        ]
        for side in ("in", "out")
    }
    return EquivariantProjector(key, arrays, sigma, gens["in"], gens["out"], b_eff, kept)
