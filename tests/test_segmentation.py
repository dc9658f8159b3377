"""PASCAL VOC segmentation: metrics against mmseg and torchmetrics, VOC / SBD loaders on
fixtures, the embedded set, exact C4 equivariance of a strict ViT segmenter, and both SegFormer
backends through soften / train / evaluate."""

from __future__ import annotations

import hashlib
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import softeq
from softeq.data import voc, voc_fetch
from softeq.data.embedded_voc import EMBEDDED_VOC_CLASSES, build_embedded_voc
from softeq.engine.evaluation import EvalSettings as SegEvalSpec
from softeq.engine.segmentation import (
    SegRecipe,
    evaluate_segmenter,
    param_groups,
    train_segmenter,
)
from softeq.layers import iter_soft
from softeq.metrics.segmentation import (
    SegmentationMeter,
    confusion_matrix,
    iou_from_confusion,
    mean_iou,
    pixel_equivariance_error,
)
from softeq.models.segmentation import build_segmenter

NUM_CLASSES = 7


def _random_labels(seed: int, n: int = 6, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and targets with void pixels, a class only predicted (IoU 0), and a class
    absent from both (excluded from the mean)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 5, (n, size, size), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.15] = 255
    pred = torch.randint(0, 5, (n, size, size), generator=g)
    agree = torch.rand(target.shape, generator=g) < 0.5
    pred = torch.where(agree & (target != 255), target, pred)
    pred[torch.rand(pred.shape, generator=g) < 0.02] = 5  # class 5: predicted, never labelled
    return pred, target  # class 6: absent everywhere


# ----------------------------------------------------------------------------- metrics


def test_miou_matches_torchmetrics():
    torchmetrics = pytest.importorskip("torchmetrics")
    pred, target = _random_labels(0)
    jaccard = torchmetrics.classification.MulticlassJaccardIndex(
        num_classes=NUM_CLASSES, ignore_index=255, average="macro"
    )
    per_class = torchmetrics.classification.MulticlassJaccardIndex(
        num_classes=NUM_CLASSES, ignore_index=255, average="none"
    )
    cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    for p, t in zip(pred.split(2), target.split(2), strict=True):
        jaccard.update(p, t)
        per_class.update(p, t)
        cm += confusion_matrix(p, t, NUM_CLASSES)
    ours = iou_from_confusion(cm)
    assert torch.isnan(ours[6]) and ours[5] == 0.0
    assert abs(mean_iou(cm) - float(jaccard.compute())) < 1e-6
    present = ~torch.isnan(ours)
    assert torch.allclose(ours[present].float(), per_class.compute()[present], atol=1e-6)


