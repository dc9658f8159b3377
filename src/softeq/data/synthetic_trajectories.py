"""Embedded synthetic pedestrian trajectories in the ETH/UCY text format (offline default).

The default pipeline must run offline, on a CPU, in minutes, through the real trajectory code
paths.  This module simulates pedestrians in a few straight corridors and writes them exactly like
the ETH/UCY files (``frame\\tped\\tx\\ty``, frame ids in steps of 10, one step = 0.4 s, x and y in
metres with two decimals), in the same leave-one-scene-out layout::

    <root>/<scene>/test/<scene>.txt            the whole held-out scene
    <root>/<scene>/train/<other>_train.txt     first 80% of the frames of every other scene
    <root>/<scene>/val/<other>_val.txt         the remaining 20%
    <root>/SHA256SUMS                          checksums of all files (verify_checksums)

The simulation (per scene, in the corridor's own frame: u along it, v across it):

* pedestrians enter at either end (two opposing flows, Bernoulli arrivals per frame), each with
  a preferred speed ~ N(1.3, 0.25) m/s clipped to [0.5, 2.2], modulated by a slow sinusoid
  (+-15%, period 6-14 s) so speeds vary along the way, and a preferred lane on their right-hand
  side with jitter;
* a social-force step (Helbing & Molnar 1995) every 0.1 s: relaxation to the desired velocity
  (tau 0.5 s), exponential repulsion from pedestrians closer than 2.5 m, weighted towards the
  ones ahead (collision avoidance), repulsion from the two walls, and a small random acceleration;
* positions are recorded every 0.4 s (frame step 10) with 2 cm measurement noise; pedestrians
  leave past the far end.

Each scene is one corridor with its own orientation (and centre and traffic density), then
rotated and shifted into world coordinates.  The local dynamics are the same in every scene, so
rotation is a symmetry of the motion, but each scene's trajectories point in two dominant
directions; a model trained on three orientations and tested on the fourth sees rotation as an
approximate symmetry of the data, the regime the paper studies.  Everything is drawn from
``numpy.random.default_rng([seed, scene index])``: the same seed writes the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softeq.data.catalog import SYNTHETIC_SCENES as SCENE_NAMES
from softeq.data.listing import write_checksums
from softeq.io import atomic_write_text

__all__ = ["SYNTHETIC_SCENES", "SceneSpec", "build_synthetic", "simulate_scene"]

FRAME_STEP = 10
FRAME_SECONDS = 0.4
_SUBSTEPS = 4  # social-force steps of 0.1 s per recorded frame
_TRAIN_FRACTION = 0.8


@dataclass(frozen=True)
class SceneSpec:
    """One corridor: orientation (degrees), centre (metres), arrival rate per end (per second)."""

    angle: float
    centre: tuple[float, float]
    rate: float
    frames: int = 300
    length: float = 14.0
    width: float = 5.0


SYNTHETIC_SCENES: dict[str, SceneSpec] = {
    "corridor000": SceneSpec(0.0, (4.0, 2.0), 0.22),
    "corridor060": SceneSpec(60.0, (-3.0, 5.0), 0.18),
    "corridor105": SceneSpec(105.0, (6.0, -4.0), 0.25),
    "corridor150": SceneSpec(150.0, (-5.0, -3.0), 0.20),
}
"""The synthetic scenes, named after their corridor orientation in degrees."""
if tuple(SYNTHETIC_SCENES) != SCENE_NAMES:
    raise AssertionError("SYNTHETIC_SCENES must list softeq.data.catalog.SYNTHETIC_SCENES")


def simulate_scene(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Simulate one corridor; rows (frame, ped, x, y) sorted by frame then ped, world metres."""
    dt = FRAME_SECONDS / _SUBSTEPS
    half_l, half_w = spec.length / 2, spec.width / 2
    pos = np.zeros((0, 2))
    vel = np.zeros((0, 2))
    ids = np.zeros(0, dtype=np.int64)
    direction = np.zeros(0)
    speed = np.zeros(0)
    lane = np.zeros(0)
    period = np.ones(0)
    phase = np.zeros(0)
    next_id = 1
    rows: list[tuple[int, int, float, float]] = []
    p_arrive = min(1.0, spec.rate * FRAME_SECONDS)
    for frame in range(spec.frames):
        # arrivals at both ends (skipped when the entry is crowded)
        for d in (1.0, -1.0):
            if rng.random() >= p_arrive:
                continue
            s = float(np.clip(rng.normal(1.3, 0.25), 0.5, 2.2))
            v_lane = float(
                np.clip(-d * half_w / 2 + rng.normal(0.0, 0.5), -half_w + 0.4, half_w - 0.4)
            )
            start = np.array([-d * half_l, v_lane])
            if len(pos) and np.min(np.linalg.norm(pos - start, axis=1)) < 1.0:
                continue
            pos = np.vstack([pos, start])
            vel = np.vstack([vel, [d * s, 0.0]])
            ids = np.append(ids, next_id)
            direction, speed = np.append(direction, d), np.append(speed, s)
            lane = np.append(lane, v_lane)
            period = np.append(period, rng.uniform(6.0, 14.0))
            phase = np.append(phase, rng.uniform(0.0, 2 * math.pi))
            next_id += 1
        # record this frame, then move on to the next one
        t = frame * FRAME_SECONDS
        noisy = pos + rng.normal(0.0, 0.02, size=pos.shape)
        for i in np.argsort(ids):
            rows.append((frame * FRAME_STEP, int(ids[i]), noisy[i, 0], noisy[i, 1]))
        for sub in range(_SUBSTEPS):
            if not len(pos):
                break
            now = t + sub * dt
            pref = speed * (1 + 0.15 * np.sin(2 * math.pi * now / period + phase))
            desired = np.stack([direction * pref, 0.5 * (lane - pos[:, 1])], axis=1)
            force = (desired - vel) / 0.5
            # pedestrian repulsion, anisotropic: stronger for those ahead
            diff = pos[:, None, :] - pos[None, :, :]  # i - j
            dist = np.linalg.norm(diff, axis=-1)
            np.fill_diagonal(dist, np.inf)
            normal = diff / np.maximum(dist, 1e-6)[..., None]
            heading = vel / np.maximum(np.linalg.norm(vel, axis=1, keepdims=True), 1e-6)
            cos_phi = -(normal * heading[:, None, :]).sum(-1)  # > 0: j ahead of i
            weight = 0.35 + 0.65 * (1 + cos_phi) / 2
            magnitude = np.where(dist < 2.5, 2.0 * np.exp((0.6 - dist) / 0.35), 0.0) * weight
            force += (magnitude[..., None] * normal).sum(axis=1)
            # walls at v = +-half_w
            force[:, 1] -= 3.0 * np.exp((0.3 - (half_w - pos[:, 1])) / 0.2)
            force[:, 1] += 3.0 * np.exp((0.3 - (half_w + pos[:, 1])) / 0.2)
            force += rng.normal(0.0, 0.3, size=force.shape)
            vel = vel + dt * force
            norm = np.linalg.norm(vel, axis=1, keepdims=True)
            vel = vel * np.minimum(1.0, 2.5 / np.maximum(norm, 1e-9))
            pos = pos + dt * vel
            pos[:, 1] = np.clip(pos[:, 1], -half_w + 0.05, half_w - 0.05)
        keep = direction * pos[:, 0] <= half_l + 0.5
        pos, vel, ids, direction = pos[keep], vel[keep], ids[keep], direction[keep]
        speed, lane, period, phase = speed[keep], lane[keep], period[keep], phase[keep]
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    angle = math.radians(spec.angle)
    c, s = math.cos(angle), math.sin(angle)
    local = data[:, 2:4].copy()
    data[:, 2] = c * local[:, 0] - s * local[:, 1] + spec.centre[0]
    data[:, 3] = s * local[:, 0] + c * local[:, 1] + spec.centre[1]
    return data


