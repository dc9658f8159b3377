"""The reference code's metric conventions beside softeq's (docs/conventions.md §1).

* ``combined_batches``: the per-batch geometric mean of clean and rotated top-1 accuracy,
  averaged over batches weighted by their sizes (reference ``main_imagenet.py:1653-1656`` at
  ashiq24/soft-equivariance 7f5a9e9).
* ``eq_error_reference``: the segmentation equivariance error of ``utils/consistency.py:430-529``
  (rotated logits, torchvision's bilinear rotation with fill 0, a nearest-rotated image of ones as
  the mask, per-batch mean over valid pixels + 1e-8), averaged over batches weighted by their
  images as ``train/seg_trainer.py:504-518`` does.

The expected values are computed here independently: by hand from the definitions, or with
``torchvision.transforms.functional.rotate`` one sample at a time and ``F.kl_div``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn
from torch.utils.data import TensorDataset

from softeq.engine.classification import evaluate_classifier
from softeq.engine.evaluation import EvalSettings
from softeq.engine.segmentation import evaluate_segmenter
from softeq.metrics.classification import ClassificationMeter
from softeq.metrics.segmentation import SegmentationMeter, reference_equivariance_error
from softeq.transforms import rotate_images, sample_angles

BILINEAR, NEAREST = TF.InterpolationMode.BILINEAR, TF.InterpolationMode.NEAREST


def _logits_hitting(targets: list[int], hits: list[bool], classes: int = 3) -> torch.Tensor:
    """Logits whose argmax is the target where ``hits`` holds and another class elsewhere."""
    logits = torch.zeros(len(targets), classes)
    for i, (t, hit) in enumerate(zip(targets, hits, strict=True)):
        logits[i, t if hit else (t + 1) % classes] = 5.0
    return logits


def test_combined_batches_is_the_per_batch_geometric_mean():
    meter = ClassificationMeter()
    # batch 1: 4 images, clean 4/4 right, rotated 1/4 right
    t1 = [0, 1, 2, 0]
    meter.update(
        _logits_hitting(t1, [True] * 4),
        _logits_hitting(t1, [True, False, False, False]),
        torch.tensor(t1),
    )
    # batch 2: 2 images, clean 1/2 right, rotated 2/2 right
    t2 = [2, 1]
    meter.update(
        _logits_hitting(t2, [True, False]), _logits_hitting(t2, [True, True]), torch.tensor(t2)
    )
    m = meter.compute()
    # by hand: per batch sqrt(1 * 1/4) = 1/2 and sqrt(1/2 * 1) = 1/sqrt(2), weighted 4 : 2
    per_batch = meter.combined_batches()
    assert per_batch == pytest.approx((4 * 0.5 + 2 / math.sqrt(2)) / 6, abs=1e-12)
    # over the split: acc 5/6, rot_acc 3/6
    assert m["combined"] == pytest.approx(math.sqrt(5 / 6 * 3 / 6), abs=1e-12)
    assert per_batch < m["combined"] - 0.07
    meter.reset()
    meter.update(_logits_hitting(t1, [True] * 4), _logits_hitting(t1, [True] * 4), torch.tensor(t1))
    assert meter.combined_batches() == 1.0


class _TinyClassifier(nn.Module):
    def __init__(self, size: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_evaluate_classifier_combined_batches_depends_on_the_batch():
    torch.manual_seed(0)
    model = _TinyClassifier()
    data = TensorDataset(torch.randn(10, 3, 8, 8), torch.randint(0, 4, (10,)))
    whole = evaluate_classifier(model, data, EvalSettings(sweep=(), batch_size=10), 1, 8)
    m = whole["metrics"]
    assert m["combined_batches"] == pytest.approx(m["combined"], abs=1e-12)  # one batch
    # batches of one image: sqrt(c_i * r_i) is 1 exactly when the image is right both ways
    single = evaluate_classifier(model, data, EvalSettings(sweep=(), batch_size=1), 1, 8)
    angles = sample_angles(10, 30.0, 1)
    with torch.no_grad():
        x, y = data.tensors
        clean = model(x).argmax(1) == y
        turned = model(rotate_images(x, angles)).argmax(1) == y
    both = float((clean & turned).double().mean())
    assert single["metrics"]["combined_batches"] == pytest.approx(both, abs=1e-12)
    assert single["metrics"]["combined"] == pytest.approx(m["combined"], abs=1e-12)


def _reference_by_loop(
    logits: torch.Tensor, rot_logits: torch.Tensor, angles: list[float], rotate_probs=False
) -> float:
    """The reference's computation, sample by sample with torchvision (``rotate_probs``: the
    same with the class probabilities rotated instead of the logits, for contrast)."""
    turned, valid = [], []
    for i, angle in enumerate(angles):
        source = F.softmax(logits[i], dim=0) if rotate_probs else logits[i]
        turned.append(TF.rotate(source, angle, interpolation=BILINEAR, fill=0.0))
        ones = torch.ones(1, *logits.shape[-2:])
        valid.append(TF.rotate(ones, angle, interpolation=NEAREST, fill=0.0)[0] > 0.5)
    turned_t, valid_t = torch.stack(turned), torch.stack(valid)
    p = turned_t if rotate_probs else F.softmax(turned_t, dim=1)
    kl = F.kl_div(F.log_softmax(rot_logits, dim=1), p, reduction="none").sum(1)
    return float((kl * valid_t).sum() / (valid_t.sum() + 1e-8))


def test_reference_error_matches_torchvision_loop():
    torch.manual_seed(1)
    logits, rot_logits = torch.randn(3, 5, 9, 13) * 2, torch.randn(3, 5, 9, 13) * 2
    angles = [17.3, -28.1, 4.0]
    got = float(reference_equivariance_error(logits, rot_logits, torch.tensor(angles)))
    assert got == pytest.approx(_reference_by_loop(logits, rot_logits, angles), rel=1e-5)


def test_rotating_logits_and_probabilities_differ():
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 12, 12) * 3
    rot_logits = rotate_images(logits, [20.0, -25.0]) + 0.3 * torch.randn(2, 4, 12, 12)
    angles = [20.0, -25.0]
    on_logits = _reference_by_loop(logits, rot_logits, angles)
    on_probs = _reference_by_loop(logits, rot_logits, angles, rotate_probs=True)
    got = float(reference_equivariance_error(logits, rot_logits, torch.tensor(angles)))
    assert got == pytest.approx(on_logits, rel=1e-5)
    assert abs(on_logits - on_probs) > 0.05 * on_probs
    # an exact quarter turn of a square map: both conventions read no error
    exact = torch.rot90(logits, 1, (2, 3))
    assert float(reference_equivariance_error(logits, exact, 90.0)) < 1e-5


def test_meter_averages_batches_by_their_images():
    torch.manual_seed(3)
    meter = SegmentationMeter(4)
    expected, sizes = [], [3, 1]
    for n, angles in zip(sizes, ([10.0, -20.0, 29.0], [-5.5]), strict=True):
        logits, rot_logits = torch.randn(n, 4, 10, 10), torch.randn(n, 4, 10, 10)
        target = torch.randint(0, 4, (n, 10, 10))
        meter.update(logits, target, rot_logits, target, torch.tensor(angles))
        expected.append(_reference_by_loop(logits, rot_logits, angles))
    m = meter.compute()
    want = sum(n * e for n, e in zip(sizes, expected, strict=True)) / sum(sizes)
    assert m["eq_error_reference"] == pytest.approx(want, rel=1e-5)
    assert m["eq_error"] != pytest.approx(m["eq_error_reference"], rel=1e-3)


class _TinySegmenter(nn.Module):
    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_evaluate_segmenter_reports_the_reference_error():
    torch.manual_seed(4)
    model = _TinySegmenter().eval()
    images, masks = torch.randn(5, 3, 12, 12), torch.randint(0, 3, (5, 12, 12))
    data = TensorDataset(images, masks)
    spec = EvalSettings(eval_rot=30.0, sweep=(), batch_size=2)
    m = evaluate_segmenter(model, data, spec, seed=7)["metrics"]
    angles = sample_angles(5, 30.0, 7)
    total = 0.0
    with torch.no_grad():
        for lo in range(0, 5, 2):
            a = angles[lo : lo + 2]
            clean, turned = model(images[lo : lo + 2]), model(rotate_images(images[lo : lo + 2], a))
            total += len(a) * _reference_by_loop(clean, turned, a.tolist())
    assert m["eq_error_reference"] == pytest.approx(total / 5, rel=1e-5)
    assert "eq_error" in m


def test_tables_carry_the_reference_columns_where_present():
    import pandas as pd

    from softeq.results.columns import display_values, shown_columns

    summary = pd.DataFrame(
        {"combined_mean": [0.6455], "combined_batches_mean": [0.569], "acc_mean": [0.8]}
    )
    values = display_values("classification", summary, None)
    assert values.loc[0, "combined_batches"] == pytest.approx(56.9)
    names = [c.name for c in shown_columns("classification", values)]
    assert names[:4] == ["acc", "rot_acc", "combined", "inv_error"]
    assert "combined_batches" in names
    old = display_values("classification", summary.drop(columns="combined_batches_mean"), None)
    assert "combined_batches" not in [c.name for c in shown_columns("classification", old)]
    seg = display_values("segmentation", pd.DataFrame({"eq_error_reference_mean": [0.1]}), None)
    assert seg.loc[0, "eq_error_reference"] == pytest.approx(10.0)
    assert "eq_error_reference" in [c.name for c in shown_columns("segmentation", seg)]


def test_reported_numbers_sit_in_the_reference_columns():
    """Table 1's reported combined score is the reference's per-batch one (every reported value
    is below sqrt(acc * rot_acc), as the per-batch mean must be); Table 2's reported error is the
    reference's (the only one its segmentation code computes)."""
    from softeq.results.reported import read_reported

    numbers = read_reported()
    metrics = {(n.task, n.metric) for n in numbers}
    assert ("classification", "combined") not in metrics
    assert ("segmentation", "eq_error") not in metrics
    by_row: dict[tuple[str, str], dict[str, float]] = {}
    for n in numbers:
        if n.task == "classification" and n.dataset == "imagenet":  # Table 1
            by_row.setdefault((n.backbone, n.setting), {})[n.metric] = n.value
    assert len(by_row) == 7
    for values in by_row.values():
        assert values["combined_batches"] < math.sqrt(values["acc"] * values["rot_acc"])


