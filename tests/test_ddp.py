"""Data-parallel training: 2 processes (gloo, CPU) end with the weights of 1 process that sees
the same global batches, to 1e-5 (only the order of float reductions differs), for the three
tasks of the one training loop."""

import os
import socket

import torch
import torch.multiprocessing as mp
from torch.utils.data import Subset, TensorDataset

import softeq
from softeq.engine.classification import Recipe, train_classifier
from softeq.engine.segmentation import SegRecipe, train_segmenter
from softeq.engine.trajectory import TrajectoryRecipe, train_trajectory

RECIPE = Recipe(
    epochs=2,
    batch_size=16,
    lr=3e-3,
    warmup_epochs=0.5,
    label_smoothing=0.1,
    grad_accum=2,
    layer_decay=0.8,
    ema_decay=0.9,
)
SEG_RECIPE = SegRecipe(
    epochs=2, batch_size=4, grad_accum=2, head_lr=3e-3, backbone_lr=1e-3, warmup_iters=1
)
TRAJ_RECIPE = TrajectoryRecipe(epochs=2, batch_size=8, grad_accum=2, lr=5e-3, rotate_degrees=30)


def _data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.randn(40, 3, 16, 16, generator=gen), torch.randint(0, 4, (40,), generator=gen)
    )


def _model() -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=16,
        patch_size=4,
        embed_dim=24,
        depth=2,
        num_heads=2,
        num_classes=4,
    )
    return softeq.soften(model, "C4", 0.5)


def _classification(root: str) -> dict:
    model = _model()
    _, ema = train_classifier(model, _data(), RECIPE, seed=5, input_size=16, num_classes=4)
    return {"model": model.state_dict(), "ema": ema.state_dict()}


def _segmenter() -> torch.nn.Module:
    from softeq.models.segmentation import build_segmenter

    torch.manual_seed(0)
    model = build_segmenter(
        "vit",
        11,
        32,
        backbone="vit_tiny_patch16_224",
        backbone_kwargs={"depth": 1, "patch_size": 8, "embed_dim": 24, "num_heads": 2},
    )
    return softeq.soften(model, "C4", 0.5)


def _segmentation(root: str) -> dict:
    from softeq.data.voc import VOCSegmentation

    train = VOCSegmentation(root, "train", image_size=32, seed=2)
    train.ids = train.ids[:8]
    val = VOCSegmentation(root, "test", image_size=32)
    model = _segmenter()
    best = os.path.join(os.path.dirname(root), f"best{os.environ.get('WORLD_SIZE', '1')}.pt")
    history = train_segmenter(model, train, SEG_RECIPE, 3, val_set=val, best_checkpoint=best)
    return {"model": model.state_dict(), "history": history}


def _trajectory_model() -> torch.nn.Module:
    from softeq.models.trajectory import TrajectoryTransformer

    torch.manual_seed(0)
    model = TrajectoryTransformer(4, 3, d_model=8, layers=1, heads=2, ffn=12, dropout=0.0)
    return softeq.soften(model, "SO2", 0.5, features="pairs")


def _windows(root: str) -> Subset:
    from softeq.data.eth_ucy import TrajectoryDataset

    data = TrajectoryDataset.from_split(root, "corridor000", "train", obs_len=4, pred_len=3)
    return Subset(data, range(8, 24))  # windows of 1, 2 and 3 agents


def _trajectory(root: str) -> dict:
    model = _trajectory_model()
    history = train_trajectory(model, _windows(root), TRAJ_RECIPE, seed=4)
    return {"model": model.state_dict(), "history": history}


TASKS = {"classification": _classification, "segmentation": _segmentation}
TASKS["trajectory"] = _trajectory


def _worker(rank: int, world: int, port: int, out: str, task: str, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    state = TASKS[task](root)
    if rank == 0:
        torch.save(state, out)
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_and_one(tmp_path, monkeypatch, task: str, root: str = "") -> tuple[dict, dict]:
    """The state after training on 2 gloo processes, and on 1 process in this one."""
    out = str(tmp_path / f"ddp_{task}.pt")
    mp.spawn(_worker, args=(2, _free_port(), out, task, root), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    torch.set_num_threads(1)
    return ddp, TASKS[task](root)


def _assert_same(ddp: dict, single: dict) -> None:
    for name, tensor in single.items():
        torch.testing.assert_close(ddp[name], tensor, atol=1e-5, rtol=1e-5, msg=name)


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, monkeypatch):
    ddp, single = _two_and_one(tmp_path, monkeypatch, "classification")
    _assert_same(ddp["model"], single["model"])
    _assert_same(ddp["ema"], single["ema"])
    model = single["model"]
    assert any(not torch.equal(t, _model().state_dict()[n]) for n, t in model.items())


def test_segmentation_two_processes_match_one(tmp_path, monkeypatch):
    from softeq.data.embedded_voc import build_embedded_voc

    root = build_embedded_voc(tmp_path / "voc", n_train=10, n_val=2, seed=0)
    ddp, single = _two_and_one(tmp_path, monkeypatch, "segmentation", str(root))
    _assert_same(ddp["model"], single["model"])
    initial = _segmenter().state_dict()
    assert any(not torch.equal(t, initial[n]) for n, t in single["model"].items())
    for a, b in zip(ddp["history"], single["history"], strict=True):  # global statistics
        assert a.keys() == b.keys() and "val_miou" in a
        for key, value in b.items():
            assert abs(a[key] - value) <= 1e-5 * max(1.0, abs(value)), key
    assert (tmp_path / "best2.pt").exists() and (tmp_path / "best1.pt").exists()


def test_trajectory_two_processes_match_one(tmp_path, monkeypatch):
    from softeq.data.synthetic_trajectories import build_synthetic

    root = build_synthetic(tmp_path / "synthetic", seed=0)
    agents = {len(_windows(str(root))[i][0]) for i in range(16)}
    assert len(agents) > 1  # the loss weighting matters: windows of different sizes
    ddp, single = _two_and_one(tmp_path, monkeypatch, "trajectory", str(root))
    _assert_same(ddp["model"], single["model"])
    initial = _trajectory_model().state_dict()
    assert any(not torch.equal(t, initial[n]) for n, t in single["model"].items())
    for a, b in zip(ddp["history"], single["history"], strict=True):
        for key, value in b.items():
            assert abs(a[key] - value) <= 1e-5 * max(1.0, abs(value)), key


def test_head_epochs_train_the_classifier_first(tmp_path):
    torch.set_num_threads(1)
    ckpt = tmp_path / "state.pt"
    model = _model()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    recipe = Recipe(epochs=2, batch_size=8, lr=3e-3, warmup_epochs=0.5, head_epochs=1)
    train_classifier(model, _data(), recipe, 1, 16, ckpt, stop_after_epochs=1)
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == {"head.weight", "head.bias"}  # epoch 1: the linear probe
    train_classifier(model, _data(), recipe, 1, 16, ckpt, stop_after_epochs=1)  # resumes
    changed = {n for n, t in model.state_dict().items() if not torch.equal(t, before[n])}
    assert "blocks.0.attn.qkv.weight" in changed
