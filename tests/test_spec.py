"""A softening setting round-trips through its path segment, its JSON form and its label."""

import numpy as np
import pytest

from softeq.filters import FILTERS, filter_weights
from softeq.spec import Softening, format_softness


@pytest.mark.parametrize(
    "setting",
    [
        Softening("C4", 0.5),
        Softening("C720", 0.95, 1.0, "rank-hard"),
        Softening("SO2", 0.0, filter="threshold"),
        Softening("D4", 1, 0.25, "rank"),
        Softening("flip", 0.1234567, 0.7654321),
    ],
)
def test_round_trips_through_path_json_and_label(setting):
    assert Softening.from_path(setting.path) == setting
    assert Softening.from_json(setting.to_json()) == setting
    assert Softening.from_dict(setting.to_dict()) == setting
    assert setting.group in setting.label and setting.filter in setting.label
    assert f"b={format_softness(setting.softness)}" in setting.label


def test_path_grammar_is_key_value():
    setting = Softening("C4", 0.9, 0.8, "rank-hard")
    assert setting.path == "group~C4/filter~rank-hard/b~0.9_pos~0.8"
    assert setting.label == "C4 rank-hard b=0.9 pos=0.8"
    assert Softening("C4", 0.5).softness_pos == 0.5  # positional softness defaults to b
    assert Softening("C4", 0.5).label == "C4 shrink b=0.5"


def test_softness_is_kept_exactly():
    close = Softening("C4", 0.1234567), Softening("C4", 0.12345671)
    assert close[0].path != close[1].path
    assert Softening.from_path(close[1].path).softness == 0.12345671
    assert [format_softness(b) for b in (0, 0.25, 1.0, 0.9)] == ["0", "0.25", "1", "0.9"]


@pytest.mark.parametrize(
    ("segment", "named"),
    [
        ("C4_shrink/b~0.5_pos~0.5", "C4_shrink/b~0.5_pos~0.5"),
        ("group~C4/filter~shrink/b~0.5", "group~C4/filter~shrink/b~0.5"),
        ("group~C4/filter~blur/b~0.5_pos~0.5", "'blur'"),
        ("group~C0/filter~shrink/b~0.5_pos~0.5", "'C0'"),
        ("group~C4/filter~shrink/b~1.5_pos~0.5", "1.5"),
        ("group~C4/filter~shrink/b~.5_pos~0.5", "'.5'"),
    ],
)
def test_malformed_segment_raises_naming_it(segment, named):
    with pytest.raises(ValueError, match="softening path segment") as info:
        Softening.from_path(segment)
    assert named in str(info.value)


def test_json_errors_name_the_key():
    with pytest.raises(ValueError, match=r"--softening: unknown keys \['hard_mask'\]"):
        Softening.from_dict({"group": "C4", "softness": 0.5, "hard_mask": True}, "--softening")
    with pytest.raises(ValueError, match=r"missing \['softness'\]"):
        Softening.from_dict({"group": "C4"})
    with pytest.raises(ValueError, match="unknown filter 'soft'"):
        Softening.from_dict({"group": "C4", "softness": 0.5, "filter": "soft"})


def test_rank_hard_is_a_filter_of_its_own():
    assert "rank-hard" in FILTERS
    sigma = np.sort(np.abs(np.random.default_rng(0).normal(size=40)))
    sigma[:5] = 0.0
    hard = filter_weights(sigma, 0.6, "rank-hard")
    assert np.array_equal(hard.weights, filter_weights(sigma, 0.6, "rank", hard_mask=True).weights)
    assert set(np.unique(hard.weights)) == {0.0, 1.0}
    smooth = filter_weights(sigma, 0.6, "rank")
    assert hard.kept == smooth.kept and np.any((smooth.weights > 0) & (smooth.weights < 1))
