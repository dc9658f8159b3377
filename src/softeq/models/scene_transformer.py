"""The reference code's trajectory architecture: one token per time step holding every agent.

Token t is the (x, y) of all A agents of the window at step t, in absolute (world) coordinates,
flattened to a 2A-vector; absent agents are zero rows (padding to the largest window of the fold,
``max_agents``) and only the validity mask tells them apart, in the loss and the metrics, never in
the network.  The network is a decoder-only transformer over the time steps (docs/fidelity.md):

* input map ``Linear(2A, d)`` (Xavier-uniform, zero bias) plus a learned positional encoding
  ``pos`` (1, obs_len + pred_len, d), initialised N(0, 0.02^2);
* ``layers`` post-norm decoder layers: x = n1(x + attn(x)); x = n2(x + c); x = n3(x + ffn(x)),
  where c (``memory_bias``) is what a cross-attention over an empty memory contributes (its output
  projection's bias: the attention over zero keys is zero), and ffn = Linear -> gate -> dropout ->
  Linear with the gate v -> v sigmoid(|v| + c_l) per (x, y) pair, one c_l per layer (eq_nonlin);
* output map ``Linear(d, 2A)`` (Xavier-uniform, zero bias): the next step's absolute positions.

``equivariant_ready=True`` (the filtered config) normalises every (x, y) pair of a token to unit
length (:class:`PairUnitNorm`, no weights) and drops whole pairs (``pair_dropout=False``: single
coordinates, as the reference, which only matters in training); ``False`` (the non-equivariant
config) uses ``nn.LayerNorm`` and element-wise dropout.  With every linear map, bias and vector
parameter softened as pair features (``softeq.soften(..., features="pairs")``) the b = 0 model
is SO(2)-equivariant about the world origin: each layer commutes with rotating every pair.

Teacher forcing (``teacher_forcing``): ``"shifted"`` (softeq's default) feeds [obs, fut[:-1]]
and reads the outputs at positions obs_len - 1 ... so output t predicts step t + 1 from steps
<= t, as the rollout does; ``"leak"`` reproduces the reference: it feeds [obs, fut] and reads
positions obs_len ..., so the output trained to predict future step k sees step k itself through
the causal mask (docs/fidelity.md).  Rollout is the same for both: from the last token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from softeq.layers import PairGate
from softeq.models.registry import register_model
from softeq.models.trajectory import CausalSelfAttention, PairDropout, TrajectoryConfig

__all__ = [
    "REFERENCE_IN_PLACE",
    "SCENE_PRESETS",
    "PairUnitNorm",
    "SceneConfig",
    "SceneTransformer",
    "build_scene_model",
]

TEACHER_FORCING = ("shifted", "leak")

REFERENCE_IN_PLACE = ("pos", "*.bias", "*.memory_bias", "blocks.*.attn.*")
"""The tensors the reference filters in place at every forward (docs/fidelity.md): the
positional encoding, every bias, and the attention projections' weights."""


