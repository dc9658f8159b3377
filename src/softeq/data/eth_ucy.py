"""ETH/UCY pedestrian trajectories: reading, Social-GAN windowing, a verified dataset.

Files (``<root>/<scene>/{train,val,test}/*.txt``, see docs/conventions.md §3, downloads) hold
one observation per line, ``frame  ped  x  y`` (tab-separated; any whitespace is accepted), with
x, y world coordinates in metres and frame ids advancing in a fixed step (10 in every ETH/UCY
file; one step = 0.4 s).  The layout is leave-one-scene-out: ``<scene>/test`` is the held-out
scene, ``<scene>/train`` and ``<scene>/val`` the portions of all the other scenes.

Windowing follows Social-GAN (Gupta et al. 2018, ``sgan/data/trajectories.py``): over the sorted
unique frame ids of a file, a window starts at every ``skip``-th frame; it spans
``obs_len + pred_len`` consecutive frames (frame ids ``f0, f0 + step, ...``) and keeps the agents
observed in *all* of them.  Two differences from sgan, both explicit here:

* sgan keeps a window when the number of such agents is ``> min_ped`` with ``min_ped = 1``, i.e.
  at least **two** agents; here ``min_agents`` is inclusive (``>=``), so the sgan protocol is
  ``min_agents=SGAN_MIN_AGENTS`` (2) and the default 1 keeps single-agent windows as well.  The
  paper's reference code windows the same way (docs/fidelity.md), so ``min_agents=2`` is also
  its rule.
* sgan treats the unique frames as consecutive even across gaps (frame ids with no pedestrian);
  here a window is made of consecutive frame *ids*.  In the ETH/UCY files no pedestrian is ever
  missing from a frame between its first and last one, so no agent spans a gap either way and the
  two definitions give the same windows (the window counts of the reference's loader on every
  split are a test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from softeq.data.catalog import ETHUCY_SCENES
from softeq.data.listing import default_listing, folder_listing, read_checksums, verify_listed

__all__ = [
    "SCENES",
    "SGAN_MIN_AGENTS",
    "SPLITS",
    "TrajectoryDataset",
    "Window",
    "collate_windows",
    "detect_frame_step",
    "read_trajectory_file",
    "windows",
]

SCENES = ETHUCY_SCENES
"""The five ETH/UCY scenes (:data:`softeq.data.catalog.ETHUCY_SCENES`)."""

SPLITS = ("train", "val", "test")

SGAN_MIN_AGENTS = 2
"""``min_agents`` that reproduces sgan's window filter (``num_peds > min_ped`` with min_ped 1)."""


# ----------------------------------------------------------------------------------------------
# reading


