"""Evaluation and training cost, as ratios measured in one run (issue #15, deliverable 4).

    .venv/bin/python benchmarks/evaluation_cost.py            # CPU: ViT-S/16, a few minutes
    .venv/bin/python benchmarks/evaluation_cost.py --quick    # smaller batches, fewer repeats
    python benchmarks/evaluation_cost.py --device cuda --model vit_base_patch16_224 --batch 64
                                                              # the GPU script: images/s

1. The rotated evaluation's input rotation at 224 px: softeq rotates the whole batch in one
   ``grid_sample`` call (``softeq.transforms.rotate_images``, each sample its own angle) against a
   loop of torchvision's per-image ``rotate`` (the reference code's way), on the same angles.
2. Images per second of a timm ViT, plain (timm's model in an ordinary PyTorch loop), soft (C4,
   b = 0.5 on the patch embedding and the positional grid) and folded (``softeq.fold``): evaluation
   (forward, no gradients) and training (forward, backward, AdamW step), interleaved so that drift
   hits every model alike; the ratios to the plain model are the result.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torchvision.transforms.functional as TF

import softeq
from softeq.transforms import rotate_images, sample_angles


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_of(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def bench_rotation(batch: int, size: int, repeats: int, device: torch.device) -> None:
    print(f"\n## Rotating a batch of {batch} images at {size} px (bilinear, angles in +-30 deg)")
    x = torch.rand(batch, 3, size, size, device=device)
    angles = sample_angles(batch, 30.0, seed=0)

    def batched() -> torch.Tensor:
        return rotate_images(x, angles)

    def per_sample() -> torch.Tensor:
        return torch.stack(
            [
                TF.rotate(image, float(angle), interpolation=TF.InterpolationMode.BILINEAR)
                for image, angle in zip(x, angles, strict=True)
            ]
        )

    batched(), per_sample()  # warm-up
    one_call = _best_of(batched, repeats, device)
    loop = _best_of(per_sample, repeats, device)
    print(f"one call {one_call * 1e3:.1f} ms, per-sample loop {loop * 1e3:.1f} ms")
    print(f"per-sample loop / one call = {loop / one_call:.2f}")


def _eval_step(model, x) -> None:
    with torch.no_grad():
        model(x)


def _train_step(model, optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def bench_throughput(name: str, batch: int, repeats: int, device: torch.device) -> None:
    import timm

    print(f"\n## {name}, 224 px, batch {batch}, {device}: images per second")
    torch.manual_seed(0)
    plain = timm.create_model(name, num_classes=1000).to(device)
    soft = softeq.soften(copy.deepcopy(plain), "C4", 0.5, softness_pos=0.5)
    folded = softeq.fold(soft)
    models = {"plain": plain, "soft": soft, "folded": folded}
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-5) for k, m in models.items()}
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    steps = {
        "eval": {k: (lambda m=m: _eval_step(m.eval(), x)) for k, m in models.items()},
        "train": {
            k: (lambda m=m, o=optimizers[k]: _train_step(m.train(), o, x, y))
            for k, m in models.items()
        },
    }
    for mode, fns in steps.items():
        for fn in fns.values():  # warm-up (and the soft model's projector tensors)
            fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for k, fn in fns.items():
                times[k].append(_best_of(fn, 1, device))
        rate = {k: batch / statistics.median(t) for k, t in times.items()}
        print(
            f"{mode:>5}: plain {rate['plain']:.1f} img/s, soft {rate['soft']:.1f}, folded "
            f"{rate['folded']:.1f};  soft / plain {rate['soft'] / rate['plain']:.3f}, "
            f"folded / soft {rate['folded'] / rate['soft']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer repeats")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model", default="vit_small_patch16_224", help="a timm ViT name")
    parser.add_argument("--batch", type=int, default=None, help="throughput batch size")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible here")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    bench_rotation(16 if args.quick else 64, 224, 3 if args.quick else 7, device)
    batch = args.batch or (2 if args.quick else 8)
    bench_throughput(args.model, batch, 3 if args.quick else 7, device)


if __name__ == "__main__":
    main()