class PairUnitNorm(nn.Module):
    """x_i -> x_i / (|x_i| + eps) for every (x, y) pair x_i of a token: no weights, commutes with
    rotating every pair (the reference's layer norm of the filtered config)."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        if width % 2:
            raise ValueError(f"PairUnitNorm needs an even width, got {width}")
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        return (pairs / (pairs.norm(dim=-1, keepdim=True) + self.eps)).flatten(-2)


class _DecoderLayer(nn.Module):
    """Post-norm decoder layer with an empty memory (see the module docstring)."""

    soft_pair_vectors = ("memory_bias",)  # softened like a bias (softeq.soften)

    def __init__(
        self, d_model: int, heads: int, ffn: int, dropout: float, pairs: bool, pair_drop: bool
    ) -> None:
        super().__init__()
        norm = PairUnitNorm if pairs else nn.LayerNorm
        drop = PairDropout if pairs and pair_drop else nn.Dropout
        self.attn = CausalSelfAttention(d_model, heads, dropout)
        self.memory_bias = nn.Parameter(torch.zeros(d_model))
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn),
            PairGate(ffn, shared=True),
            drop(dropout),
            nn.Linear(ffn, d_model),
        )
        self.norm1, self.norm2, self.norm3 = norm(d_model), norm(d_model), norm(d_model)
        self.drop1, self.drop2, self.drop3 = drop(dropout), drop(dropout), drop(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.drop1(self.attn(x)))
        x = self.norm2(x + self.drop2(self.memory_bias.expand_as(x)))
        return self.norm3(x + self.drop3(self.ffn(x)))


@dataclass(frozen=True)
class SceneConfig(TrajectoryConfig):
    """Architecture of a :class:`SceneTransformer` (config: a backbone's ``kwargs``): the
    per-agent model's fields, and the scene's."""

    obs_len: int = 10
    pred_len: int = 10
    max_agents: int = 0  # 0: the fold's largest window (set by the trajectory stage)
    teacher_forcing: str = "shifted"
    pair_dropout: bool = True  # drop whole (x, y) pairs; False: element-wise (the reference)


SCENE_PRESETS: dict[str, SceneConfig] = {
    "reference-filtered": SceneConfig(obs_len=10, pred_len=10),
    "reference-nonequivariant": SceneConfig(
        obs_len=8,
        pred_len=12,
        d_model=256,
        layers=8,
        heads=8,
        ffn=1024,
        equivariant_ready=False,
    ),
}
"""The reference's two trajectory configs (docs/fidelity.md)."""


class SceneTransformer(nn.Module):
    """Decoder-only transformer over time steps, one token per step holding all agents.

    ``model(obs)`` rolls out ``pred_len`` steps; ``model(obs, fut)`` returns the teacher-forced
    predictions (training).  Positions are (B, max_agents, steps, 2) in metres, zero-padded.
    """

    scene = True  # the engine feeds padded windows, not single agents
    reference_in_place = REFERENCE_IN_PLACE

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        config = SceneConfig(**fields)
        if config.max_agents < 1:
            raise ValueError(f"max_agents must be >= 1, got {config.max_agents}")
        if config.teacher_forcing not in TEACHER_FORCING:
            raise ValueError(
                f"teacher_forcing must be one of {TEACHER_FORCING}, got {config.teacher_forcing!r}"
            )
        d = config.d_model
        if d % 2 or config.ffn % 2 or d % config.heads:
            raise ValueError(f"d_model {d} / ffn {config.ffn}: even widths split into heads")
        if config.equivariant_ready and (d // config.heads) % 2:
            raise ValueError(f"d_model {d} must split into {config.heads} heads of whole pairs")
        self.config = config
        self.obs_len, self.pred_len, self.max_agents = (
            config.obs_len,
            config.pred_len,
            config.max_agents,
        )
        width = 2 * config.max_agents
        self.embed = nn.Linear(width, d)
        self.pos = nn.Parameter(torch.randn(1, config.obs_len + config.pred_len, d) * 0.02)
        self.blocks = nn.ModuleList(
            _DecoderLayer(
                d,
                config.heads,
                config.ffn,
                config.dropout,
                config.equivariant_ready,
                config.pair_dropout,
            )
            for _ in range(config.layers)
        )
        self.head = nn.Linear(d, width)
        for linear in (self.embed, self.head):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    @property
    def soft_pair_vectors(self) -> tuple[str, ...]:
        """Parameters that are pair vectors (softened like biases): the positional encoding."""
        return ("pos",)

    def _decode(self, tokens: Tensor) -> Tensor:
        """(B, T, 2A) absolute positions -> (B, T, 2A) predicted next positions (causal)."""
        t = tokens.shape[1]
        if t > self.pos.shape[1]:
            raise ValueError(f"{t} tokens exceed the positional encoding's {self.pos.shape[1]}")
        x = self.embed(tokens) + self.pos[:, :t]
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def _tokens(self, positions: Tensor) -> Tensor:
        if positions.dim() != 4 or positions.shape[1] != self.max_agents:
            raise ValueError(
                f"expected positions (B, {self.max_agents}, steps, 2), got {tuple(positions.shape)}"
            )
        return positions.transpose(1, 2).flatten(2)  # (B, steps, 2A)

    def _positions(self, tokens: Tensor) -> Tensor:
        return tokens.unflatten(-1, (self.max_agents, 2)).transpose(1, 2)

    def teacher_forced(self, obs: Tensor, fut: Tensor) -> Tensor:
        """Predicted future positions (B, A, pred_len, 2) from the true sequence."""
        if obs.shape[2] != self.obs_len or fut.shape[2] != self.pred_len:
            raise ValueError(
                f"expected {self.obs_len} observed and {self.pred_len} future steps, got "
                f"{obs.shape[2]} and {fut.shape[2]}"
            )
        if self.config.teacher_forcing == "leak":
            out = self._decode(self._tokens(torch.cat([obs, fut], dim=2)))[:, self.obs_len :]
        else:
            prefix = torch.cat([obs, fut[:, :, :-1]], dim=2)
            out = self._decode(self._tokens(prefix))[:, self.obs_len - 1 :]
        return self._positions(out)

    def rollout(self, obs: Tensor) -> Tensor:
        """Autoregressive prediction (B, A, pred_len, 2): each step appends the last output."""
        if obs.shape[2] != self.obs_len:
            raise ValueError(f"expected {self.obs_len} observed steps, got {obs.shape[2]}")
        tokens = self._tokens(obs)
        for _ in range(self.pred_len):
            tokens = torch.cat([tokens, self._decode(tokens)[:, -1:]], dim=1)
        return self._positions(tokens[:, self.obs_len :])

    def forward(self, obs: Tensor, fut: Tensor | None = None) -> Tensor:
        return self.rollout(obs) if fut is None else self.teacher_forced(obs, fut)


def build_scene_model(name: str, **overrides: Any) -> SceneTransformer:
    """The preset ``name`` of :data:`SCENE_PRESETS` with ``overrides`` (e.g. ``max_agents``)."""
    fields = set(SceneConfig.__dataclass_fields__)
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown model keys {sorted(unknown)}; expected some of {sorted(fields)}")
    return SceneTransformer(**asdict(replace(SCENE_PRESETS[name], **overrides)))


def _register(name: str) -> None:
    def build(**overrides: Any) -> SceneTransformer:
        return build_scene_model(name, **overrides)

    build.__qualname__ = f"preset_{name.replace('-', '_')}"
    register_model(name, task="trajectory")(build)


for _name in SCENE_PRESETS:
    _register(_name)
