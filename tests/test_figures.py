"""softeq.figures: evaluation JSONs -> tables (checked against numpy) -> figures from CSVs only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from matplotlib.image import imread  # noqa: E402

from softeq.figures.plots import (  # noqa: E402
    plot_bounds,
    plot_error_vs_angle,
    plot_tunability,
)
from softeq.figures.style import DPI, PANEL_W  # noqa: E402
from softeq.results.aggregate import (  # noqa: E402
    IDENTITY,
    aggregate,
    angles_table,
    bounds_table,
    load_runs,
    read_table,
    summarise,
    write_table,
)

BACKBONES = ("vit", "resnet")
SOFTNESS = (0.0, 0.25, 0.5, 0.75, 1.0)
SEEDS = (0, 1)
ANGLES = tuple(float(a) for a in range(-180, 181, 15))
LAYERS = {
    "vit": [("patch_embed.proj.weight", "kernel", 16, 1.27), ("pos_embed", "token_grid", 16, 1.41)],
    "resnet": [("conv1.weight", "kernel", 9, 1.41), ("layer1.0.conv1.weight", "kernel", 9, 1.0)],
}


def _metrics(backbone: str, b: float, seed: int) -> dict[str, float]:
    """Plausible, seed-dependent metrics: accuracy rises with b, invariance error too."""
    rng = np.random.default_rng([BACKBONES.index(backbone), int(b * 100), seed])
    base = 0.9 if backbone == "vit" else 0.85
    acc = base - 0.1 * (1 - b) + 0.01 * rng.standard_normal()
    rot_acc = 0.75 + 0.05 * (1 - b) + 0.01 * rng.standard_normal()
    return {
        "acc": acc,
        "top5": min(1.0, acc + 0.06),
        "rot_acc": rot_acc,
        "rot_top5": min(1.0, rot_acc + 0.1),
        "combined": math.sqrt(acc * rot_acc),
        "inv_error": 0.02 + 0.3 * b + 0.02 * abs(rng.standard_normal()),
        "inv_error_rot90": 0.01 + 0.1 * b,
    }


def _record(backbone: str, b: float, seed: int, **overrides) -> dict:
    sweep = [
        {
            "angle": a,
            "inv_error": (0.01 + b * 0.3 * abs(math.sin(math.radians(2 * a)))) * (1 + 0.05 * seed),
            "acc": 0.9 - 0.1 * b * abs(math.sin(math.radians(2 * a))),
        }
        for a in ANGLES
    ]
    bounds = []
    for i, (name, kind, size, sigma) in enumerate(LAYERS[backbone]):
        b_layer = 0.5 if name == "pos_embed" else b
        bounds.append(
            {
                "name": name,
                "kind": kind,
                "group": "C4",
                "operator_size": size,
                "filter": "shrink",
                "b": b_layer,
                "b_eff": b_layer,
                "sigma_max": sigma,
                "measured": b_layer * sigma * (0.4 + 0.2 * i + 0.05 * seed),
                "bound": b_layer * sigma,
            }
        )
    record = {
        "task": "classification",
        "dataset": "digits",
        "backbone": backbone,
        "group": "C4",
        "filter": "shrink",
        "softness": b,
        "softness_pos": 0.5 if backbone == "vit" else None,
        "seed": seed,
        "metrics": _metrics(backbone, b, seed),
        "angle_sweep": sweep,
        "bounds": bounds,
        "provenance": {
            "softeq_version": "0.1.0",
            "git_commit": "abc",
            "torch": "2.14.1",
            "device": "cpu",
            "config": {},
            "created": "2026-01-01T00:00:00",
        },
    }
    record.update(overrides)
    return record


def fabricate(root: Path) -> list[Path]:
    """Evaluation JSONs for 2 backbones x 5 softness values x 2 seeds, in the evaluation schema."""
    paths = []
    for backbone in BACKBONES:
        for b in SOFTNESS:
            for seed in SEEDS:
                path = root / "results" / backbone / f"b~{b}" / f"seed~{seed}" / "eval.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(_record(backbone, b, seed)))
                paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[list[Path], Path, list[Path]]:
    root = tmp_path_factory.mktemp("figures")
    paths = fabricate(root)
    written = aggregate(paths, root / "tables")
    return paths, root / "tables", written


def test_aggregate_writes_every_table(tables):
    _, out, written = tables
    names = [p.name for p in written]
    stems = [f"classification_digits_{t}" for t in ("runs", "summary", "bounds", "angles")]
    assert names == [f"{s}.{ext}" for s in stems for ext in ("csv", "md")]
    assert all(p.parent == out and p.stat().st_size > 0 for p in written)
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_runs_and_summary_match_numpy(tables):
    paths, out, _ = tables
    runs = load_runs(paths)
    assert len(runs) == len(BACKBONES) * len(SOFTNESS) * len(SEEDS)
    assert list(runs.columns[: len(IDENTITY)]) == list(IDENTITY)
    assert {"acc", "inv_error", "combined", "inv_error_rot90"} <= set(runs.columns)
    assert runs.loc[runs.backbone == "resnet", "softness_pos"].isna().all()

    summary = read_table(out / "classification_digits_summary.csv")
    assert len(summary) == len(BACKBONES) * len(SOFTNESS)
    assert (summary["n_seeds"] == len(SEEDS)).all()
    for backbone in BACKBONES:
        for b in SOFTNESS:
            row = summary[(summary.backbone == backbone) & (summary.softness == b)]
            assert len(row) == 1
            for metric in ("acc", "inv_error", "combined"):
                values = np.array([_metrics(backbone, b, s)[metric] for s in SEEDS])
                assert row[f"{metric}_mean"].item() == pytest.approx(values.mean(), rel=1e-12)
                assert row[f"{metric}_std"].item() == pytest.approx(values.std(ddof=1), rel=1e-12)
    pd.testing.assert_frame_equal(summary, summarise(runs), check_exact=False, rtol=1e-15)


def test_csvs_round_trip(tables):
    paths, out, _ = tables
    expected = {
        "runs": load_runs(paths),
        "summary": summarise(load_runs(paths)),
        "bounds": bounds_table(paths),
        "angles": angles_table(paths),
    }
    for name, df in expected.items():
        back = read_table(out / f"classification_digits_{name}.csv")
        pd.testing.assert_frame_equal(back, df, check_exact=True)
    bounds = expected["bounds"]
    assert len(bounds) == len(paths) * 2
    assert {"layer", "layer_group", "layer_filter", "b", "measured", "bound"} <= set(bounds.columns)
    assert (bounds["measured"] <= bounds["bound"]).all()
    assert len(expected["angles"]) == len(paths) * len(ANGLES)


def test_markdown_has_header_separator_and_rows(tables):
    _, out, _ = tables
    for name in ("runs", "summary", "bounds", "angles"):
        df = read_table(out / f"classification_digits_{name}.csv")
        lines = (out / f"classification_digits_{name}.md").read_text().splitlines()
        assert len(lines) == 2 + len(df)
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        assert header == list(df.columns)
        assert all(set(c.strip()) <= set("-:") for c in lines[1].strip("|").split("|"))
        assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    md = (out / "classification_digits_summary.md").read_text().splitlines()
    acc = read_table(out / "classification_digits_summary.csv")["acc_mean"].iloc[0]
    assert f"{acc:.4g}" in md[2]


def test_write_table_is_readable_for_awkward_values(tmp_path):
    df = pd.DataFrame({"dataset": ["NA", "a|b"], "x": [1 / 3, math.nan], "n": [1, 2]})
    df["dataset"] = df["dataset"].astype("str")
    csv, md = write_table(df, tmp_path / "sub" / "t.v1")
    assert (csv.name, md.name) == ("t.v1.csv", "t.v1.md")
    pd.testing.assert_frame_equal(read_table(csv), df)
    lines = md.read_text().splitlines()
    assert "0.3333 |" in lines[2] and r"a\|b" in lines[3]


def test_bad_inputs_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_runs([bad])
    missing = tmp_path / "missing.json"
    record = _record("vit", 0.5, 0)
    del record["seed"]
    missing.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"missing\.json.*seed"):
        load_runs([missing])
    nobounds = tmp_path / "nobounds.json"
    record = _record("vit", 0.5, 0)
    del record["bounds"]
    nobounds.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"nobounds\.json"):
        bounds_table([nobounds])
    twin = tmp_path / "twin.json"
    twin.write_text(json.dumps(_record("vit", 0.5, 0)))
    with pytest.raises(ValueError, match=r"twin\.json"):
        load_runs([twin, twin])
    with pytest.raises(ValueError, match="no evaluation"):
        load_runs([])


def test_metrics_are_generic(tmp_path):
    """A trajectory run's metrics become columns with no change to the code; tasks stay apart."""
    traj = _record("vit", 0.5, 0, task="trajectory", dataset="eth")
    traj["metrics"] = {"ade": 0.4, "fde": 0.8, "eq_error": 0.01, "note": "text is skipped"}
    traj["angle_sweep"] = [{"angle": 0.0, "eq_error": 0.0}, {"angle": 90.0, "eq_error": 0.1}]
    (tmp_path / "t.json").write_text(json.dumps(traj))
    (tmp_path / "c.json").write_text(json.dumps(_record("vit", 0.5, 0)))
    runs = load_runs([tmp_path / "t.json", tmp_path / "c.json"])
    assert {"ade", "fde", "eq_error", "acc"} <= set(runs.columns) and "note" not in runs.columns
    written = aggregate([tmp_path / "t.json", tmp_path / "c.json"], tmp_path / "out")
    assert len(written) == 16
    summary = read_table(tmp_path / "out" / "trajectory_eth_summary.csv")
    assert "ade_mean" in summary.columns and "acc_mean" not in summary.columns
    assert summary["ade_std"].isna().all()  # one seed: the sample std is undefined


