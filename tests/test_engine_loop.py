"""The training loop's plumbing and settings: sharding deals one permutation over the processes,
recipes and evaluation settings validate types and ranges naming the key, one default sweep."""

import pytest
import torch

from softeq.engine.classification import Recipe
from softeq.engine.evaluation import DEFAULT_SWEEP, EvalSettings
from softeq.engine.loop import shard
from softeq.engine.segmentation import SegRecipe
from softeq.engine.trajectory import TrajectoryRecipe


def test_shards_union_is_the_single_process_order():
    single = shard(10, seed=3, epoch=2, rank=0, world=1, drop_last=False)
    assert sorted(single) == list(range(10))
    ranks = [shard(10, 3, 2, r, 2, False) for r in range(2)]
    assert [i for pair in zip(*ranks, strict=True) for i in pair] == single
    padded = [shard(9, 3, 2, r, 2, False) for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == 5  # padded like DistributedSampler
    cut = [shard(9, 3, 2, r, 2, True) for r in range(2)]
    assert len(cut[0]) == len(cut[1]) == 4
    assert shard(10, 3, 3, 0, 1, False) != single  # a new order every epoch


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (Recipe, {"epochs": -1}, r"--recipe\.epochs: must be >= 0"),  # 0: evaluate as is
        (SegRecipe, {"epochs": 0}, r"--recipe\.epochs: must be >= 1"),
        (Recipe, {"batch_size": 0}, r"--recipe\.batch_size: must be >= 1"),
        (Recipe, {"lr": 0.0}, r"--recipe\.lr: must be > 0"),
        (Recipe, {"lr": "5e-4"}, r"--recipe\.lr: expected float.*5\.0e-4"),
        (Recipe, {"amp": "fp16"}, r"--recipe\.amp: must be one of"),
        (Recipe, {"lr_typo": 1}, r"--recipe: unknown keys \['lr_typo'\]"),
        (SegRecipe, {"batch_size": 2.5}, r"--recipe\.batch_size: expected int"),
        (SegRecipe, {"head_lr": -1.0}, r"--recipe\.head_lr: must be > 0"),
        (SegRecipe, {"select_metric": "iou"}, r"--recipe\.select_metric: must be one of"),
        (TrajectoryRecipe, {"grad_accum": 0}, r"--recipe\.grad_accum: must be >= 1"),
        (TrajectoryRecipe, {"epochs": True}, r"--recipe\.epochs: expected int"),
        (EvalSettings, {"sweep": [0, "a"]}, r"--recipe\.sweep: expected"),
        (EvalSettings, {"eval_rot": 200}, r"--recipe\.eval_rot: must be <= 180"),
        (EvalSettings, {"batch_size": 0}, r"--recipe\.batch_size: must be >= 1"),
    ],
)
def test_settings_name_the_bad_key(cls, values, message):
    with pytest.raises(ValueError, match=message):
        cls.from_dict(values, "--recipe")


def test_one_default_sweep_and_per_task_batch():
    spec = EvalSettings.from_dict({"sweep": [0, 90]})
    assert spec.sweep == (0, 90) and spec.batch(16) == 16
    assert EvalSettings().sweep == DEFAULT_SWEEP and 0.0 in DEFAULT_SWEEP
    assert EvalSettings(batch_size=4).batch(256) == 4
    recipe = SegRecipe.from_dict({"amp": True, "grad_accum": 2, "batch_size": 8})
    assert recipe.bf16 and recipe.grad_accum == 2
    assert Recipe.from_dict({"amp": "bf16", "ema_decay": 0.99}).ema == 0.99


class _WeightPrior(torch.nn.Module):
    """A classifier whose ``auxiliary_loss`` is an L2 prior on its weight (as RPP's is)."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 * 32 * 32, 10)
        self.strength = strength

    def forward(self, x):
        return self.linear(x.flatten(1))

    def auxiliary_loss(self):
        return self.strength * self.linear.weight.square().sum()


def test_auxiliary_loss_enters_the_objective(tmp_path):
    from softeq.data.embedded import build_digits, load_split
    from softeq.engine.classification import train_classifier
    from softeq.engine.loop import auxiliary_loss

    assert auxiliary_loss(torch.nn.Linear(2, 2)) is None
    data = load_split(build_digits(tmp_path / "digits.safetensors"), "train")
    recipe = Recipe.from_dict({"epochs": 3, "batch_size": 64, "lr": 1e-2, "weight_decay": 0.0})
    norms, records = {}, {}
    for strength in (0.0, 10.0):
        torch.manual_seed(0)
        model = _WeightPrior(strength)
        prior = auxiliary_loss(model).item()
        assert prior == pytest.approx(strength * model.linear.weight.square().sum().item())
        history, _ = train_classifier(model, data, recipe, seed=0, input_size=32)
        norms[strength] = model.linear.weight.norm().item()
        records[strength] = history[-1]
    # the prior's term is reported apart, and included in the loss
    assert records[0.0]["auxiliary"] == 0.0
    assert 0.0 < records[10.0]["auxiliary"] < records[10.0]["loss"]
    assert norms[10.0] < 0.5 * norms[0.0]  # a strong prior pulls the weight towards zero