def test_damped_rotation_is_torchvisions_rotate_with_a_fill():
    """The reference rotates with ``TF.rotate(img, angle, BILINEAR, fill=0.0)``
    (utils/consistency.py:236-241 at 7f5a9e9): the border is damped twice."""
    torch.manual_seed(0)
    x = torch.randn(3, 3, 20, 20)
    angles = [17.0, -30.0, 90.0]
    ours = rotate_images(x, angles, damp_border=True)
    for i, angle in enumerate(angles):
        expected = TF.rotate(x[i], angle, BILINEAR, fill=0.0)
        torch.testing.assert_close(ours[i], expected, atol=1e-4, rtol=0)
    single = rotate_images(x, angles)
    assert (single - ours).abs().max() > 1e-2  # softeq's default pads once
    with pytest.raises(ValueError, match="bilinear"):
        rotate_images(x, angles, mode="nearest", damp_border=True)


def test_damp_border_reaches_the_evaluations():
    from softeq.engine.trajectory import evaluate_trajectory

    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    data = TensorDataset(x, y)
    plain = evaluate_classifier(model, data, EvalSettings(sweep=(45.0,)), 0, 16)
    damped = evaluate_classifier(model, data, EvalSettings(sweep=(45.0,), damp_border=True), 0, 16)
    assert plain["metrics"]["acc"] == damped["metrics"]["acc"]  # the clean pass is the same
    assert plain["metrics"]["inv_error"] != damped["metrics"]["inv_error"]
    with pytest.raises(ValueError, match="not to trajectories"):
        evaluate_trajectory(model, [None], EvalSettings(damp_border=True), 0)
