"""ETH/UCY reading, Social-GAN windowing, dataset + collate, checksums, the synthetic generator."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from softeq.data.eth_ucy import (
    SCENES,
    SGAN_MIN_AGENTS,
    TrajectoryDataset,
    collate_windows,
    read_trajectory_file,
    windows,
)
from softeq.data.listing import verify_checksums, write_checksums
from softeq.data.synthetic_trajectories import SYNTHETIC_SCENES, build_synthetic

REAL = Path(__file__).parents[2] / "shared/data/eth_ucy"

# ped -> (first frame, last frame); frames step 10.  Frames 100..190 hold nobody (a gap).
PRESENCE = {1: (0, 90), 2: (20, 70), 3: (0, 40), 4: (200, 240)}


def _xy(frame: int, ped: int) -> tuple[float, float]:
    return frame / 10 + 100 * ped, -float(ped)


def _rows() -> list[tuple[int, int, float, float]]:
    rows = [(f, p, *_xy(f, p)) for p, (a, b) in PRESENCE.items() for f in range(a, b + 1, 10)]
    return sorted(rows)


def _write(path: Path, rows, sep: str = "\t") -> Path:
    path.write_text("".join(sep.join(f"{v}" for v in row) + "\n" for row in rows))
    return path


@pytest.fixture
def small_file(tmp_path):
    return _write(tmp_path / "small.txt", _rows())


def test_read_trajectory_file_tabs_and_any_whitespace(tmp_path, small_file):
    data = read_trajectory_file(small_file)
    assert data.shape == (len(_rows()), 4) and data.dtype == np.float64
    np.testing.assert_array_equal(data, np.array(_rows(), dtype=float))
    spaced = _write(tmp_path / "spaced.txt", _rows(), sep="  ")
    np.testing.assert_array_equal(read_trajectory_file(spaced), data)


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("10\t1.0\tabc\t2.0", "not a number"),
        ("10\t1.0\t2.0\t3.0\t4.0", "expected 4 fields"),
        ("10\t1.0\tnan\t2.0", "non-finite"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, what):
    path = tmp_path / "broken.txt"
    path.write_text("0\t1.0\t1.0\t2.0\n\n" + bad + "\n20\t1.0\t1.0\t2.0\n")
    with pytest.raises(ValueError, match=rf"broken\.txt:3: {what}"):
        read_trajectory_file(path)


def test_windows_counts_agents_and_min_agents(small_file):
    data = read_trajectory_file(small_file)
    # obs 2 + pred 3 = 5 consecutive frames; 15 unique frames -> starts at the first 11
    # starts 0..50 -> agents {1,3}, {1}, {1,2}, {1,2}, {1}, {1}; starts 60..90 span the gap ->
    # nobody; start 200 -> {4}
    found = windows(data, 2, 3)
    assert [len(w) for w in found] == [2, 1, 2, 2, 1, 1, 1]
    assert [len(w) for w in windows(data, 2, 3, min_agents=2)] == [2, 2, 2]
    # every other unique frame: starts 0, 20, 40, (60, 80: across the gap), 200
    assert [len(w) for w in windows(data, 2, 3, skip=2)] == [2, 2, 1, 1]
    assert windows(data, 2, 3, min_agents=3) == []
    # every kept agent is present in all frames: positions are the file's values, in order
    starts = [0, 10, 20, 30, 40, 50, 200]
    peds = [[1, 3], [1], [1, 2], [1, 2], [1], [1], [4]]
    for window, start, ids in zip(found, starts, peds, strict=True):
        assert window.shape == (len(ids), 5, 2)
        expected = [[_xy(start + 10 * k, p) for k in range(5)] for p in ids]
        np.testing.assert_array_equal(window, np.array(expected))


def test_windows_reject_bad_input():
    with pytest.raises(ValueError, match="two observations"):
        windows(np.array([[0, 1, 0, 0], [0, 1, 1, 1], [10, 1, 2, 2]], dtype=float), 1, 1)
    with pytest.raises(ValueError, match="frame step"):
        windows(np.array([[0, 1, 0, 0], [10, 1, 1, 1]], dtype=float), 1, 1, frame_step=4)
    with pytest.raises(ValueError, match="obs_len"):
        windows(np.zeros((0, 4)), 0, 1)


def _sgan_reference(data, obs_len, pred_len, skip=1, min_ped=1):
    """A literal port of sgan's window loop (agents per kept window)."""
    seq_len = obs_len + pred_len
    frames = np.unique(data[:, 0]).tolist()
    frame_data = [data[f == data[:, 0], :] for f in frames]
    num_sequences = math.ceil((len(frames) - seq_len + 1) / skip)
    counts = []
    for idx in range(0, num_sequences * skip + 1, skip):
        curr = np.concatenate(frame_data[idx : idx + seq_len], axis=0)
        considered = 0
        for ped in np.unique(curr[:, 1]):
            seq = curr[curr[:, 1] == ped, :]
            pad_front = frames.index(seq[0, 0]) - idx
            pad_end = frames.index(seq[-1, 0]) - idx + 1
            considered += pad_end - pad_front == seq_len
        if considered > min_ped:
            counts.append(considered)
    return counts


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp("synthetic"), seed=0)


