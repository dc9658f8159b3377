"""Trajectory models: a constant-velocity baseline and a decoder-only transformer on (x, y) pairs.

:class:`TrajectoryTransformer` predicts one agent's future from its observed positions; every
agent of a window is one batch element (the paper's model puts all agents of a window in one
token; this per-agent version keeps the same ingredients and symmetry with a simpler interface).

Inputs and the frame of reference.  Let x_0..x_{T-1} be positions (metres) and a = x_{obs_len-1}
the last observed one.  Token t carries two 2-vectors (a width-4 pair feature): the position
relative to the anchor r_t = x_t - a and the displacement d_t = x_t - x_{t-1} (d_0 = 0).  The
network g maps tokens to the next displacement d_{t+1}, and predicted positions are a plus the
cumulative displacements.  Subtracting a is a translation; both r_t and d_t rotate with the input,
so with g equivariant the whole predictor is equivariant about the world origin:
f(R x) = R a + G(R (x - a)) = R f(x) for every rotation R (and it is translation-equivariant too).

The equivariant-ready architecture (``equivariant_ready=True``; docs/method.md §5):

* every map with weights is an ``nn.Linear`` between pair features (even widths), so
  ``softeq.soften(model, "SO2", b, features="pairs")`` softens all of them, biases with the
  invariant filter; at b = 0 every weight commutes with rotations of each pair and every bias
  is zero (no nonzero vector is rotation-invariant);
* the learnable positional encoding p_t is the bias of step t's input map
  (``embed.steps[t]``: token_t = W_t [r_t, d_t] + p_t), so soften projects it with the invariant
  filter like every bias; the W_t start equal (a shared embedding) and may drift apart;
* causal self-attention written with q / k / v / o linear maps: the scores q_h . k_h (summed over
  a head's channels, whole pairs per head) are rotation invariant, the values rotate;
* feed-forward Linear -> :class:`~softeq.layers.PairGate` (v -> v sigmoid(|v| + c) per pair)
  -> Linear; :class:`PairLayerNorm` divides each token by the RMS of its pair norms (no mean
  subtraction, no bias); :class:`PairDropout` drops whole pairs.  All commute with rotations.

``equivariant_ready=False`` builds the plain transformer (``nn.LayerNorm``, GELU, element-wise
dropout): softening it projects its linear maps but does not make it equivariant at b = 0.

Training uses teacher forcing (``model(obs, fut)``: one-step-ahead predictions from the true
prefix); testing rolls out autoregressively (``model(obs)``), feeding predictions back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softeq.layers import PairGate
from softeq.models.registry import create_model, register_model

__all__ = [
    "PRESETS",
    "CausalSelfAttention",
    "ConstantVelocity",
    "PairDropout",
    "PairLayerNorm",
    "TimeEmbedding",
    "TrajectoryConfig",
    "TrajectoryTransformer",
    "build_constant_velocity",
    "build_trajectory_model",
]

IN_FEATURES = 4
"""Width of a token's input: relative position and displacement, two (x, y) pairs."""


def _check_obs(obs: Tensor, obs_len: int) -> None:
    if obs.dim() != 3 or obs.shape[-1] != 2:
        raise ValueError(f"expected observations (N, obs_len, 2), got {tuple(obs.shape)}")
    if obs.shape[1] != obs_len:
        raise ValueError(f"expected {obs_len} observed steps, got {obs.shape[1]}")


class ConstantVelocity(nn.Module):
    """Extrapolate the last observed velocity: x_{T+k} = x_T + k (x_T - x_{T-1}).

    Linear in the input and equivariant under rotations (and translations).  ``fut`` is accepted
    and ignored, so the engine can call it like the transformer.
    """

    def __init__(self, obs_len: int, pred_len: int) -> None:
        super().__init__()
        if obs_len < 2:
            raise ValueError("constant velocity needs at least two observed steps")
        self.obs_len, self.pred_len = obs_len, pred_len

    def forward(self, obs: Tensor, fut: Tensor | None = None) -> Tensor:
        """Predicted positions (N, pred_len, 2)."""
        _check_obs(obs, self.obs_len)
        velocity = obs[:, -1] - obs[:, -2]
        steps = torch.arange(1, self.pred_len + 1, dtype=obs.dtype, device=obs.device)
        return obs[:, -1:, :] + steps[None, :, None] * velocity[:, None, :]