def read_trajectory_file(path: str | Path) -> np.ndarray:
    """Read one trajectory file into a float64 array (n, 4) of ``frame, ped, x, y`` rows.

    Fields are separated by tabs or any other whitespace; blank lines are skipped.  A line that
    does not hold exactly four finite numbers raises ``ValueError`` naming the file and its
    1-based line number (several forks of the data carry corrupted lines or a fifth column).
    """
    path = Path(path)
    rows: list[tuple[float, float, float, float]] = []
    with open(path, encoding="ascii", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4:
                raise ValueError(
                    f"{path}:{lineno}: expected 4 fields (frame, ped, x, y), got {len(fields)}: "
                    f"{line.rstrip()!r}"
                )
            try:
                values = tuple(float(f) for f in fields)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not a number in {line.rstrip()!r}") from None
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{path}:{lineno}: non-finite value in {line.rstrip()!r}")
            rows.append(values)  # type: ignore[arg-type]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def detect_frame_step(frames: np.ndarray) -> float:
    """The file's frame step: the smallest gap between sorted unique frame ids.

    Every gap must be a whole multiple of it (a frame id off the grid raises ``ValueError``).
    A file with a single frame has step 1 (it cannot form a window of two frames anyway).
    """
    unique = np.unique(np.asarray(frames, dtype=np.float64))
    if unique.size < 2:
        return 1.0
    gaps = np.diff(unique)
    step = float(gaps.min())
    ratio = gaps / step
    if not np.allclose(ratio, np.round(ratio), rtol=0, atol=1e-6):
        raise ValueError(f"frame ids are not on a regular grid of step {step:g}")
    return step


# ----------------------------------------------------------------------------------------------
# windowing


@dataclass(frozen=True)
class Window:
    """One window: ``positions`` (A, obs_len + pred_len, 2) of the agents ``peds`` (sorted ids),
    starting at frame id ``start_frame``."""

    start_frame: float
    peds: np.ndarray
    positions: np.ndarray


def _iter_windows(
    data: np.ndarray,
    obs_len: int,
    pred_len: int,
    skip: int,
    min_agents: int,
    frame_step: float | None,
) -> list[Window]:
    if obs_len < 1 or pred_len < 1:
        raise ValueError(f"obs_len and pred_len must be >= 1, got {obs_len} and {pred_len}")
    if skip < 1 or min_agents < 1:
        raise ValueError(f"skip and min_agents must be >= 1, got {skip} and {min_agents}")
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 4:
        raise ValueError(f"expected rows of (frame, ped, x, y), got shape {data.shape}")
    if len(data) == 0:
        return []
    seq_len = obs_len + pred_len
    step = detect_frame_step(data[:, 0]) if frame_step is None else float(frame_step)
    first = data[:, 0].min()
    slot = (data[:, 0] - first) / step
    grid_index = np.round(slot).astype(np.int64)
    if not np.allclose(slot, grid_index, rtol=0, atol=1e-6):
        raise ValueError(f"frame ids are not multiples of the frame step {step:g}")
    peds, ped_index = np.unique(data[:, 1], return_inverse=True)
    n_grid = int(grid_index.max()) + 1
    repeats = np.flatnonzero(np.bincount(ped_index * n_grid + grid_index) > 1)
    if repeats.size:
        dup = int(repeats[0])
        raise ValueError(
            f"pedestrian {peds[dup // n_grid]:g} has two observations at frame "
            f"{first + (dup % n_grid) * step:g}"
        )
    present = np.zeros((len(peds), n_grid), dtype=bool)
    present[ped_index, grid_index] = True
    xy = np.zeros((len(peds), n_grid, 2))
    xy[ped_index, grid_index] = data[:, 2:4]
    # count[p, g] = frames in [g, g + seq_len) where pedestrian p is observed
    cumulative = np.concatenate(
        [np.zeros((len(peds), 1), dtype=np.int64), np.cumsum(present, axis=1)], axis=1
    )
    starts = np.unique(grid_index)  # sgan: windows start at the file's unique frames
    out = []
    for g in starts[: max(0, len(starts) - seq_len + 1) : skip]:
        if g + seq_len > n_grid:
            break
        full = np.flatnonzero(cumulative[:, g + seq_len] - cumulative[:, g] == seq_len)
        if len(full) >= min_agents:
            out.append(Window(first + g * step, peds[full], xy[full, g : g + seq_len].copy()))
    return out


def windows(
    data: np.ndarray,
    obs_len: int,
    pred_len: int,
    skip: int = 1,
    min_agents: int = 1,
    frame_step: float | None = None,
) -> list[np.ndarray]:
    """Social-GAN windows of one file's rows ``data`` (n, 4): a list of (A, obs_len + pred_len, 2)
    position arrays, agents sorted by id.

    A window starts at every ``skip``-th unique frame id of the file (in sgan's order), covers the
    ``obs_len + pred_len`` consecutive frame ids ``f0, f0 + step, ...`` (``step`` detected from the
    file unless given), keeps the agents observed in every one of them, and is kept when it has at
    least ``min_agents`` of them (sgan's own filter is ``min_agents=SGAN_MIN_AGENTS``).
    """
    return [
        w.positions for w in _iter_windows(data, obs_len, pred_len, skip, min_agents, frame_step)
    ]


# ----------------------------------------------------------------------------------------------
# dataset


class TrajectoryDataset(Dataset):
    """The windows of the verified files of one folder (e.g. ``root/eth/test``).

    Only the files of the folder's checksum list are read, each after its sha256 is checked, and
    a ``*.txt`` file in the folder that the list does not name is an error (an unlisted file must
    never change a test set).  ``listed`` maps the folder's file names to their sha256; by
    default it is the folder's part of its root's list (:func:`default_listing`).

    Item ``i`` is ``(obs, fut)``: float32 tensors (A, obs_len, 2) and (A, pred_len, 2) in metres,
    the A agents of window i.  Use :func:`collate_windows` to batch windows with different A.
    ``meta[i]`` is ``(file name, start frame, ped ids)``.  Files are read in sorted order, so the
    window order is deterministic.
    """

    def __init__(
        self,
        folder: str | Path,
        obs_len: int = 8,
        pred_len: int = 12,
        skip: int = 1,
        min_agents: int = 1,
        frame_step: float | None = None,
        *,
        listed: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.obs_len, self.pred_len = obs_len, pred_len
        if not self.folder.is_dir():
            raise FileNotFoundError(f"no trajectory files (*.txt) in {self.folder}: no such folder")
        if listed is None:
            root, where = self.folder.parent.parent, Path(*self.folder.parts[-2:]).as_posix()
            listed = folder_listing(read_checksums(default_listing(root)), where)
        if not listed:
            raise FileNotFoundError(f"no trajectory files (*.txt) listed for {self.folder}")
        self.files = verify_listed(self.folder, listed)
        self.windows: list[Tensor] = []
        self.meta: list[tuple[str, float, tuple[float, ...]]] = []
        for path in self.files:
            data = read_trajectory_file(path)
            for w in _iter_windows(data, obs_len, pred_len, skip, min_agents, frame_step):
                self.windows.append(torch.from_numpy(w.positions).float())
                self.meta.append((path.name, w.start_frame, tuple(w.peds.tolist())))

    @classmethod
    def from_split(
        cls,
        root: str | Path,
        scene: str,
        split: str,
        obs_len: int = 8,
        pred_len: int = 12,
        *,
        checksums: Mapping[str, str] | str | Path | None = None,
        **kwargs,
    ) -> TrajectoryDataset:
        """The dataset of ``root/<scene>/<split>`` (split: train, val or test), reading the files
        that ``checksums`` lists there: a mapping of root-relative paths to sha256 (a dataset
        manifest's ``sha256``), a ``sha256sum`` file, or by default :func:`default_listing`."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if checksums is None:
            checksums = default_listing(root)
        sums = checksums if isinstance(checksums, Mapping) else read_checksums(checksums)
        listed = folder_listing(sums, f"{scene}/{split}")
        return cls(Path(root) / scene / split, obs_len, pred_len, listed=listed, **kwargs)

    @classmethod
    def from_manifest(
        cls,
        manifest: Mapping,
        scene: str,
        split: str,
        obs_len: int = 8,
        pred_len: int = 12,
        **kwargs,
    ) -> TrajectoryDataset:
        """The split of a ``prepare-data`` manifest, read through the sha256 it lists per file."""
        sums = manifest.get("sha256")
        if not isinstance(sums, Mapping) or not sums:
            raise ValueError(
                "the trajectory manifest lists no per-file sha256 (written by an older softeq): "
                "run prepare-data again"
            )
        return cls.from_split(
            manifest["root"], scene, split, obs_len, pred_len, checksums=sums, **kwargs
        )

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        positions = self.windows[index]
        return positions[:, : self.obs_len], positions[:, self.obs_len :]

    @property
    def num_agents(self) -> int:
        """Agent windows: the number of (agent, window) pairs, the unit ADE / FDE average over."""
        return sum(len(w) for w in self.windows)

    def agent_tensors(self) -> tuple[Tensor, Tensor]:
        """Every agent of every window, stacked: obs (N, obs_len, 2) and fut (N, pred_len, 2)."""
        if not self.windows:
            empty = torch.zeros(0, self.obs_len + self.pred_len, 2)
        else:
            empty = torch.cat(self.windows)
        return empty[:, : self.obs_len], empty[:, self.obs_len :]


def collate_windows(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Batch windows with different numbers of agents: zero-pad to the largest.

    Returns obs (B, A_max, obs_len, 2), fut (B, A_max, pred_len, 2) and a bool mask (B, A_max)
    that is True for real agents.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    size = max(len(obs) for obs, _ in batch)
    obs0, fut0 = batch[0]
    obs = obs0.new_zeros(len(batch), size, *obs0.shape[1:])
    fut = fut0.new_zeros(len(batch), size, *fut0.shape[1:])
    mask = torch.zeros(len(batch), size, dtype=torch.bool)
    for i, (o, f) in enumerate(batch):
        obs[i, : len(o)], fut[i, : len(f)], mask[i, : len(o)] = o, f, True
    return obs, fut, mask