def _png(path: Path, min_width: float) -> None:
    image = imread(path)
    assert path.stat().st_size > 0 and image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[1] >= min_width * DPI and image.shape[0] > 300


def test_plots_write_pngs(tables, tmp_path):
    _, out, _ = tables
    summary = out / "classification_digits_summary.csv"
    _png(plot_tunability(summary, tmp_path / "tunability.png"), 2 * PANEL_W)
    _png(plot_bounds(out / "classification_digits_bounds.csv", tmp_path / "b.png"), 2 * PANEL_W)
    angles = out / "classification_digits_angles.csv"
    _png(plot_error_vs_angle(angles, tmp_path / "angles.png", pdf=True), 2 * PANEL_W)
    assert (tmp_path / "angles.pdf").read_bytes().startswith(b"%PDF")
    assert not (tmp_path / "tunability.pdf").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["tunability.png", "b.png", "angles.png", "angles.pdf"]
    )


@pytest.mark.parametrize(
    ("plot", "table", "column"),
    [
        (plot_tunability, "summary", "inv_error_std"),
        (plot_bounds, "bounds", "bound"),
        (plot_error_vs_angle, "angles", "angle"),
    ],
)
def test_plots_raise_on_a_missing_column(tables, tmp_path, plot, table, column):
    _, out, _ = tables
    df = read_table(out / f"classification_digits_{table}.csv").drop(columns=[column])
    csv, _ = write_table(df, tmp_path / "broken")
    with pytest.raises(ValueError, match=rf"broken\.csv.*{column}"):
        plot(csv, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