class PairLayerNorm(nn.Module):
    """Normalise each token by the RMS of its pair norms, then scale each pair.

    y = x / sqrt(mean_i |x_i|^2 + eps) * gamma_i over the m pairs x_i of a width-2m token.  The
    divisor is rotation invariant and gamma_i is a scalar, so the layer commutes with rotating
    every pair; there is no mean subtraction and no bias (both would break equivariance).
    """

    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        if width % 2:
            raise ValueError(f"PairLayerNorm needs an even width, got {width}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width // 2))

    def forward(self, x: Tensor) -> Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        mean_sq = pairs.pow(2).sum(-1).mean(-1, keepdim=True)  # mean squared pair norm
        scale = torch.rsqrt(mean_sq + self.eps)[..., None] * self.weight[:, None]
        return (pairs * scale).flatten(-2)


class PairDropout(nn.Module):
    """Dropout of whole (x, y) pairs (both coordinates together), rescaled by 1 / (1 - p).

    Element-wise dropout would zero x but keep y and break equivariance during training; a mask
    per pair is a scalar per pair and commutes with rotations.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        pairs = x.unflatten(-1, (-1, 2))
        keep = F.dropout(pairs.new_ones(*pairs.shape[:-1], 1), self.p, training=True)
        return (pairs * keep).flatten(-2)


class TimeEmbedding(nn.Module):
    """token_t = W_t u_t + p_t: one ``nn.Linear(in_features, d_model)`` per time step.

    The bias p_t is the learnable positional encoding; keeping it as the bias of a linear map lets
    ``soften`` project it with the invariant filter (docs/method.md §5).  The W_t start as copies
    of one matrix, i.e. a shared input embedding plus a positional encoding, and every parameter
    is used.
    """

    def __init__(self, max_len: int, in_features: int, d_model: int) -> None:
        super().__init__()
        self.steps = nn.ModuleList(nn.Linear(in_features, d_model) for _ in range(max_len))
        with torch.no_grad():
            for step in self.steps[1:]:
                step.weight.copy_(self.steps[0].weight)

    @property
    def max_len(self) -> int:
        return len(self.steps)

    def forward(self, u: Tensor) -> Tensor:
        """(N, T, in_features) -> (N, T, d_model), T <= max_len."""
        t = u.shape[-2]
        if t > self.max_len:
            raise ValueError(f"{t} tokens exceed the positional encoding's {self.max_len}")
        weight = torch.stack([step.weight for step in self.steps[:t]])  # (T, d, in)
        bias = torch.stack([step.bias for step in self.steps[:t]])  # (T, d)
        return torch.einsum("ntc,tdc->ntd", u, weight) + bias


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with explicit q / k / v / o ``nn.Linear`` maps.

    Scores are q_h . k_h / sqrt(d_head) per head; with whole pairs per head (even d_head) and
    rotation-equivariant q, k the scores are rotation invariant and the output rotates.
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.o = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape

        def split(y: Tensor) -> Tensor:
            return y.view(n, t, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.q(x)),
            split(self.k(x)),
            split(self.v(x)),
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=True,
        )
        return self.o(out.transpose(1, 2).reshape(n, t, d))


class _Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float, pairs: bool) -> None:
        super().__init__()
        norm = PairLayerNorm if pairs else nn.LayerNorm
        drop = PairDropout if pairs else nn.Dropout
        self.norm1, self.norm2 = norm(d_model), norm(d_model)
        self.attn = CausalSelfAttention(d_model, heads, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn),
            PairGate(ffn) if pairs else nn.GELU(),
            drop(dropout),
            nn.Linear(ffn, d_model),
        )
        self.drop1, self.drop2 = drop(dropout), drop(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop1(self.attn(self.norm1(x)))
        return x + self.drop2(self.ffn(self.norm2(x)))


@dataclass(frozen=True)
class TrajectoryConfig:
    """Architecture of a :class:`TrajectoryTransformer` (config: ``model``)."""

    obs_len: int = 8
    pred_len: int = 12
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    ffn: int = 512
    dropout: float = 0.1
    equivariant_ready: bool = True


PRESETS: dict[str, TrajectoryConfig] = {
    # the paper's soft ("filtered") model
    "filtered": TrajectoryConfig(10, 10, 128, 4, 4, 512, 0.1, True),
    # the paper's non-equivariant baseline (dropout not stated, docs/paper.md: 0.1 assumed)
    "nonequivariant": TrajectoryConfig(8, 12, 256, 8, 8, 1024, 0.1, False),
    # the embedded default: small enough to train in about a minute on a CPU
    "tiny": TrajectoryConfig(8, 12, 32, 2, 2, 64, 0.0, True),
}
"""Named architectures: ``filtered`` and ``nonequivariant`` from the paper (docs/paper.md),
``tiny`` for CPU runs."""


class TrajectoryTransformer(nn.Module):
    """Decoder-only transformer over the time steps of one agent (see the module docstring).

    ``model(obs)`` rolls out ``pred_len`` positions autoregressively; ``model(obs, fut)`` returns
    the teacher-forced one-step predictions of the same positions (for training).  Positions are
    (N, steps, 2) in metres.
    """

    def __init__(
        self,
        obs_len: int = 8,
        pred_len: int = 12,
        d_model: int = 128,
        layers: int = 4,
        heads: int = 4,
        ffn: int = 512,
        dropout: float = 0.1,
        equivariant_ready: bool = True,
    ) -> None:
        super().__init__()
        if obs_len < 1 or pred_len < 1:
            raise ValueError(f"obs_len and pred_len must be >= 1, got {obs_len}, {pred_len}")
        if d_model % 2 or ffn % 2:
            raise ValueError(f"d_model ({d_model}) and ffn ({ffn}) must be even: pair features")
        if d_model % heads or (equivariant_ready and (d_model // heads) % 2):
            raise ValueError(
                f"d_model {d_model} must split into {heads} heads of whole (x, y) pairs"
            )
        self.config = TrajectoryConfig(
            obs_len, pred_len, d_model, layers, heads, ffn, dropout, equivariant_ready
        )
        self.obs_len, self.pred_len = obs_len, pred_len
        self.embed = TimeEmbedding(obs_len + pred_len, IN_FEATURES, d_model)
        self.blocks = nn.ModuleList(
            _Block(d_model, heads, ffn, dropout, equivariant_ready) for _ in range(layers)
        )
        self.norm = PairLayerNorm(d_model) if equivariant_ready else nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 2)

    @classmethod
    def from_config(cls, config: TrajectoryConfig) -> TrajectoryTransformer:
        return cls(**asdict(config))

    def step_displacements(self, positions: Tensor, anchor: Tensor) -> Tensor:
        """For positions (N, T, 2) and anchor (N, 2), the predicted next displacement after each
        step: (N, T, 2); output t predicts x_{t+1} - x_t from x_0..x_t (causal)."""
        relative = positions - anchor[:, None, :]
        displacement = torch.cat(
            [torch.zeros_like(positions[:, :1]), positions[:, 1:] - positions[:, :-1]], dim=1
        )
        x = self.embed(torch.cat([relative, displacement], dim=-1))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def teacher_forced(self, obs: Tensor, fut: Tensor) -> Tensor:
        """One-step predictions of the future positions (N, pred_len, 2) from the true prefix."""
        _check_obs(obs, self.obs_len)
        if fut.shape[1:] != (self.pred_len, 2) or len(fut) != len(obs):
            raise ValueError(f"expected future positions (N, {self.pred_len}, 2), got {fut.shape}")
        prefix = torch.cat([obs, fut[:, :-1]], dim=1)
        steps = self.step_displacements(prefix, obs[:, -1])[:, self.obs_len - 1 :]
        return prefix[:, self.obs_len - 1 :] + steps

    def rollout(self, obs: Tensor) -> Tensor:
        """Autoregressive prediction of the future positions (N, pred_len, 2)."""
        _check_obs(obs, self.obs_len)
        positions = obs
        for _ in range(self.pred_len):
            step = self.step_displacements(positions, obs[:, -1])[:, -1]
            positions = torch.cat([positions, (positions[:, -1] + step)[:, None]], dim=1)
        return positions[:, self.obs_len :]

    def forward(self, obs: Tensor, fut: Tensor | None = None) -> Tensor:
        return self.rollout(obs) if fut is None else self.teacher_forced(obs, fut)


def _preset_builder(name: str) -> Callable[..., TrajectoryTransformer]:
    def build(**overrides: Any) -> TrajectoryTransformer:
        fields = set(TrajectoryConfig.__dataclass_fields__)
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(
                f"unknown model keys {sorted(unknown)}; expected some of {sorted(fields)}"
            )
        return TrajectoryTransformer.from_config(replace(PRESETS[name], **overrides))

    build.__qualname__ = f"preset_{name}"
    return build


for _name in PRESETS:
    register_model(_name, task="trajectory")(_preset_builder(_name))


@register_model("constant_velocity", task="trajectory")
def build_constant_velocity(
    obs_len: int = 8, pred_len: int = 12, **unknown: Any
) -> ConstantVelocity:
    """The constant-velocity baseline (no weights); only ``obs_len`` / ``pred_len`` apply."""
    if unknown:
        raise ValueError(f"constant_velocity takes only obs_len and pred_len, got {set(unknown)}")
    return ConstantVelocity(obs_len, pred_len)


def build_trajectory_model(name: str = "tiny", **overrides: Any) -> nn.Module:
    """A model by name through the registry: a preset of :data:`PRESETS` (fields overridable,
    e.g. ``obs_len=8``) or ``constant_velocity`` (only ``obs_len`` / ``pred_len`` apply)."""
    return create_model(name, task="trajectory", **overrides)