def test_miou_matches_mmseg_iou_metric():
    pytest.importorskip("mmseg")
    from softeq.models.segformer_mmseg import import_mmseg

    import_mmseg()
    from mmseg.evaluation import IoUMetric

    pred, target = _random_labels(1)
    metric = IoUMetric(ignore_index=255, iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": [f"c{i}" for i in range(NUM_CLASSES)]}
    samples = [
        {"pred_sem_seg": {"data": p[None]}, "gt_sem_seg": {"data": t[None]}}
        for p, t in zip(pred, target, strict=True)
    ]
    metric.process({}, samples)
    areas = [sum(r[i] for r in metric.results) for i in range(4)]  # torch, as mmseg sums
    mm_iou = IoUMetric.total_area_to_metrics(*areas, metrics=["mIoU"])["IoU"]
    meter = SegmentationMeter(NUM_CLASSES)
    for p, t in zip(pred.split(4), target.split(4), strict=True):
        meter.update(torch.nn.functional.one_hot(p, NUM_CLASSES).permute(0, 3, 1, 2).float(), t)
    ours = np.array(meter.per_class_iou())
    np.testing.assert_allclose(ours, mm_iou, atol=1e-6)  # NaN where absent, in both
    assert abs(meter.compute()["miou"] - np.nanmean(mm_iou)) < 1e-6
    summary = metric.compute_metrics(metric.results)  # percent, rounded to 2 decimals
    assert summary["mIoU"] == pytest.approx(round(meter.compute()["miou"] * 100, 2))


def test_confusion_ignores_void_and_rejects_bad_labels():
    pred = torch.tensor([[0, 1, 2, 2]])
    target = torch.tensor([[0, 255, 2, 1]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.sum() == 3 and cm[0, 0] == 1 and cm[2, 2] == 1 and cm[1, 2] == 1
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(pred, torch.tensor([[0, 7, 2, 1]]), 3)


def test_equivariance_error_zero_for_equivariant_map_and_inside_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 16, 16, generator=g)
    kl, inside = pixel_equivariance_error(logits, torch.rot90(logits, 1, (2, 3)), 90.0)
    assert inside.all() and kl.max() < 1e-6
    kl, inside = pixel_equivariance_error(logits, logits, 30.0)
    assert not inside[:, 0, 0].any() and inside[:, 8, 8].all()
    assert kl[inside].mean() > 1e-3
    meter = SegmentationMeter(4)
    target = torch.randint(0, 4, (2, 16, 16), generator=g)
    meter.update(logits, target, logits, target, 0.0)
    scores = meter.compute()
    assert scores["eq_error"] < 1e-6 and scores["combined"] == pytest.approx(scores["miou"])


# ----------------------------------------------------------------------------- VOC data


def _write_voc(root, train_ids, val_ids, size=(36, 44), seed=0):
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True)
    for image_id in [*train_ids, *val_ids]:
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg")
        mask = rng.integers(0, 4, size).astype(np.uint8)
        mask[:, :2] = 255
        voc.write_mask(mask, root / "SegmentationClass" / f"{image_id}.png")
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(train_ids) + "\n")
    (lists / "val.txt").write_text("\n".join(val_ids) + "\n")
    (lists / "trainval.txt").write_text("\n".join([*train_ids, *val_ids]) + "\n")


TRAIN_IDS = [f"2007_{i:06d}" for i in range(10)]
VAL_IDS = [f"2008_{i:06d}" for i in range(4)]


