"""Projector construction and soft-layer overhead, as ratios measured in one run.

    .venv/bin/python benchmarks/projectors.py            # everything (about 3 minutes on 2 cores)
    .venv/bin/python benchmarks/projectors.py --quick    # smaller sizes, fewer repeats

1. Invariant grid filters (14x14, 16x16, 37x37): softeq's build (block-separable SVD for
   permutation actions) against a plain dense SVD of the same operator, and the cost of asking
   for the same key again (every layer that shares it).
2. Equivariant pair-layer projectors (SO(2), widths 16..128): block-Schur against the dense
   Kronecker SVD, with their largest disagreement (the measurement of ``softeq.timing``, which
   the workflow's construction-timing ablation also uses); the dense path is skipped where its
   O(d^6) cost, extrapolated from the previous width, would exceed a minute.
3. The paper's Table 6 case: the equivariant projector of a map on a k x k grid (C4, exact
   rotation), block-Schur up to 14 x 14 against the dense Kronecker SVD on small grids, fitted as
   t = a d^p and extrapolated to 14 x 14 (``softeq.timing.measure_grid_timing``).
4. Training-step cost (forward + backward) of a ViT-Small with soft patch embedding and
   positional grid against the plain model, and of the folded model.
Times drift between runs on a shared machine; the ratios, measured side by side, are the result.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

import softeq
from softeq.filters import filter_weights
from softeq.groups import grid_generators
from softeq.projectors import clear_cache, invariant_projector
from softeq.timing import max_abs_diff, measure_grid_timing, time_projector_build


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _dense_reference_grid(group: str, k: int, b: float) -> np.ndarray:
    """What the reference does: one dense SVD of the full operator, then V diag(f) V^T."""
    (d,) = grid_generators(group, k)
    _, s, vt = np.linalg.svd(d.T)
    order = np.argsort(s, kind="stable")
    v = vt.T[:, order]
    weights = filter_weights(s[order], b).weights
    return (v * weights) @ v.T


def bench_grids(sizes: list[int], repeats: int) -> None:
    print("\n## Invariant grid filters (shrink, b = 0.5)")
    print(
        f"{'group':>6} {'grid':>7} {'softeq s':>9} {'dense s':>9} {'speed-up':>9} "
        f"{'cached s':>9} {'max |diff|':>11}"
    )
    for group in ("C4", "C18"):
        for k in sizes:

            def build(group=group, k=k):
                clear_cache()
                return invariant_projector(group, k, 0.5)

            ours = _best_of(build, repeats)
            dense = _best_of(lambda group=group, k=k: _dense_reference_grid(group, k, 0.5), 1)
            cached = _best_of(lambda group=group, k=k: invariant_projector(group, k, 0.5), 100)
            diff = np.abs(build().matrix - _dense_reference_grid(group, k, 0.5)).max()
            print(
                f"{group:>6} {k:>4}x{k:<2} {ours:9.4f} {dense:9.4f} {dense / ours:8.1f}x "
                f"{cached:9.2e} {diff:11.1e}"
            )


def bench_pairs(widths: list[int], dense_limit_s: float) -> None:
    """The construction-timing measurement of the workflow (``softeq.timing``), at larger widths:
    block-Schur best of 3, dense once, skipped where its extrapolated cost exceeds the limit."""
    print("\n## Equivariant SO(2) pair-layer projectors (shrink, b = 0.5), width d_in = d_out")
    print(f"{'width':>6} {'schur s':>9} {'dense s':>9} {'speed-up':>9} {'max |diff|':>11}")
    dense_estimate = 0.0
    for width in widths:
        schur_s, schur = time_projector_build(width, "schur", repeats=3)
        if dense_estimate > dense_limit_s:
            print(
                f"{width:>6} {schur_s:9.4f} {'skipped':>9} {'':>9} {'':>11}"
                f"   (dense estimated at {dense_estimate:.0f} s)"
            )
            dense_estimate *= 64
            continue
        dense_s, dense = time_projector_build(width, "dense")
        diff = max_abs_diff(dense, schur, width)
        print(f"{width:>6} {schur_s:9.4f} {dense_s:9.3f} {dense_s / schur_s:8.0f}x {diff:11.1e}")
        dense_estimate = dense_s * 64  # SVD of a (d^2 x d^2) operator: O(d^6)


def bench_equivariant_grid(grids: list[int], schur_grids: list[int]) -> None:
    """The paper's Table 6 case, as the workflow's ``grid`` construction-timing ablation."""
    print("\n## Equivariant C4 grid-map projectors (shrink, b = 0.5), W of k^2 x k^2")
    df = measure_grid_timing(grids, schur_grids, 14, repeats=1)
    header = f"{'grid':>6} {'operator':>9} {'schur s':>9} {'dense s':>10} {'dense':>13}"
    print(f"{header} {'max |diff|':>11}")
    for r in df.to_dict("records"):
        dense = "" if np.isnan(r["dense_s"]) else f"{r['dense_s']:10.3f}"
        print(
            f"{r['grid']:>3}x{r['grid']:<2} {r['operator']:>9,} {r['schur_s']:9.4f} {dense:>10} "
            f"{r['dense_source']:>13} {r['max_abs_diff']:11.1e}"
        )
    print(f"dense fit: t = {df['fit_a'].iloc[0]:.3g} * d^{df['fit_p'].iloc[0]:.2f} (d = k^2)")


def _step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def bench_training_step(batch: int, repeats: int) -> None:
    import timm

    print(f"\n## ViT-Small/16 training step (224 px, batch {batch}, CPU, forward + backward)")
    torch.manual_seed(0)
    plain = timm.create_model("vit_small_patch16_224", num_classes=1000)
    soft = softeq.soften(copy.deepcopy(plain), "C4", 0.5, softness_pos=0.5)
    folded = softeq.fold(soft)
    models = {"plain": plain, "soft": soft, "folded": folded}
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 1000, (batch,))
    for model in models.values():  # warm-up
        _step_time(model, x, y)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):  # interleaved, so drift hits every model alike
        for name, model in models.items():
            times[name].append(_step_time(model, x, y))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"plain {median['plain']:.3f} s/step (median of {repeats})")
    print(f"soft / plain   = {median['soft'] / median['plain']:.3f}   (goal <= 1.02)")
    print(f"folded / plain = {median['folded'] / median['plain']:.3f}   (goal <= 1.01)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}")
    if args.quick:
        bench_grids([14, 16], repeats=2)
        bench_pairs([16, 32], dense_limit_s=5)
        bench_equivariant_grid([4, 5, 6], [8, 14])
        bench_training_step(batch=2, repeats=3)
    else:
        bench_grids([14, 16, 37], repeats=5)
        bench_pairs([16, 32, 64, 128], dense_limit_s=60)
        bench_equivariant_grid([4, 5, 6, 7], [8, 10, 12, 14])
        bench_training_step(batch=8, repeats=7)


if __name__ == "__main__":
    main()
