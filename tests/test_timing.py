"""Projector construction timing, the paper's case (Table 6): an equivariant map on a k x k grid.

Block-Schur is measured at every grid, the dense Kronecker SVD on small grids, fitted as
t = a d^p and extrapolated to the target grid. No assertion here is about speed (the machine is
noisy): only the table's structure, the fit, and the agreement of the two constructions that
the timing compares.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from softeq.cli import main  # noqa: E402
from softeq.figures.timing import plot_construction_timing  # noqa: E402
from softeq.groups import grid_action  # noqa: E402
from softeq.pipeline import validate_config  # noqa: E402
from softeq.results.ablations import (  # noqa: E402
    GRID_TIMING_COLUMNS,
    fit_power_law,
    read_timing,
    reported_construction,
    write_construction_timing,
)
from softeq.timing import (  # noqa: E402
    max_abs_diff,
    measure_grid_timing,
    time_grid_projector_build,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


@pytest.fixture(scope="module")
def grid_table():
    return measure_grid_timing(grids=(3, 4, 5), schur_grids=(6,), target_grid=14, repeats=2)


def test_grid_table_has_measured_and_extrapolated_rows(grid_table):
    df = grid_table
    assert list(df.columns) == list(GRID_TIMING_COLUMNS)
    assert df["grid"].tolist() == [3, 4, 5, 6, 14]
    assert df["d"].tolist() == [9, 16, 25, 36, 196]
    assert df.loc[df["grid"] == 14, "operator"].item() == 38_416  # d^2: the paper's operator
    assert (df["schur_s"] > 0).all()  # block-Schur runs at every grid, 14 x 14 included
    measured = df[df["dense_source"] == "measured"]
    assert measured["grid"].tolist() == [3, 4, 5] and (measured["dense_s"] > 0).all()
    extrapolated = df[df["dense_source"] == "extrapolated"]
    assert extrapolated["grid"].tolist() == [14]
    assert math.isnan(df.loc[df["grid"] == 6, "dense_s"].item())  # neither measured nor fitted
    p, a = df["fit_p"].unique(), df["fit_a"].unique()
    assert p.size == a.size == 1 and math.isfinite(p[0]) and a[0] > 0
    assert extrapolated["dense_s"].item() == pytest.approx(a[0] * 196 ** p[0])
    assert extrapolated["dense_s"].item() > measured["dense_s"].max()


def test_schur_and_dense_agree_on_the_grid_projector(grid_table):
    # the correctness behind the timing: both constructions give the same projector
    assert (grid_table.loc[grid_table["dense_source"] == "measured", "max_abs_diff"] < 1e-6).all()
    built = {}
    for softness in (0.0, 0.5):
        for method in ("schur", "dense"):
            built[method] = time_grid_projector_build(4, method, softness=softness)[1]
        assert max_abs_diff(built["schur"], built["dense"], 16, seed=1) < 1e-6
    # at b = 0 the projected map commutes with the 90-degree grid rotation
    (rot,) = grid_action("C4", 4)
    rot = torch.tensor(rot, dtype=torch.float64)
    weight = torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for method in ("schur", "dense"):
        w = time_grid_projector_build(4, method, softness=0.0)[1].apply(weight)
        assert torch.allclose(rot @ w, w @ rot, atol=1e-9)
        assert not torch.allclose(weight, w, atol=1e-3)


def test_fit_power_law_recovers_the_exponent():
    d = np.array([16.0, 25.0, 36.0, 49.0])
    a, p = fit_power_law(d, 2e-9 * d**6)
    assert p == pytest.approx(6.0) and a == pytest.approx(2e-9)
    with pytest.raises(ValueError, match="needs 2"):
        fit_power_law([16.0], [1.0])
    with pytest.raises(ValueError, match="dense timings at two or more grids"):
        measure_grid_timing(grids=(3,), schur_grids=(), target_grid=4)


def test_grid_table_files_and_figure(grid_table, tmp_path):
    csv = tmp_path / "timing.csv"
    grid_table.to_csv(csv, index=False)
    paths = write_construction_timing(csv, tmp_path / "timing_table")
    table = read_timing(paths[0])
    assert table["dense_source"].tolist() == ["measured"] * 3 + ["", "extrapolated"]
    assert table["speedup"].iloc[-1] == pytest.approx(
        table["dense_s"].iloc[-1] / table["schur_s"].iloc[-1]
    )
    md, tex = paths[1].read_text(), paths[2].read_text()
    p = grid_table["fit_p"].iloc[0]
    assert f"extrapolated (fit p = {p:.2f})" in md and "38,416" in md
    # the paper's values close the table, marked as coming from a secondary source
    assert "reported (secondary source)" in md and "reported (secondary source)" in tex
    assert f"{reported_construction()['dense_s']:.3g}" in md
    png = plot_construction_timing(csv, tmp_path / "timing.png")
    assert png.stat().st_size > 5_000
    # the written table reads back and draws again (the stage writes, then draws from it)
    assert plot_construction_timing(paths[0], tmp_path / "again.png").stat().st_size > 5_000


def test_stage_runs_the_grid_case(tmp_path):
    stem, png = tmp_path / "ablation_construction_timing", tmp_path / "timing.png"
    main(
        [
            "construction-timing",
            "--case",
            "grid",
            "--grids",
            "3,4",
            "--schur-grids",
            "5",
            "--target-grid",
            "6",
            "--out-stem",
            str(stem),
            "--png",
            str(png),
        ]
    )
    df = pd.read_csv(f"{stem}.csv")
    assert df["grid"].tolist() == [3, 4, 5, 6]
    assert df["dense_source"].fillna("").tolist() == ["measured", "measured", "", "extrapolated"]
    assert (df["group"] == "C4").all() and png.stat().st_size > 5_000
    assert "reported (secondary source)" in Path(f"{stem}.md").read_text()


def _resolved(name: str) -> dict:
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    return validate_config(config, SCHEMA)["construction_timing"]


def test_configs_resolve_the_timing_case():
    paper = _resolved("paper.yaml")
    assert paper["case"] == "grid" and paper["group"] == "C4" and paper["target_grid"] == 14
    assert max(paper["grids"]) < paper["target_grid"] <= max(paper["schur_grids"])
    embedded = _resolved("config.yaml")
    assert embedded["case"] == "grid" and max(embedded["grids"]) <= 6  # fast in `make run`

    def with_timing(timing: dict | None) -> dict:
        config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
        config.pop("construction_timing")
        if timing is not None:
            config["construction_timing"] = timing
        return validate_config(config, SCHEMA)["construction_timing"]

    default = with_timing(None)
    assert default["case"] == "pairs" and default["widths"] == [8, 16, 32]  # as before
    for bad in ({"case": "svd"}, {"group": "C8"}, {"grids": [4]}, {"grids": [4, 12]}):
        with pytest.raises(Exception, match="construction_timing"):
            with_timing(bad)


def test_paper_rule_passes_the_grid_case_to_the_stage():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["snakemake", "-n", "-p", "--configfile", "config/paper.yaml", "--forcerun",
         "construction_timing", "results/paper/figures/ablation_construction_timing.png"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    paper = _resolved("paper.yaml")
    grids = ",".join(str(k) for k in paper["grids"])
    command = re.search(r"softeq construction-timing .*", result.stdout)
    assert command, result.stdout[-2000:]
    assert "--case grid" in command[0] and f"--grids {grids}" in command[0]
    assert "--target-grid 14" in command[0] and "--group C4" in command[0]
