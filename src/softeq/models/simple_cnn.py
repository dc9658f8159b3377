"""The small CNN of the paper's MNIST tunability study (Figure 2), registered with timm.

The reference's SimpleCNN (models/test_cnn.py at 7f5a9e9): convolutions with channels
[32, 64, 128], kernel 5 and padding k // 2, each followed by a ReLU, a 2 x 2 max-pool after the
second one (layer index 1), global average pooling and a linear head (``fc``).  Written here from
those facts.  Registered in timm's registry as ``simple_cnn``, so a backbone spec
``timm: simple_cnn`` with ``kwargs: {channels: [...], in_chans: 1}`` builds it through
:func:`softeq.models.backbones.build_backbone` like every other classifier.

Every piece commutes with 90-degree rotations once the kernels do (odd kernels with centred
padding, ReLU, pooling over a partition of an even grid that rot90 maps onto itself, global
average), so ``softeq.soften(model, group="C4", softness=0)`` makes it exactly C4-invariant on
even-sized inputs (28 x 28 MNIST, 32 x 32 digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from timm.models import register_model
from torch import Tensor, nn

__all__ = ["SimpleCNN", "simple_cnn"]


class SimpleCNN(nn.Module):
    """conv-ReLU blocks (max-pool after ``pool_after``), global average pool, linear head."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        channels: Sequence[int] = (32, 64, 128),
        kernel_size: int = 5,
        pool_after: Sequence[int] = (1,),
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("simple_cnn needs at least one conv layer (channels)")
        bad = [i for i in pool_after if not 0 <= i < len(channels)]
        if bad:
            raise ValueError(f"simple_cnn: pool_after {bad} outside the {len(channels)} layers")
        layers: list[nn.Module] = []
        width = in_chans
        for i, out in enumerate(channels):
            layers += [nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            if i in pool_after:
                layers.append(nn.MaxPool2d(2))
            width = out
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.num_features = width
        self.num_classes = num_classes
        self.fc = nn.Linear(width, num_classes) if num_classes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).flatten(1))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


@register_model
def simple_cnn(pretrained: bool = False, **kwargs: Any) -> SimpleCNN:
    """timm entry point of :class:`SimpleCNN` (no pre-trained weights exist)."""
    if pretrained:
        raise ValueError("simple_cnn has no pre-trained weights; set pretrained: null")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    for key in ("drop_rate", "drop_path_rate"):
        if kwargs.pop(key, 0.0):
            raise ValueError(f"simple_cnn has no dropout or drop path ({key})")
    return SimpleCNN(**kwargs)