@pytest.mark.parametrize("skip", [1, 3])
def test_windows_match_sgan_with_its_min_agents(synthetic_root, skip):
    path = synthetic_root / "corridor060" / "test" / "corridor060.txt"
    data = read_trajectory_file(path)
    ours = [len(w) for w in windows(data, 8, 12, skip=skip, min_agents=SGAN_MIN_AGENTS)]
    assert ours == _sgan_reference(data, 8, 12, skip=skip) and len(ours) > 10


def test_dataset_and_collate(synthetic_root):
    ds = TrajectoryDataset.from_split(synthetic_root, "corridor000", "test", obs_len=8, pred_len=12)
    assert len(ds) > 0 and ds.num_agents == sum(len(ds[i][0]) for i in range(len(ds)))
    obs, fut = ds[0]
    assert obs.shape[1:] == (8, 2) and fut.shape[1:] == (12, 2) and obs.dtype == torch.float32
    batch = [ds[i] for i in range(6)]
    b_obs, b_fut, mask = collate_windows(batch)
    size = max(len(o) for o, _ in batch)
    assert b_obs.shape == (6, size, 8, 2) and b_fut.shape == (6, size, 12, 2)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == [len(o) for o, _ in batch]
    for i, (o, f) in enumerate(batch):
        assert torch.equal(b_obs[i, : len(o)], o) and torch.equal(b_fut[i, : len(f)], f)
        assert (b_obs[i, len(o) :] == 0).all() and (b_fut[i, len(f) :] == 0).all()
    all_obs, all_fut = ds.agent_tensors()
    assert all_obs.shape == (ds.num_agents, 8, 2) and all_fut.shape == (ds.num_agents, 12, 2)
    with pytest.raises(FileNotFoundError, match="no trajectory files"):
        TrajectoryDataset(synthetic_root / "nowhere")
    with pytest.raises(ValueError, match="split"):
        TrajectoryDataset.from_split(synthetic_root, "corridor000", "dev")


def test_checksums_pass_then_name_the_corrupted_and_missing_file(tmp_path):
    for name in ("a.txt", "sub/b.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        _write(tmp_path / name, _rows())
    write_checksums(tmp_path, ["a.txt", "sub/b.txt"], tmp_path / "SHA256SUMS")
    assert verify_checksums(tmp_path) == 2
    (tmp_path / "sub" / "b.txt").write_text("0\t1.0\t0.0\t0.0\n")
    with pytest.raises(ValueError, match=r"sub/b\.txt: sha256 mismatch"):
        verify_checksums(tmp_path, tmp_path / "SHA256SUMS")
    (tmp_path / "sub" / "b.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"sub/b\.txt"):
        verify_checksums(tmp_path)
    (tmp_path / "BAD").write_text("xyz  a.txt\n")
    with pytest.raises(ValueError, match=r"BAD:1"):
        verify_checksums(tmp_path, tmp_path / "BAD")


def test_synthetic_layout_format_and_determinism(synthetic_root, tmp_path):
    scenes = list(SYNTHETIC_SCENES)
    assert verify_checksums(synthetic_root) == len(scenes) * (1 + 2 * (len(scenes) - 1))
    for scene in scenes:
        assert [p.name for p in (synthetic_root / scene / "test").iterdir()] == [f"{scene}.txt"]
        train = sorted(p.name for p in (synthetic_root / scene / "train").iterdir())
        assert train == sorted(f"{other}_train.txt" for other in scenes if other != scene)
    text = (synthetic_root / scenes[0] / "test" / f"{scenes[0]}.txt").read_text()
    first = text.splitlines()[0].split("\t")
    assert len(first) == 4 and first[1].endswith(".0")
    data = read_trajectory_file(synthetic_root / scenes[0] / "test" / f"{scenes[0]}.txt")
    gaps = np.diff(np.unique(data[:, 0]))  # step 10; longer gaps where the corridor was empty
    assert gaps.min() == 10.0 and (gaps % 10 == 0).all()
    assert 500 < len(data) < 5000  # small: a few thousand lines per scene
    again = build_synthetic(tmp_path / "again", seed=0)
    assert (again / "SHA256SUMS").read_text() == (synthetic_root / "SHA256SUMS").read_text()
    other = build_synthetic(tmp_path / "other", seed=1)
    assert (other / "SHA256SUMS").read_text() != (synthetic_root / "SHA256SUMS").read_text()


# windows for obs 8 / pred 12 on each real test scene: (windows, agent windows) with
# min_agents=1 and with sgan's filter (min_agents=2; cross-checked against a port of its loop)
REAL_COUNTS = {
    "eth": ((253, 364), (70, 181)),
    "hotel": ((445, 1197), (301, 1053)),
    "univ": ((947, 24334), (947, 24334)),
    "zara1": ((705, 2356), (602, 2253)),
    "zara2": ((998, 5910), (921, 5833)),
}


def test_real_eth_ucy_checksums_and_window_counts():
    if not (REAL / "SHA256SUMS").is_file():
        pytest.skip(f"real ETH/UCY data not found at {REAL}")
    assert verify_checksums(REAL) == 74
    for scene in SCENES:
        for min_agents, expected in zip((1, SGAN_MIN_AGENTS), REAL_COUNTS[scene], strict=True):
            ds = TrajectoryDataset.from_split(REAL, scene, "test", 8, 12, min_agents=min_agents)
            assert (len(ds), ds.num_agents) == expected, (scene, min_agents)