def _format(data: np.ndarray) -> str:
    return "".join(f"{int(f)}\t{p:.1f}\t{x:.2f}\t{y:.2f}\n" for f, p, x, y in data)


def build_synthetic(
    root: str | Path, seed: int = 0, scenes: dict[str, SceneSpec] | None = None
) -> Path:
    """Write the synthetic leave-one-scene-out dataset under ``root`` (atomically, file by file)
    and its ``SHA256SUMS``; returns ``root``.  Deterministic in ``seed``."""
    root = Path(root)
    scenes = SYNTHETIC_SCENES if scenes is None else scenes
    if len(scenes) < 2:
        raise ValueError("leave-one-scene-out needs at least two scenes")
    texts: dict[str, tuple[str, str, str]] = {}
    for index, (name, spec) in enumerate(scenes.items()):
        data = simulate_scene(spec, np.random.default_rng([seed, index]))
        cut = math.floor(_TRAIN_FRACTION * spec.frames) * FRAME_STEP
        train, val = data[data[:, 0] < cut], data[data[:, 0] >= cut]
        texts[name] = (_format(data), _format(train), _format(val))
    written = []
    for held_out in scenes:
        files = {f"{held_out}/test/{held_out}.txt": texts[held_out][0]}
        for other in scenes:
            if other != held_out:
                files[f"{held_out}/train/{other}_train.txt"] = texts[other][1]
                files[f"{held_out}/val/{other}_val.txt"] = texts[other][2]
        for relative, text in files.items():
            atomic_write_text(root / relative, text)
            written.append(relative)
    write_checksums(root, written, root / "SHA256SUMS")
    return root
