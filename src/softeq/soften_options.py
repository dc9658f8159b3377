"""Per-backbone softening options: which layers ``softeq.soften`` selects for one backbone.

A backbone spec may carry a ``soften`` mapping (config/README.md); the jobs receive it inside
``--backbone-spec``, split it off before building the model (:func:`split_backbone_spec`) and
pass its settings to ``softeq.soften`` beside the run's :class:`~softeq.spec.Softening`.  Nothing
is set by default, so softeq's own selection and filtering hold (docs/fidelity.md):

* ``skip_small_kernels`` (image models): the reference code leaves convolutions with small
  kernels plain when the softness is high (kernel-size rule);
* ``basis`` (image models): ``schur``, the reference's sorted real-Schur basis of the kernel and
  positional-grid filters (rank filters, C_n), instead of softeq's exact SVD (``svd``);
* ``vector_filter`` (pair models): the filter of biases and pair vectors (the reference's
  invariant vector filter is ``decay``);
* ``in_place`` (pair models, Hugging Face ViT / DINOv2 classifiers, spec key ``hf``, and the
  segmenters :data:`IN_PLACE_SEGMENTERS`): the model's ``reference_in_place`` tensors (for HF
  image models the positional grid's patch part) are projected in place at every forward call,
  the reference's way, instead of parametrized;
* ``rpp_prior`` (image models): the prior weight lambda of the runs with filter ``rpp``
  (residual pathway priors, softeq.rpp); the backbone's other runs do not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from softeq.filters import FILTERS, RPP, check_softness
from softeq.projectors.build import BASES
from softeq.spec import Softening

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "IN_PLACE_SEGMENTERS",
    "SPEC_KEY",
    "SkipSmallKernels",
    "SoftenOptions",
    "check_config_options",
    "split_backbone_spec",
]

SPEC_KEY = "soften"
"""The key of a backbone spec that holds its softening options."""

IN_PLACE_SEGMENTERS = ("vit_hf", "dinov2_hf")
"""Segmenter archs whose positional grid the reference filters in place (transformers ViT /
DINOv2, :mod:`softeq.models.seg_hf_vit`); the timm ``vit`` / ``dinov2`` have none to name."""


def _check_keys(values: Any, known: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {list(known)})")
    return values


@dataclass(frozen=True)
class SkipSmallKernels:
    """Leave convolutions whose kernel is at most ``max_kernel`` plain when the softness is
    above ``above_softness`` (strictly), as the reference does for ResNet-50 (3, 0.8) and
    SegFormer (3, 0.9); docs/fidelity.md."""

    max_kernel: int
    above_softness: float

    KEYS = ("max_kernel", "above_softness")

    @classmethod
    def from_dict(cls, values: Any, where: str) -> SkipSmallKernels:
        values = _check_keys(values, cls.KEYS, where)
        missing = [key for key in cls.KEYS if key not in values]
        if missing:
            raise ValueError(f"{where}: missing {missing}")
        kernel, above = values["max_kernel"], values["above_softness"]
        if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1:
            raise ValueError(f"{where}.max_kernel: expected an integer >= 1, got {kernel!r}")
        if isinstance(above, bool) or not isinstance(above, int | float):
            raise ValueError(f"{where}.above_softness: expected a number, got {above!r}")
        return cls(kernel, check_softness(above, f"{where}.above_softness"))

    def min_kernel(self, softness: float) -> int | None:
        """The smallest kernel softened at ``softness``; None where the rule does not act."""
        return self.max_kernel + 1 if softness > self.above_softness else None


@dataclass(frozen=True)
class SoftenOptions:
    """The softening options of one backbone (empty: softeq's default selection)."""

    skip_small_kernels: SkipSmallKernels | None = None
    vector_filter: str | None = None
    in_place: bool = False
    basis: str | None = None
    rpp_prior: float | None = None

    KEYS = ("skip_small_kernels", "vector_filter", "in_place", "basis", "rpp_prior")
    PAIR_KEYS = ("vector_filter", "in_place")
    IMAGE_KEYS = ("skip_small_kernels", "basis", "rpp_prior")

    @classmethod
    def from_dict(cls, values: Any, where: str = SPEC_KEY) -> SoftenOptions:
        """Parse a spec's ``soften`` mapping; unknown keys and bad types raise, naming them."""
        values = _check_keys(values, cls.KEYS, where)
        skip = values.get("skip_small_kernels")
        if skip is not None:
            skip = SkipSmallKernels.from_dict(skip, f"{where}.skip_small_kernels")
        vector_filter = values.get("vector_filter")
        if vector_filter is not None and vector_filter not in FILTERS:
            raise ValueError(
                f"{where}.vector_filter: expected one of {FILTERS}, got {vector_filter!r}"
            )
        in_place = values.get("in_place", False)
        if not isinstance(in_place, bool):
            raise ValueError(f"{where}.in_place: expected true or false, got {in_place!r}")
        basis = values.get("basis")
        if basis is not None and basis not in BASES:
            raise ValueError(f"{where}.basis: expected one of {BASES}, got {basis!r}")
        prior = values.get("rpp_prior")
        if prior is not None and (
            isinstance(prior, bool) or not isinstance(prior, int | float) or not prior >= 0
        ):
            raise ValueError(f"{where}.rpp_prior: expected a number >= 0, got {prior!r}")
        return cls(skip, vector_filter, in_place, basis, None if prior is None else float(prior))

    def soften_kwargs(self, softening: Softening, model: nn.Module | None = None) -> dict[str, Any]:
        """Keyword arguments of ``softeq.soften`` for ``softening`` on ``model`` (none: its
        defaults); ``in_place`` names the model's ``reference_in_place`` tensors."""
        kwargs: dict[str, Any] = {}
        if self.skip_small_kernels is not None:
            min_kernel = self.skip_small_kernels.min_kernel(softening.softness)
            kwargs.update({} if min_kernel is None else {"min_kernel": min_kernel})
        if self.vector_filter is not None:
            kwargs["vector_filter"] = self.vector_filter
        if self.in_place:
            kwargs["in_place"] = list(getattr(model, "reference_in_place", ()))
        if self.basis is not None:
            if self.basis == "schur" and softening.filter not in ("rank", "rank-hard"):
                raise ValueError(
                    f"{SPEC_KEY}.basis: schur serves the reference's rank rule (filters rank, "
                    f"rank-hard), not {softening.filter!r}"
                )
            kwargs["basis"] = self.basis
        if self.rpp_prior is not None and softening.filter == RPP:
            kwargs["rpp_prior"] = self.rpp_prior
        return kwargs

    def check_applies(self, model: nn.Module, where: str = SPEC_KEY) -> None:
        """Raise when an option set here cannot act on ``model`` (it would be ignored):
        ``skip_small_kernels`` on a model without a conv kernel from 2 to ``max_kernel``,
        ``in_place`` on a model that names no reference tensors."""
        from torch import nn

        if self.in_place and not getattr(model, "reference_in_place", None):
            raise ValueError(
                f"{where}.in_place: {type(model).__name__} names no tensors the reference "
                "filters in place (reference_in_place)"
            )
        skip = self.skip_small_kernels
        if skip is None:
            return
        small = [
            name
            for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d) and 2 <= min(module.kernel_size) <= skip.max_kernel
        ]
        if not small:
            raise ValueError(
                f"{where}.skip_small_kernels: {type(model).__name__} has no convolution with a "
                f"kernel from 2 to {skip.max_kernel}, so the option would change nothing; "
                "remove it from this backbone"
            )


