"""Data-parallel fine-tuning: 2 processes (gloo, CPU) end with the weights of 1 process that
sees the same global batches, to 1e-5 (only the order of float reductions differs)."""

import os
import socket

import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

import softeq
from softeq.engine.classification import Recipe, train_classifier

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


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    model = _model()
    _, ema = train_classifier(model, _data(), RECIPE, seed=5, input_size=16, num_classes=4)
    if rank == 0:
        torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, out)
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, monkeypatch):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    torch.set_num_threads(1)
    model = _model()
    _, ema = train_classifier(model, _data(), RECIPE, seed=5, input_size=16, num_classes=4)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(ddp["model"][name], tensor, atol=1e-5, rtol=1e-5, msg=name)
    for name, tensor in ema.state_dict().items():
        torch.testing.assert_close(ddp["ema"][name], tensor, atol=1e-5, rtol=1e-5, msg=name)
    assert any(not torch.equal(t, _model().state_dict()[n]) for n, t in model.state_dict().items())


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
