"""Metrics: rotation conventions, reproducible angles, KL and classification against hand values."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from softeq.metrics.classification import ClassificationMeter, topk_correct
from softeq.metrics.equivariance import kl_divergence
from softeq.transforms import inside_mask, rotate_images, sample_angles

# ---------------------------------------------------------------- angles


def test_angles_reproducible_in_range_and_seed_dependent():
    state = torch.get_rng_state()
    a = sample_angles(1000, 30.0, seed=7)
    b = sample_angles(1000, 30.0, seed=7)
    c = sample_angles(1000, 30.0, seed=8)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    assert a.shape == (1000,)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.abs().max() <= 30.0
    assert a.min() < -25 and a.max() > 25  # spans the range, both signs
    assert torch.equal(sample_angles(5, 0.0, seed=1), torch.zeros(5))


def test_angles_reject_bad_arguments():
    with pytest.raises(ValueError, match="max_degrees"):
        sample_angles(3, -1.0, seed=0)
    with pytest.raises(ValueError, match="n must"):
        sample_angles(-1, 10.0, seed=0)


# ---------------------------------------------------------------- rotation


@pytest.mark.parametrize("size", [7, 8])
def test_rotate_90_equals_rot90(size):
    x = torch.rand(3, 2, size, size, generator=torch.Generator().manual_seed(0))
    for mode in ("bilinear", "nearest"):
        torch.testing.assert_close(
            rotate_images(x, 90.0, mode=mode), torch.rot90(x, 1, (2, 3)), atol=1e-5, rtol=0
        )
        turns = [-1, 2, 3]  # -90, 180, 270 degrees, one per sample
        want = torch.stack([torch.rot90(img, t, (1, 2)) for img, t in zip(x, turns, strict=True)])
        got = rotate_images(x, [90.0 * t for t in turns], mode=mode)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_rotate_zero_is_identity_and_angles_are_per_sample():
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(rotate_images(x, 0.0), x, atol=1e-6, rtol=0)
    out = rotate_images(x, torch.tensor([0.0, 90.0]))
    torch.testing.assert_close(out[0], x[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], torch.rot90(x[1], 1, (1, 2)), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="angles"):
        rotate_images(x, [1.0, 2.0, 3.0])


def test_rotate_is_counter_clockwise_on_a_marker():
    # a bright pixel on the right of the centre moves to the top for +90 (displayed image)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 4] = 1.0
    out = rotate_images(x, 90.0)
    assert out[0, 0, 0, 2] == pytest.approx(1.0, abs=1e-5)


def test_mask_fill_outside_frame_and_dtype_kept():
    mask = torch.randint(0, 5, (2, 1, 9, 9), generator=torch.Generator().manual_seed(2))
    out = rotate_images(mask, [45.0, 0.0], mode="nearest", fill=255)
    assert out.dtype == mask.dtype
    assert (out[0, 0, 0, 0] == 255) and (out[0, 0, -1, -1] == 255)  # corners leave the frame
    assert set(out[0].unique().tolist()) <= {0, 1, 2, 3, 4, 255}  # nearest: no blended labels
    assert torch.equal(out[1], mask[1])  # angle 0: nothing filled
    assert (out[0, 0, 4, 4] == mask[0, 0, 4, 4]).item()  # centre is fixed


def test_bilinear_fill_equals_padding_with_fill():
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    # rotating (x - c) with fill 0, then adding c, is rotating x with fill c
    c = 0.7
    torch.testing.assert_close(
        rotate_images(x, 30.0, fill=c), rotate_images(x - c, 30.0) + c, atol=1e-6, rtol=0
    )


def test_non_square_rotation_by_180_is_exact():
    x = torch.rand(1, 2, 5, 8, generator=torch.Generator().manual_seed(4))
    want = torch.rot90(x, 2, (2, 3))
    torch.testing.assert_close(rotate_images(x, 180.0), want, atol=1e-5, rtol=0)


def test_inside_mask():
    m0 = inside_mask((2, 3, 8, 8), 0.0)
    assert m0.shape == (2, 1, 8, 8) and m0.dtype == torch.bool
    assert m0.all()
    assert inside_mask((1, 3, 7, 7), 90.0).all()
    m45 = inside_mask((1, 3, 16, 16), 45.0)[0, 0]
    assert not m45[0, 0] and not m45[0, -1] and not m45[-1, 0] and not m45[-1, -1]
    assert m45[8, 8] and m45[4:12, 4:12].all()
    # inside pixels are exactly where bilinear rotation of ones stays 1
    ones = rotate_images(torch.ones(1, 1, 16, 16), 45.0)[0, 0]
    assert torch.all(ones[m45] > 1 - 1e-5)
    assert torch.all(ones[~m45] < 1 - 1e-5)


# ---------------------------------------------------------------- KL


def test_kl_matches_scipy_and_hand_values():
    p = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, -1.0, 0.5]], dtype=torch.float64)
    q = torch.tensor([[3.0, 2.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 4.0]], dtype=torch.float64)
    got = kl_divergence(p, q)
    sp, sq = torch.softmax(p, 1).numpy(), torch.softmax(q, 1).numpy()
    want = [entropy(sp[i], sq[i]) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    assert got[1] == 0.0
    # hand value: p = (1/2, 1/2), q = (e/(1+e), 1/(1+e)) from logits (0, 0) and (1, 0)
    hand = 0.5 * math.log(0.5 / (math.e / (1 + math.e))) + 0.5 * math.log(0.5 / (1 / (1 + math.e)))
    two = kl_divergence(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert two.item() == pytest.approx(hand, rel=1e-6)


def test_kl_is_stable_and_per_pixel():
    big = torch.tensor([[1000.0, 0.0], [-1000.0, 0.0]])
    out = kl_divergence(big, big.flip(1))
    assert torch.isfinite(out).all() and (out > 900).all()
    # p with a zero-probability class contributes nothing from that class
    assert kl_divergence(torch.tensor([[0.0, -math.inf]]), torch.tensor([[0.0, 0.0]])).item() == (
        pytest.approx(math.log(2), rel=1e-6)
    )
    maps = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(5))
    assert kl_divergence(maps, maps.roll(1, dims=1)).shape == (2, 3, 5)


# ---------------------------------------------------------------- classification


def test_topk_correct_by_hand():
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    targets = torch.tensor([1, 2, 1, 2])
    # top-1 picks 1, 0, 2, 0 -> one hit; top-2 sets {1,2}, {0,1 or 2}, {2,1}, {0,1} -> 2 or 3 hits
    assert topk_correct(logits, targets, 1) == 1
    logits[1] = torch.tensor([0.9, 0.02, 0.08])  # make the top-2 unambiguous: {0, 2}
    assert topk_correct(logits, targets, 2) == 3
    assert topk_correct(logits, targets, 3) == 4
    assert topk_correct(logits, targets, 5) == 4  # k clamped to 3 classes
    assert topk_correct(logits[:0], targets[:0], 1) == 0


def test_classification_meter_hand_computed():
    meter = ClassificationMeter()
    # three classes, so top-5 clamps to all three: always correct
    clean = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1, 2, 1])  # clean top-1: 3 of 4
    rot = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
    # rotated top-1: 2 of 4; only sample 1 changed its logits
    meter.update(clean[:2], rot[:2], targets[:2])
    meter.update(clean[2:], rot[2:], targets[2:])
    out = meter.compute()
    assert set(out) == {"acc", "top5", "rot_acc", "rot_top5", "combined", "inv_error"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["acc"] == 0.75 and out["rot_acc"] == 0.5
    assert out["top5"] == 1.0 and out["rot_top5"] == 1.0
    assert out["combined"] == pytest.approx(math.sqrt(0.75 * 0.5))
    e2 = math.exp(2.0)
    p = np.array([1.0, e2, 1.0]) / (e2 + 2)
    q = np.array([e2, 1.0, 1.0]) / (e2 + 2)
    assert out["inv_error"] == pytest.approx(entropy(p, q) / 4, rel=1e-6)
    assert meter.count == 4
    meter.reset()
    with pytest.raises(ValueError, match="before any update"):
        meter.compute()


def test_meter_top5_with_many_classes_and_perfect_invariance():
    logits = torch.arange(10.0).repeat(2, 1)  # ranking 9, 8, 7, 6, 5, ...
    targets = torch.tensor([5, 4])  # 5 is in the top-5, 4 is not
    meter = ClassificationMeter()
    meter.update(logits, logits.clone(), targets)
    out = meter.compute()
    assert out["acc"] == 0.0 and out["top5"] == 0.5 and out["rot_top5"] == 0.5
    assert out["inv_error"] == 0.0 and out["combined"] == 0.0