def split_backbone_spec(
    spec: dict[str, Any], where: str = "--backbone-spec"
) -> tuple[dict[str, Any], SoftenOptions]:
    """The model part of a backbone spec (what the model builders take) and its options."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(spec).__name__}")
    model_spec = {k: v for k, v in spec.items() if k != SPEC_KEY}
    values = spec.get(SPEC_KEY)
    options = SoftenOptions.from_dict({} if values is None else values, f"{where}.{SPEC_KEY}")
    return model_spec, options


def check_config_options(backbones: dict[str, Any]) -> None:
    """Check the ``soften`` mapping of every backbone of a config: unknown keys and bad types
    raise naming ``backbones.<name>.soften...``, and so does an option of image models on a
    trajectory model or one of pair models on an image model (it would be ignored)."""
    for name, spec in (backbones or {}).items():
        if not isinstance(spec, dict) or SPEC_KEY not in spec:
            continue
        where = f"backbones.{name}.{SPEC_KEY}"
        values = spec[SPEC_KEY]
        SoftenOptions.from_dict({} if values is None else values, where)  # checks types
        pairs = "preset" in spec
        image_keys = [k for k in SoftenOptions.IMAGE_KEYS if pairs and k in (values or {})]
        if image_keys:
            raise ValueError(
                f"{where}.{image_keys[0]}: applies to image models; {name!r} is a trajectory "
                f"model (preset {spec['preset']!r}), so it would be ignored"
            )
        # HF ViT / DINOv2 (classifiers, segmenters) name their positional grid for in_place
        hf = "hf" in spec or spec.get("arch") in IN_PLACE_SEGMENTERS
        misplaced = [
            k
            for k in SoftenOptions.PAIR_KEYS
            if not pairs and k in (values or {}) and not (k == "in_place" and hf)
        ]
        if misplaced:
            also = (
                f" and to HF (hf) ViT / DINOv2 classifiers and segmenters {IN_PLACE_SEGMENTERS}"
                if misplaced[0] == "in_place"
                else ""
            )
            raise ValueError(
                f"{where}.{misplaced[0]}: applies to pair (trajectory) models{also}; {name!r} is "
                "an image model, so it would be ignored"
            )
