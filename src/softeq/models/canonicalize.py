"""Learned canonicalization (Kaba et al. 2023; Mondal et al. 2023) in front of any softeq
classifier or segmenter: the canonicalization baseline of the paper's Tables 1 and 2.

A small C_n-equivariant network (e2cnn) scores the n rotations of the input; the input is rotated
by minus the angle of the best score (a straight-through one-hot, so the network learns through
the task loss) and the wrapped model sees the canonicalized image. A segmenter's logits are then
rotated back by the angle.  The prior ``weight * CE(scores, identity)`` pulls the canonical pose
towards the identity; :meth:`CanonicalizedModel.auxiliary_loss` hands it to the training loop.

equiadapt's :class:`GroupEquivariantImageCanonicalization` does the canonicalization (one-hot,
rotation, inverse, prior); the network is built here, with the reference's layout (docs/
fidelity.md, "Canonicalization"): equiadapt's ``ESCNNEquivariantNetwork`` has another one (one
kernel size, batch norm, dropout, biases, no padding).  A backbone spec's ``canonicalize`` key
(config/README.md) describes it: :class:`Canonicalize`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = [
    "SPEC_KEY",
    "CanonicalizationNetwork",
    "Canonicalize",
    "CanonicalizedClassifier",
    "CanonicalizedModel",
    "CanonicalizedSegmenter",
    "build_canonicalizer",
    "init_target",
]

SPEC_KEY = "canonicalize"
"""The key of a backbone spec that puts a canonicalizer in front of the model."""

_GROUP = re.compile(r"C([1-9][0-9]*)")
PADDINGS = ("zeros", "edge")


def _positive_ints(value: Any, where: str, odd: bool = False) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: expected a non-empty list of integers, got {value!r}")
    for item in value:
        bad = isinstance(item, bool) or not isinstance(item, int) or item < 1
        if bad or (odd and item % 2 == 0):
            kind = "odd positive integers" if odd else "positive integers"
            raise ValueError(f"{where}: expected {kind}, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Canonicalize:
    """A canonicalizer: ``group`` C_n, ``channels`` (regular fields per hidden layer),
    ``kernel_sizes`` (one per conv: the hidden layers and the output; default 7 then 3s, as the
    reference), ``prior_weight`` (the reference's 0.001) and ``padding`` (``zeros``: rotate the
    image as it is, corners filled with zeros, as the reference; ``edge``: equiadapt's
    edge-pad, rotate, crop)."""

    group: str
    channels: tuple[int, ...] = (8, 8)
    kernel_sizes: tuple[int, ...] | None = None
    prior_weight: float = 0.001
    padding: str = "zeros"

    KEYS: ClassVar[tuple[str, ...]] = (
        "group",
        "channels",
        "kernel_sizes",
        "prior_weight",
        "padding",
    )

    def __post_init__(self) -> None:
        if self.kernel_sizes is None:
            object.__setattr__(self, "kernel_sizes", (7,) + (3,) * len(self.channels))

    @classmethod
    def from_dict(cls, values: Any, where: str = SPEC_KEY) -> Canonicalize:
        """Parse a spec's ``canonicalize`` mapping; bad keys and values raise, naming them."""
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (known: {list(cls.KEYS)})")
        group = values.get("group")
        if not isinstance(group, str) or not _GROUP.fullmatch(group):
            raise ValueError(f"{where}.group: expected a rotation group C<n>, got {group!r}")
        channels = _positive_ints(values.get("channels", [8, 8]), f"{where}.channels")
        kernels = values.get("kernel_sizes")
        if kernels is not None:
            kernels = _positive_ints(kernels, f"{where}.kernel_sizes", odd=True)
            if len(kernels) != len(channels) + 1:
                raise ValueError(
                    f"{where}.kernel_sizes: expected {len(channels) + 1} sizes (one per hidden "
                    f"layer and the output), got {list(kernels)}"
                )
        weight = values.get("prior_weight", 0.001)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ValueError(f"{where}.prior_weight: expected a number >= 0, got {weight!r}")
        padding = values.get("padding", "zeros")
        if padding not in PADDINGS:
            raise ValueError(f"{where}.padding: expected one of {PADDINGS}, got {padding!r}")
        return cls(group, channels, kernels, float(weight), padding)

    @property
    def order(self) -> int:
        """n of C_n."""
        return int(_GROUP.fullmatch(self.group)[1])