def test_voc_loader_splits_and_samples(tmp_path):
    _write_voc(tmp_path, TRAIN_IDS, VAL_IDS)
    held = voc.split_ids(tmp_path, "val")
    train = voc.split_ids(tmp_path, "train")
    assert (
        len(held) == 1 and set(held) | set(train) == set(TRAIN_IDS) and not set(held) & set(train)
    )
    assert held == voc.heldout_ids(TRAIN_IDS)  # fixed seed: the same on every call
    assert voc.split_ids(tmp_path, "test") == VAL_IDS
    test = voc.VOCSegmentation(tmp_path, "test", image_size=32)
    image, mask = test[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    assert image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1
    assert mask.dtype == torch.int64 and set(mask.unique().tolist()) <= {0, 1, 2, 3, 255}
    raw = voc.read_mask(tmp_path / "SegmentationClass" / f"{VAL_IDS[0]}.png")
    assert raw.shape == (36, 44) and (raw[:, :2] == 255).all()
    with Image.open(tmp_path / "SegmentationClass" / f"{VAL_IDS[0]}.png") as png:
        assert png.mode == "P"

    ds = voc.VOCSegmentation(tmp_path, "train", image_size=32, seed=3)
    assert ds.train and len(ds) == 9
    a, b = ds[0], ds[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # same (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], a[0])
    assert a[0].shape == (3, 32, 32) and a[1].shape == (32, 32)


def test_train_augment_pads_black_and_void():
    image = torch.rand(3, 20, 20) * 0.5 + 0.5  # no black pixel of its own
    mask = torch.ones(20, 20, dtype=torch.long)
    augment = voc.Augment(
        scale=(0.5, 0.5), flip=0.0, rotate_degrees=0.0, brightness=0.0, contrast=0.0, saturation=0.0
    )
    g = torch.Generator().manual_seed(0)
    out_image, out_mask = voc.train_augment(image, mask, 16, g, augment)
    assert out_image.shape == (3, 16, 16)
    pad = out_mask == 255
    assert pad.sum() == 16 * 16 - 10 * 10 and (out_image[:, pad] == 0).all()
    assert (out_mask[~pad] == 1).all()
    rotated = voc.Augment(scale=(1.0, 1.0), rotate_degrees=10.0, rotate_p=1.0)
    voids = []
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        _, rot_mask = voc.train_augment(image, mask, 20, g, rotated)
        assert set(rot_mask.unique().tolist()) <= {1, 255}
        voids.append(int((rot_mask == 255).sum()))
    assert max(voids) > 0  # rotated-in corners are void


def test_read_mask_rejects_rgb_and_md5(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette"):
        voc.read_mask(tmp_path / "rgb.png")
    path = tmp_path / "VOCtrainval_11-May-2012.tar"
    path.write_bytes(b"not the archive")
    with pytest.raises(ValueError, match=r"VOCtrainval_11-May-2012\.tar"):
        voc_fetch.verify_md5(path, voc_fetch.VOC_MD5)
    assert voc_fetch.verify_md5(path, hashlib.md5(b"not the archive").hexdigest()) == path
    with pytest.raises(FileNotFoundError, match=r"benchmark\.tgz"):
        voc_fetch.verify_md5(tmp_path / "benchmark.tgz", voc_fetch.SBD_MD5)


def test_build_train_aug_ids_and_masks(tmp_path):
    from scipy.io import savemat

    voc_root, sbd_root, out = tmp_path / "voc", tmp_path / "sbd", tmp_path / "aug"
    extra = ["2009_000001", "2009_000002", "2009_000003"]
    _write_voc(voc_root, TRAIN_IDS, VAL_IDS)
    rng = np.random.default_rng(1)
    for image_id in extra:  # SBD images live in VOC's JPEGImages
        Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(
            voc_root / "JPEGImages" / f"{image_id}.jpg"
        )
    cls = sbd_root / "benchmark_RELEASE" / "dataset" / "cls"
    cls.mkdir(parents=True)
    sbd_train = [TRAIN_IDS[0], extra[0], VAL_IDS[0], extra[1]]
    sbd_val = [extra[2], VAL_IDS[1]]
    sbd_masks = {}
    for image_id in sbd_train + sbd_val:
        seg = rng.integers(0, 21, (30, 30)).astype(np.uint8)
        sbd_masks[image_id] = seg
        savemat(
            cls / f"{image_id}.mat",
            {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.unique(seg)}},
        )
    (cls.parent / "train.txt").write_text("\n".join(sbd_train) + "\n")
    (cls.parent / "val.txt").write_text("\n".join(sbd_val) + "\n")

    ids = voc_fetch.build_train_aug(voc_root, sbd_root, out)
    assert ids == sorted(set(TRAIN_IDS) | set(extra))  # VOC val ids removed, duplicates merged
    assert voc.read_ids(out / "ImageSets" / "Segmentation" / "train_aug.txt") == ids
    np.testing.assert_array_equal(
        voc.read_mask(out / "SegmentationClass" / f"{extra[2]}.png"), sbd_masks[extra[2]]
    )  # converted from SBD
    np.testing.assert_array_equal(  # VOC's own mask wins where it has one
        voc.read_mask(out / "SegmentationClass" / f"{TRAIN_IDS[0]}.png"),
        voc.read_mask(voc_root / "SegmentationClass" / f"{TRAIN_IDS[0]}.png"),
    )
    train = voc.VOCSegmentation(out, "train", 24, protocol="train_aug")
    held = voc.split_ids(out, "val", "train_aug")
    assert len(train) == len(ids) - 1 and held == voc.split_ids(voc_root, "val")
    assert len(voc.VOCSegmentation(out, "test", 24, protocol="train_aug")) == len(VAL_IDS)
    with pytest.raises(ValueError, match="expected 10582"):
        voc_fetch.build_train_aug(
            voc_root, sbd_root, tmp_path / "aug2", expected=voc_fetch.TRAIN_AUG_SIZE
        )


def test_embedded_voc_is_deterministic_and_loads(tmp_path):
    a = build_embedded_voc(tmp_path / "a", n_train=10, n_val=4, seed=0)
    b = build_embedded_voc(tmp_path / "b", n_train=10, n_val=4, seed=0)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * 14 + 4
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert build_embedded_voc(a, n_train=10, n_val=4, seed=0) == a  # reused
    with pytest.raises(ValueError, match="built with"):
        build_embedded_voc(a, n_train=10, n_val=4, seed=1)
    masks = np.stack([voc.read_mask(p) for p in sorted((a / "SegmentationClass").glob("*.png"))])
    values = set(np.unique(masks).tolist())
    assert 0 in values and 255 in values and values <= set(range(len(EMBEDDED_VOC_CLASSES))) | {255}
    assert len(values - {0, 255}) >= 5
    test = voc.VOCSegmentation(a, "test", image_size=64)
    assert len(test) == 4 and test[0][0].shape == (3, 64, 64)
    assert len(voc.VOCSegmentation(a, "train", image_size=64)) == 9


# ----------------------------------------------------------------------------- models


def _tiny_vit(num_classes: int = 5, image_size: int = 32):
    return build_segmenter(
        "vit",
        num_classes,
        image_size,
        backbone="vit_tiny_patch16_224",
        backbone_kwargs={"depth": 2, "patch_size": 8, "embed_dim": 48, "num_heads": 2},
    )


def test_strict_vit_segmenter_is_exactly_c4_equivariant():
    torch.manual_seed(0)
    model = softeq.soften(_tiny_vit(), "C4", 0.0).eval()
    plain = _tiny_vit().eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for k in (1, 2, 3):
            turned = model(torch.rot90(x, k, (2, 3)))
            assert torch.allclose(turned, torch.rot90(model(x), k, (2, 3)), atol=1e-5)
        assert model(x).shape == (2, 5, 32, 32)
        gap = (plain(torch.rot90(x, 1, (2, 3))) - torch.rot90(plain(x), 1, (2, 3))).abs().max()
    assert gap > 1e-3  # the unsoftened model is not equivariant
    with pytest.raises(ValueError, match="multiple of the patch size"):
        build_segmenter(
            "dinov2", 3, 512, backbone_kwargs={"depth": 1, "embed_dim": 48, "num_heads": 2}
        )


def test_crop_remainder_drops_the_last_pixels_as_the_reference():
    """The reference's DINOv2 at 512 px: the patch conv covers 36 x 14 = 504 px, the rest is
    never seen, and the logits are upsampled to the full size (docs/fidelity.md)."""
    torch.manual_seed(0)
    kwargs = {"depth": 1, "embed_dim": 48, "num_heads": 2, "patch_size": 8}
    model = build_segmenter("dinov2", 3, 36, backbone_kwargs=kwargs, crop_remainder=True).eval()
    assert model.backbone.patch_embed.grid_size == (4, 4)
    x = torch.rand(1, 3, 36, 36)
    y = x.clone()
    y[..., 32:, :] = torch.rand_like(y[..., 32:, :])  # the 4 cropped rows
    y[..., :, 32:] = torch.rand_like(y[..., :, 32:])
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 3, 36, 36)
        torch.testing.assert_close(model(y), out, atol=0, rtol=0)
        z = x.clone()
        z[..., :8, :8] = 0  # a seen pixel block changes the output
        assert not torch.equal(model(z), out)


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    root = build_embedded_voc(tmp_path_factory.mktemp("evoc") / "voc", n_train=6, n_val=2, seed=0)
    train = voc.VOCSegmentation(root, "train", image_size=64)
    train.ids = train.ids[:4]
    return train, voc.VOCSegmentation(root, "test", image_size=64)


def _train_and_evaluate(model, tiny_voc):
    train, test = tiny_voc
    recipe = SegRecipe(epochs=1, batch_size=4, head_lr=1e-3, backbone_lr=1e-4, warmup_iters=1)
    groups = {g["name"] for g in param_groups(model, recipe)}
    assert groups == {"head", "backbone", "backbone_no_decay"}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    history = train_segmenter(model, train, recipe, seed=0)
    assert math.isfinite(history[0]["loss"])
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert any("original" in n for n in changed)  # the raw weights under the projector train
    result = evaluate_segmenter(model, test, SegEvalSpec(sweep=(0.0, 90.0), batch_size=2), seed=0)
    metrics = result["metrics"]
    assert set(metrics) >= {"miou", "rot_miou", "combined", "eq_error", "pixel_acc"}
    assert [r["angle"] for r in result["angle_sweep"]] == [0.0, 90.0]
    assert result["angle_sweep"][0]["eq_error"] < 1e-6
    assert all(math.isfinite(v) for v in metrics.values())


def _soft_convs(model) -> int:
    return sum(1 for s in iter_soft(model) if s.parametrization.kind == "kernel")


def test_hf_segformer_softens_trains_and_evaluates(tiny_voc):
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = build_segmenter("segformer", len(EMBEDDED_VOC_CLASSES), 64)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(3.72e6, rel=0.01)
    softeq.soften(model, "C4", 0.5)
    assert _soft_convs(model) == 18  # 4 patch embeddings, 6 reductions, 8 depthwise convs
    _train_and_evaluate(model, tiny_voc)


def test_hf_segformer_pretrained_offline_is_a_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    from softeq.models.segmentation import PretrainedUnavailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(PretrainedUnavailable, match="segformer-b0-finetuned-ade"):
        build_segmenter("segformer", 21, 64, pretrained="nvidia/segformer-b0-finetuned-ade-512-512")


def test_mmseg_segformer_without_compiled_mmcv(tiny_voc):
    pytest.importorskip("mmseg")
    pytest.importorskip("mmengine")
    torch.manual_seed(0)
    model = build_segmenter("segformer_mmseg", len(EMBEDDED_VOC_CLASSES), 64)
    ext = sys.modules["mmcv._ext"]
    if getattr(ext, "__softeq_stand_in__", False):  # mmcv-lite: the stand-in is in use
        with pytest.raises(NotImplementedError, match="compiled ops"):
            ext.nms(None)
    assert not any("SyncBatchNorm" in type(m).__name__ for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(3.72e6, rel=0.01)
    softeq.soften(model, "C4", 0.5)
    assert _soft_convs(model) == 18
    _train_and_evaluate(model, tiny_voc)


def test_training_resumes_to_the_same_weights(tiny_voc, tmp_path):
    train, _ = tiny_voc
    recipe = SegRecipe(epochs=2, batch_size=2, head_lr=1e-3, backbone_lr=1e-4, warmup_iters=1)
    torch.manual_seed(0)
    straight = softeq.soften(_tiny_vit(11, 64), "C4", 0.5)
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    history = train_segmenter(straight, train, recipe, seed=1)
    resumed = softeq.soften(_tiny_vit(11, 64), "C4", 0.5)
    resumed.load_state_dict(initial)
    ckpt = tmp_path / "last.pt"
    train_segmenter(resumed, train, recipe, seed=1, checkpoint=ckpt, stop_after_epochs=1)
    again = softeq.soften(_tiny_vit(11, 64), "C4", 0.5)
    resumed_history = train_segmenter(again, train, recipe, seed=1, checkpoint=ckpt)
    assert resumed_history == history
    for key, value in straight.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_decay_all_decays_norms_and_biases_too():
    model = build_segmenter(
        "vit", 3, 32, backbone_kwargs={"depth": 1, "embed_dim": 48, "num_heads": 2}
    )
    for decay_all, expected in ((False, 0.0), (True, 0.05)):
        recipe = SegRecipe(weight_decay=0.05, decay_all=decay_all)
        groups = {g["name"]: g["weight_decay"] for g in param_groups(model, recipe)}
        assert groups == {"head": 0.05, "backbone": 0.05, "backbone_no_decay": expected}
