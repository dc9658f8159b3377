"""Projectors with several generators: softeq's construction against a dense SVD of the stacked
operator, as ratios measured in one run (docs/method.md §8).

    .venv/bin/python benchmarks/multigenerator_projectors.py           # about a minute on 2 cores
    .venv/bin/python benchmarks/multigenerator_projectors.py --t4      # adds T(4) -> T(4) of O(5)

For each (group, in, out): the time and peak traced memory (tracemalloc: numpy and scipy buffers)
of building softeq's projector from nothing (``shrink``, b = 0.5: the null space, by blocks and
LOBPCG; and ``threshold``: the full spectrum, by blocks) and of the dense route (the (k N) x N
stacked operator, its SVD, V diag(f) V^T), with the largest disagreement of the two projectors on
random weights.  The dense route is skipped where its operator would exceed --dense-max columns.
``--t4`` projects a map between T(4) representations of O(5) (625 -> 625, a dense operator of
4,296,875 x 390,625) at b = 0 and with ``shrink``: time, peak memory and the equivariance error.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import torch

from softeq.filters import filter_weights
from softeq.matrix_groups import matrix_group
from softeq.projectors.reps import RepMapProjector
from softeq.rep_spectral import clear_cache, map_constraint
from softeq.reps import parse_rep

CASES = [
    ("SO3", "V**2", "V**2"),
    ("Lorentz", "V**2", "V**2"),
    ("SO3xZ3", "V**2", "V**2"),
    ("O5", "V**2", "V**2"),
    ("O5", "V", "V**3"),
    ("O5", "V**2", "V**3"),
    ("O5", "V**3", "V**3"),
]


def _measure(fn):
    """(seconds, peak MiB, result) of one call, memory traced from zero."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def _dense(in_rep, out_rep, softness: float, filter: str) -> np.ndarray:
    """The reference route: the dense stacked operator, its SVD, V diag(f) V^T."""
    stacked = map_constraint(in_rep, out_rep).toarray()
    _, s, vt = np.linalg.svd(stacked, full_matrices=False)
    order = np.argsort(s, kind="stable")
    weights = filter_weights(s[order], softness, filter).weights
    v = vt.T[:, order]
    return (v * weights) @ v.T


def _softeq(in_rep, out_rep, softness: float, filter: str) -> RepMapProjector:
    clear_cache()
    return RepMapProjector(in_rep, out_rep, softness, filter=filter)


def bench(dense_max: int) -> None:
    print("## Projector construction: softeq (blocks / LOBPCG, low rank) against a dense SVD")
    print(
        f"{'group':>8} {'map':>16} {'N':>7} {'filter':>9} {'softeq s':>9} {'MiB':>7} "
        f"{'dense s':>9} {'MiB':>7} {'time x':>8} {'memory x':>9} {'max diff':>9}"
    )
    for name, rin, rout in CASES:
        group = matrix_group(name)
        a, b = parse_rep(rin, group), parse_rep(rout, group)
        n = a.dim * b.dim
        weight = torch.randn(b.dim, a.dim, dtype=torch.float64, generator=torch.manual_seed(0))
        for filter in ("shrink", "threshold"):
            try:
                ours_s, ours_mb, projector = _measure(lambda: _softeq(a, b, 0.5, filter))  # noqa: B023
            except ValueError as error:  # a full spectrum beyond the dense limit
                print(f"{name:>8} {rin + '->' + rout:>16} {n:>7} {filter:>9}  skipped: {error}")
                continue
            if n > dense_max:
                print(
                    f"{name:>8} {rin + '->' + rout:>16} {n:>7} {filter:>9} {ours_s:9.3f} "
                    f"{ours_mb:7.1f} {'(dense operator too large)':>36}"
                )
                continue
            dense_s, dense_mb, matrix = _measure(lambda: _dense(a, b, 0.5, filter))  # noqa: B023
            expected = (matrix @ weight.numpy().reshape(-1)).reshape(b.dim, a.dim)
            diff = float(np.abs(projector.apply(weight).numpy() - expected).max())
            print(
                f"{name:>8} {rin + '->' + rout:>16} {n:>7} {filter:>9} {ours_s:9.3f} "
                f"{ours_mb:7.1f} {dense_s:9.3f} {dense_mb:7.1f} {dense_s / ours_s:8.1f} "
                f"{dense_mb / ours_mb:9.1f} {diff:9.1e}"
            )


def bench_t4() -> None:
    group = matrix_group("O5")
    rep = parse_rep("V**4", group)
    n = rep.dim**2
    rows = n * (group.lie_algebra.shape[0] + group.discrete.shape[0])
    print(f"\n## T(4) -> T(4) of O(5): N = {n:,}; the dense operator would be {rows:,} x {n:,}")
    weight = torch.randn(rep.dim, rep.dim, dtype=torch.float64, generator=torch.manual_seed(0))
    g = group.sample(np.random.default_rng(0))
    r = rep.rho(g)
    for softness in (0.0, 0.5):
        seconds, peak, projector = _measure(lambda: _softeq(rep, rep, softness, "shrink"))  # noqa: B023
        start = time.perf_counter()
        projected = projector.apply(weight).numpy()
        apply_s = time.perf_counter() - start
        error = float(np.abs(projected @ r - r @ projected).max())
        residual = projector.residual(projected) / float(weight.norm())
        bound = projector.b_eff * projector.sigma_max
        print(
            f"shrink b = {softness}: build {seconds:.1f} s, peak {peak:.0f} MiB, apply "
            f"{apply_s * 1e3:.0f} ms, null dim {projector.null_dim}, max |W g - g W| {error:.1e}, "
            f"||C vec W_b|| / ||W|| {residual:.3f} <= bound {bound:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t4", action="store_true", help="also project T(4) -> T(4) of O(5)")
    parser.add_argument("--dense-max", type=int, default=4000, help="largest dense N")
    args = parser.parse_args()
    bench(args.dense_max)
    if args.t4:
        bench_t4()


if __name__ == "__main__":
    main()