class CanonicalizationNetwork(nn.Module):
    """The reference's C_n-equivariant scorer (e2cnn): a lifting conv (trivial -> regular fields,
    the first kernel size), ReLU, then a conv per further hidden layer with ReLU, then a conv to
    one regular field; 'same' padding, no biases.  ``forward`` returns the mean over space of
    the output field, one score per rotation (B, n): rotating the input by 360/n degrees shifts
    the scores cyclically by one."""

    group_type = "rotation"  # what equiadapt's canonicalization reads

    def __init__(self, spec: Canonicalize, in_channels: int = 3) -> None:
        super().__init__()
        with torch.device("cpu"):  # e2cnn samples its bases with numpy: no meta tensors
            self._build(spec, in_channels)
        self.train(True)

    def _build(self, spec: Canonicalize, in_channels: int) -> None:
        from e2cnn import gspaces
        from e2cnn import nn as enn

        self.num_rotations = spec.order
        space = gspaces.Rot2dOnR2(N=spec.order)
        self.in_type = enn.FieldType(space, [space.trivial_repr] * in_channels)
        types = [self.in_type] + [
            enn.FieldType(space, [space.regular_repr] * c) for c in (*spec.channels, 1)
        ]
        layers: list[nn.Module] = []
        for i, kernel in enumerate(spec.kernel_sizes):
            conv = enn.R2Conv(types[i], types[i + 1], kernel, padding=kernel // 2, bias=False)
            layers.append(conv)
            if i < len(spec.channels):
                layers.append(enn.ReLU(types[i + 1], inplace=True))
        self.network = enn.SequentialModule(*layers)

    def train(self, mode: bool = True) -> CanonicalizationNetwork:
        """Set the mode, but keep e2cnn's convs expanding their filter from the weights at every
        call: in eval mode they would cache it in a buffer, which changes the state dict's keys
        and goes stale when weights are loaded or averaged (EMA)."""
        from e2cnn.nn import R2Conv

        self.training = mode
        for module in self.modules():
            module.training = mode
        for module in self.modules():
            if isinstance(module, R2Conv):
                R2Conv.train(module, True)
        return self

    def forward(self, images: Tensor) -> Tensor:
        from e2cnn.nn import GeometricTensor

        features = self.network(GeometricTensor(images, self.in_type)).tensor
        return features.mean(dim=(2, 3))  # one regular field: (B, n)


def build_canonicalizer(spec: Canonicalize, image_size: int, in_channels: int = 3) -> nn.Module:
    """equiadapt's discrete-group image canonicalization around :class:`CanonicalizationNetwork`:
    no crop or resize before the network, and the ``padding`` of ``spec`` around the rotation."""
    from equiadapt.images.canonicalization.discrete_group import (
        GroupEquivariantImageCanonicalization,
    )

    hyper = SimpleNamespace(beta=1.0, input_crop_ratio=1.0, resize_shape=image_size)
    network = CanonicalizationNetwork(spec, in_channels)
    canonicalizer = GroupEquivariantImageCanonicalization(
        network, hyper, (in_channels, image_size, image_size)
    )
    canonicalizer.crop_canonization = nn.Identity()  # the network sees the whole image
    canonicalizer.resize_canonization = nn.Identity()
    if spec.padding == "zeros":  # rotate the image itself (zeros fill), as the reference
        canonicalizer.pad = nn.Identity()
        canonicalizer.crop = nn.Identity()
    return canonicalizer


def _detached(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    return value


class CanonicalizedModel(nn.Module):
    """A model behind a learned canonicalizer (the base of the classifier and segmenter
    wrappers): ``model`` is the wrapped model, ``canonicalizer`` equiadapt's module.  Softening
    acts on the wrapped model's layers only (the canonicalizer's e2cnn convs are not selected)."""

    def __init__(self, model: nn.Module, spec: Canonicalize, image_size: int) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.canonicalizer = build_canonicalizer(spec, image_size)
        self._prior: Tensor | None = None

    def canonicalize(self, images: Tensor) -> Tensor:
        """The images rotated to their canonical pose; records the prior term of this call."""
        canonical = self.canonicalizer(images)
        self._prior = None
        if self.spec.prior_weight:
            prior = self.canonicalizer.get_prior_regularization_loss()
            self._prior = self.spec.prior_weight * prior
        return canonical

    def _forget_graph(self) -> None:
        """Keep equiadapt's record of the last call (scores, group element) without its graph,
        so that the model can be copied (EMA, softening) after a forward."""
        info = self.canonicalizer.canonicalization_info_dict
        self.canonicalizer.canonicalization_info_dict = _detached(info)

    def fibre_features(self, images: Tensor) -> Tensor:
        """The canonicalization network's scores of ``images`` (B, n): one per rotation."""
        return self.canonicalizer.canonicalization_network(images)

    def angles(self) -> Tensor:
        """The rotation (degrees) of each image of the last call: its canonical pose is the
        image rotated by minus this angle."""
        return self.canonicalizer.canonicalization_info_dict["group_element"]["rotation"]

    def auxiliary_loss(self) -> Tensor | None:
        """The prior term of the last forward, ``prior_weight * CE(scores, identity)`` averaged
        over its images (None when the weight is 0 or before any forward)."""
        return self._prior

    def __getstate__(self) -> dict[str, Any]:
        """Copies (EMA, softening) drop the last call's prior term and its graph."""
        return {**self.__dict__, "_prior": None}

    @property
    def reference_in_place(self) -> tuple[str, ...]:
        """The wrapped model's tensors that the reference filters in place, by their names here."""
        inner = getattr(self.model, "reference_in_place", ())
        return tuple(f"model.{name}" for name in inner)


class CanonicalizedClassifier(CanonicalizedModel):
    """A classifier whose logits are those of its canonicalized input: C_n-invariant (up to the
    interpolation of the rotation; exactly for 90-degree rotations with C_4)."""

    def forward(self, images: Tensor) -> Tensor:
        logits = self.model(self.canonicalize(images))
        self._forget_graph()
        return logits

    def get_classifier(self) -> nn.Module:
        """The wrapped model's classification head (the recipe's ``head_epochs``)."""
        return self.model.get_classifier()

    def no_weight_decay(self) -> set[str]:
        """The wrapped model's no-weight-decay names, by their names here."""
        names = getattr(self.model, "no_weight_decay", lambda: set())()
        return {f"model.{name}" for name in names}


class CanonicalizedSegmenter(CanonicalizedModel):
    """A segmenter that predicts on the canonicalized image and rotates its logits back by the
    predicted angle (bilinear, zeros outside the rotated frame), as the reference: C_n
    equivariant.  The canonicalizer's parameters are head parameters (the head learning rate)."""

    def __init__(self, model: nn.Module, spec: Canonicalize, image_size: int) -> None:
        super().__init__(model, spec, image_size)
        self.num_classes = int(model.num_classes)

    def forward(self, images: Tensor) -> Tensor:
        logits = self.model(self.canonicalize(images))
        logits = self.canonicalizer.invert_canonicalization(logits, induced_rep_type="scalar")
        self._forget_graph()
        return logits

    def is_head(self, name: str) -> bool:
        """Head parameters: the canonicalizer's and the wrapped model's head."""
        if name == "canonicalizer" or name.startswith("canonicalizer."):
            return True
        if not name.startswith("model."):
            return False
        inner = name.removeprefix("model.")
        is_head = getattr(self.model, "is_head", None)
        return bool(is_head(inner)) if is_head is not None else inner.startswith("head.")


def init_target(model: nn.Module, spec: Any, init_spec: Any) -> nn.Module | None:
    """The module that weights trained with backbone spec ``init_spec`` load into: ``model``
    itself for the same spec; for a canonicalized ``model`` whose spec without ``canonicalize``
    is ``init_spec``, the wrapped model (the plain backbone's pre-trained weights, the
    canonicalizer starting fresh, as the reference's does on hub weights); None otherwise."""
    if init_spec == spec:
        return model
    if isinstance(model, CanonicalizedModel) and isinstance(spec, dict):
        plain = {key: value for key, value in spec.items() if key != SPEC_KEY}
        if init_spec == plain:
            return model.model
    return None
