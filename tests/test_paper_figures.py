"""Figure 1 (first-layer softening of a real image) and Tables 1-3 / ablations of the paper."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
pytest.importorskip("skimage")
timm = pytest.importorskip("timm")

from matplotlib.image import imread  # noqa: E402

from softeq.figures.timing import plot_construction_timing  # noqa: E402
from softeq.metrics.feature_maps import (  # noqa: E402
    default_image,
    default_input_size,
    figure1_data,
    first_layer,
)
from softeq.results.ablations import (  # noqa: E402
    write_construction_timing,
    write_filter_ablation,
)
from softeq.results.columns import setting_label  # noqa: E402
from softeq.results.paper_tables import paper_table, write_paper_table  # noqa: E402
from softeq.results.reported import (  # noqa: E402
    REPORTED,
    SECONDARY,
    read_reported,
    reported_numbers,
)
from softeq.results.writers import latex_escape  # noqa: E402
from softeq.stages.figures import render_figure1  # noqa: E402
from softeq.timing import measure_construction_timing  # noqa: E402

# ------------------------------------------------------------------------------------- figure 1


def _tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=4,
        embed_dim=24,
        depth=1,
        num_heads=2,
        num_classes=10,
    ).eval()


def _tiny_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "resnet18", pretrained=False, channels=(8, 16, 32, 64), stem_width=8, num_classes=10
    ).eval()


def _plain_error_map(model: torch.nn.Module, layer: str, image: np.ndarray) -> np.ndarray:
    """||F(x) - R^-1 F(Rx)|| over channels, computed directly on the unsoftened model."""
    out = {}
    module = model.get_submodule(layer)
    handle = module.register_forward_hook(lambda _m, _i, o: out.__setitem__("f", o))
    x = torch.from_numpy(image).float()[None]
    with torch.no_grad():
        model(x)
        f = out["f"]
        model(torch.rot90(x, 1, dims=(-2, -1)))
        back = torch.rot90(out["f"], -1, dims=(-2, -1))
    handle.remove()
    return (f - back)[0].double().norm(dim=0).numpy()


def test_default_image_is_the_cat_in_unit_range():
    img = default_image(33)
    assert img.shape == (1, 3, 33, 33) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0 and float(img.std()) > 0.05


@pytest.mark.parametrize(
    ("factory", "size", "layer"),
    [(_tiny_vit, 32, "patch_embed.proj"), (_tiny_resnet, 33, "conv1")],
)
def test_figure1_data_strict_is_exact_and_plain_is_the_model(factory, size, layer):
    model = factory()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert first_layer(model) == layer
    data = figure1_data(model, softness=(0.0, 0.5, 1.0), input_size=size, normalize=False)
    assert data["layer"] == layer and data["input_size"] == size
    assert len(data["error_map"]) == len(data["kernels"]) == 3
    # the plain model is untouched (every softness softens its own copy)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    strict, half, plain = data["error_map"]
    scale = float(np.abs(data["feature"][2]).max())
    assert float(strict.max()) < 1e-5 * max(scale, 1.0)
    assert data["rel_error"][0] < 1e-5 and abs(data["net_kl"][0]) < 1e-6
    # b = 0 kernels are C4-invariant slices
    k0 = torch.from_numpy(data["kernels"][0])
    assert torch.allclose(k0, torch.rot90(k0, 1, dims=(-2, -1)), atol=1e-6)

    expected = _plain_error_map(model, layer, data["image"])
    assert float(plain.max()) > 1e-2
    np.testing.assert_allclose(plain, expected, rtol=1e-4, atol=1e-5 * float(expected.max()))
    np.testing.assert_allclose(
        data["kernels"][2], model.get_submodule(layer).weight.detach().numpy(), atol=1e-6
    )
    assert 0 < float(half.max()) < float(plain.max())
    assert data["net_kl"][2] > data["net_kl"][0]


def test_figure1_input_size_defaults_and_checks():
    vit = _tiny_vit()
    assert default_input_size(vit) == 32
    assert default_input_size(_tiny_resnet()) == 225
    with pytest.raises(ValueError, match="multiple of the patch size"):
        figure1_data(vit, input_size=30, softness=(0.0,))
    with pytest.warns(UserWarning, match="asymmetric sampling grid"):
        figure1_data(_tiny_resnet(), input_size=32, softness=(1.0,))


def test_render_figure1_writes_a_png(tmp_path):
    out = render_figure1(_tiny_vit(), None, tmp_path / "fig1.png", softness=(0.0, 0.5, 1.0))
    assert out == tmp_path / "fig1.png" and out.stat().st_size > 10_000
    pixels = imread(out)
    assert pixels.ndim == 3 and pixels.shape[1] > pixels.shape[0] * 0.8
    assert not list(tmp_path.glob(".*.tmp"))


# -------------------------------------------------------------------------------- paper tables

_ID = ("task", "dataset", "backbone", "group", "filter", "softness", "softness_pos", "n_seeds")


def _summary(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    df = pd.DataFrame(rows)
    metrics = [c for c in df.columns if c not in _ID]
    for m in metrics:
        df[f"{m}_mean"] = df.pop(m)
        df[f"{m}_std"] = np.nan if "n_seeds" not in df else 0.01
    path = tmp_path / f"{name}_summary.csv"
    df.to_csv(path, index=False)
    return path


def _cls_rows() -> list[dict]:
    common = {"task": "classification", "dataset": "imagenet", "n_seeds": 2}
    return [
        {
            **common,
            "backbone": "vitb16",
            "group": "C4",
            "filter": "rank",
            "softness": 1.0,
            "softness_pos": 1.0,
            "acc": 0.8,
            "rot_acc": 0.7,
            "combined": math.sqrt(0.56),
            "inv_error": 0.0036,
        },
        {
            **common,
            "backbone": "vitb16",
            "group": "C4",
            "filter": "rank",
            "softness": 0.9,
            "softness_pos": 0.8,
            "acc": 0.82,
            "rot_acc": 0.8,
            "combined": 0.81,
            "inv_error": 0.0015,
        },
        {
            **common,
            "backbone": "vitb16",
            "group": "C4",
            "filter": "rank",
            "softness": 0.0,
            "softness_pos": 0.0,
            "acc": 0.5,
            "rot_acc": 0.5,
            "combined": 0.5,
            "inv_error": 0.0,
        },
        {
            **common,
            "backbone": "resnet50",
            "group": "C18",
            "filter": "rank",
            "softness": 0.95,
            "softness_pos": 0.95,
            "acc": 0.7791,
            "rot_acc": 0.7512,
            "combined": 0.7648,
            "inv_error": 0.0024,
        },
    ]


def _canon_row() -> dict:
    """The canonicalization baseline's row (its own backbone, b = 1)."""
    common = {"task": "classification", "dataset": "imagenet", "n_seeds": 1}
    return {
        **common,
        "backbone": "vitb16canon",
        "group": "C18",
        "filter": "rank",
        "softness": 1.0,
        "softness_pos": 1.0,
        "acc": 0.765,
        "rot_acc": 0.758,
        "combined": math.sqrt(0.765 * 0.758),
        "inv_error": 0.0015,
    }


def test_setting_labels():
    assert setting_label(1.0, 1.0, "C4", "rank") == "base (b=1)"
    assert setting_label(0.0, float("nan"), "C4", "rank") == "strict (b=0)"
    assert setting_label(0.9, 0.8, "C4", "rank") == "ours (b=0.9, pos=0.8, C4, rank)"
    assert setting_label(1.0, 0.8, "C72", "rank") == "ours (b=1, pos=0.8, C72, rank)"
    assert setting_label(0.95, 0.95, "C18", "shrink") == "ours (b=0.95, C18, shrink)"


def test_classification_table_values_and_layout(tmp_path):
    csv = _summary(tmp_path, "classification_imagenet", _cls_rows())
    paths = write_paper_table([csv], "classification", tmp_path / "table1")
    assert [p.name for p in paths] == ["table1.csv", "table1.md", "table1.tex"]
    df = pd.read_csv(paths[0])
    # paper order: ViT before ResNet; base, strict, ours within a backbone
    assert list(df["backbone"]) == ["vitb16"] * 3 + ["resnet50"]
    assert list(df["setting"]) == [
        "base (b=1)",
        "strict (b=0)",
        "ours (b=0.9, pos=0.8, C4, rank)",
        "ours (b=0.95, C18, rank)",
    ]
    base = df.iloc[0]
    assert base["acc"] == pytest.approx(80.0) and base["rot_acc"] == pytest.approx(70.0)
    assert base["combined"] == pytest.approx(100 * math.sqrt(0.56))
    assert base["inv_error"] == pytest.approx(0.36) and base["acc_std"] == pytest.approx(1.0)
    assert set(df["source"]) == {"ours"}
    md = paths[1].read_text()
    assert "| vitb16" in md and "80.00 ± 1.00" in md and "0.36 ± 1.00" in md
    assert "acc. (%)" in md and "inv. error (×1e-2)" in md
    tex = paths[2].read_text()
    assert tex.startswith("\\begin{tabular}{lllrrrr}") and "\\toprule" in tex
    assert "Acc.\\ (\\%)" in tex and "$\\times 10^{-2}$" in tex and "$\\pm$" in tex
    assert tex.count("\\midrule") == 2 and "±" not in tex and "\\bottomrule" in tex


def test_reported_rows_only_on_request(tmp_path):
    csv = _summary(tmp_path, "classification_imagenet", [*_cls_rows(), _canon_row()])
    plain = paper_table(csv, "classification")
    assert not plain["setting"].str.startswith("reported").any()
    rows = paper_table(csv, "classification", reported=True)
    rep = rows[rows["source"] == "reported (s)"]
    vit = rep[rep["backbone"] == "vitb16"].set_index("setting")
    # the reported base row belongs to vitb16base (the checkpoint evaluated without fine-tuning)
    assert list(vit.index) == ["reported: ours"]
    # the canonicalization numbers belong to the canonicalized backbone
    canon = rep[rep["backbone"] == "vitb16canon"].set_index("setting")
    assert list(canon.index) == ["reported: canonicalization"]
    assert REPORTED["classification"][("imagenet", "vitb16base")]["base"]["acc"] == 81.67
    assert (
        vit.loc["reported: ours", "inv_error"]
        == REPORTED["classification"][("imagenet", "vitb16")]["ours"]["inv_error"]
    )
    # DINOv2 and the base models are not in the table, so neither are their reported numbers;
    # reported after ours
    assert not {"dinov2b14", "vitb16base"} & set(rows["backbone"])
    last_vit = rows.index[rows["backbone"] == "vitb16"]
    assert rows.loc[last_vit, "source"].tolist()[-1:] == ["reported (s)"]
    paths = write_paper_table(csv, "classification", tmp_path / "t1", reported=True)
    assert "reported: canonicalization" in paths[1].read_text()


def test_segmentation_table_and_latex_escaping(tmp_path):
    common = {
        "task": "segmentation",
        "dataset": "voc",
        "backbone": "vit_b&c",
        "group": "C720",
        "filter": "rank-hard",
        "n_seeds": 5,
    }
    csv = _summary(
        tmp_path,
        "segmentation_voc",
        [
            {
                **common,
                "softness": 1.0,
                "softness_pos": 0.9,
                "miou": 0.7478,
                "rot_miou": 0.7161,
                "combined": 0.7318,
                "eq_error": 0.1112,
            },
            {
                **common,
                "softness": 1.0,
                "softness_pos": 1.0,
                "miou": 0.734,
                "rot_miou": 0.7009,
                "combined": 0.7173,
                "eq_error": 0.1231,
            },
        ],
    )
    paths = write_paper_table(csv, "segmentation", tmp_path / "table2")
    df = pd.read_csv(paths[0])
    assert list(df["setting"]) == ["base (b=1)", "ours (b=1, pos=0.9, C720, rank-hard)"]
    assert df.loc[1, "miou"] == pytest.approx(74.78) and df.loc[1, "eq_error"] == pytest.approx(
        11.12
    )
    tex = paths[2].read_text()
    assert "vit\\_b\\&c" in tex and "mIoU (\\%)" in tex
    assert latex_escape("a_b & 5% #1 {x} ~ ^ \\ $") == (
        "a\\_b \\& 5\\% \\#1 \\{x\\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{} \\$"
    )


def _traj_rows() -> list[dict]:
    rows = []
    for scene, offset in (("eth", 0.0), ("zara1", 0.2)):
        for b, eq in ((1.0, 0.14), (0.0, 0.0), (0.5, 0.1)):
            ade, rot_ade, fde, rot_fde = 0.4 + offset, 0.5 + offset, 0.8 + offset, 1.0 + offset
            rows.append(
                {
                    "task": "trajectory",
                    "dataset": f"ethucy-{scene}",
                    "backbone": "transformer",
                    "group": "SO2",
                    "filter": "rank",
                    "softness": b,
                    "softness_pos": b,
                    "n_seeds": 1,
                    "ade": ade,
                    "fde": fde,
                    "ade_sum": 12 * ade,
                    "rot_ade": rot_ade,
                    "rot_fde": rot_fde,
                    "combined_ade": (ade + rot_ade) / 2,
                    "combined_fde": (fde + rot_fde) / 2,
                    "eq_error": eq,
                }
            )
    return rows


def test_trajectory_table_summed_convention_and_scene_mean(tmp_path):
    csv = _summary(tmp_path, "trajectory_ethucy", _traj_rows())
    paths = write_paper_table([csv], "trajectory", tmp_path / "table3")
    df = pd.read_csv(paths[0], keep_default_na=False, na_values=[""])
    assert list(df["scene"]) == ["eth"] * 3 + ["zara1"] * 3 + ["mean"] * 3
    assert set(df["dataset"]) == {"ethucy"}
    eth_base = df[(df["scene"] == "eth") & (df["setting"] == "base (b=1)")].iloc[0]
    assert eth_base["cade_sum"] == pytest.approx(12 * (0.4 + 0.5) / 2)
    assert eth_base["cfde"] == pytest.approx(0.9)
    assert eth_base["eq_error_sum"] == pytest.approx(12 * 0.14)
    assert eth_base["cade"] == pytest.approx(0.45) and eth_base["ade"] == pytest.approx(0.4)
    mean_base = df[(df["scene"] == "mean") & (df["setting"] == "base (b=1)")].iloc[0]
    assert mean_base["cade_sum"] == pytest.approx(12 * (0.45 + 0.65) / 2)
    assert mean_base["cfde"] == pytest.approx((0.9 + 1.1) / 2)
    assert mean_base["n_scenes"] == 2
    assert list(df["setting"][:3]) == ["base (b=1)", "strict (b=0)", "ours (b=0.5, SO2, rank)"]
    md = paths[1].read_text()
    assert "mean" in md and "(2 sc.)" in md and "cADE, summed (m)" in md
    assert "cADE$_\\Sigma$ (m)" in paths[2].read_text()

    # summed columns from pred_len when the summary has no ade_sum
    rows = [{k: v for k, v in r.items() if k != "ade_sum"} for r in _traj_rows()]
    no_sum = _summary(tmp_path, "trajectory_nosum", rows)
    assert paper_table(no_sum, "trajectory")["cade_sum"].isna().all()
    filled = paper_table(no_sum, "trajectory", pred_len=12)
    assert filled["cade_sum"].iloc[0] == pytest.approx(12 * 0.45)

    reported = paper_table(csv, "trajectory", reported=True)
    eth = reported[(reported["scene"] == "eth") & (reported["source"] == "reported (s)")]
    # the paper's "Base" is the non-equivariant model, reported on the per-step scale
    assert set(eth["setting"]) == {"reported: strict", "reported: ours"}
    assert eth.set_index("setting").loc["reported: strict", "cade"] == 5.40
    assert eth["cade_sum"].isna().all()
    base_rows = [dict(r, backbone="transformerbase") for r in _traj_rows() if r["softness"] == 1]
    with_base = _summary(tmp_path, "trajectory_base", base_rows)
    reported = paper_table(with_base, "trajectory", reported=True)
    base = reported[(reported["scene"] == "eth") & (reported["source"] == "reported (s)")]
    assert set(base["backbone"]) == {"transformerbase"}
    assert base.set_index("setting").loc["reported: base", "cade"] == 4.73


def test_filter_ablation_compares_at_equal_softness(tmp_path):
    common = {
        "task": "segmentation",
        "dataset": "voc",
        "backbone": "vitb16seg",
        "group": "C720",
        "softness": 0.9,
        "softness_pos": 0.9,
        "n_seeds": 1,
        "rot_miou": 0.7,
        "combined": 0.72,
    }
    rows = [
        {**common, "filter": "rank", "miou": 0.7478, "eq_error": 0.1112},
        {**common, "filter": "rank-hard", "miou": 0.7392, "eq_error": 0.1174},
        {
            **common,
            "filter": "shrink",
            "softness": 0.5,
            "softness_pos": 0.5,
            "miou": 0.7,
            "eq_error": 0.1,
        },
    ]
    paths = write_filter_ablation(_summary(tmp_path, "segmentation_voc", rows), tmp_path / "abl")
    df = pd.read_csv(paths[0])
    assert list(df["filter"]) == ["rank", "rank-hard"]  # shrink has no partner at b = 0.5
    assert list(df["mask"]) == ["smooth (exp tail)", "hard (0/1)"]
    assert df["miou"].tolist() == pytest.approx([74.78, 73.92])
    assert "hard (0/1)" in paths[1].read_text() and "rank-hard" in paths[2].read_text()
    assert "eq. error, reference" not in paths[1].read_text()  # no summary holds it
    rows[0]["eq_error_reference"], rows[1]["eq_error_reference"] = 0.1112, 0.1174
    paths = write_filter_ablation(_summary(tmp_path, "segmentation_voc", rows), tmp_path / "abl")
    assert "eq. error, reference" in paths[1].read_text()  # the reported Table 7's convention
    with pytest.raises(ValueError, match="two or more filters"):
        write_filter_ablation(_summary(tmp_path, "one", rows[2:]), tmp_path / "none")


def test_construction_timing_measure_table_and_plot(tmp_path):
    df = measure_construction_timing(widths=(4, 8), dense_limit=4)
    assert list(df.columns[:3]) == ["width", "schur_s", "dense_s"]
    assert (df["schur_s"] > 0).all() and df["dense_s"].iloc[0] > 0
    assert math.isnan(df["dense_s"].iloc[1])
    assert df["max_abs_diff"].iloc[0] < 1e-10  # the two constructions agree
    csv = tmp_path / "timing.csv"
    df.to_csv(csv, index=False)
    paths = write_construction_timing(csv, tmp_path / "timing_table")
    table = pd.read_csv(paths[0])
    assert table["speedup"].iloc[0] == pytest.approx(df["dense_s"].iloc[0] / df["schur_s"].iloc[0])
    assert "Dense SVD (s)" in paths[2].read_text()
    png = plot_construction_timing(csv, tmp_path / "timing.png")
    assert png.stat().st_size > 5_000


# ------------------------------------------------------------------ reported numbers, layering


def test_shipped_reported_numbers_round_trip_into_the_tables(tmp_path):
    numbers = read_reported()
    assert {n.source for n in numbers} == {SECONDARY}  # none checked against the PDF yet
    assert all(n.task and n.metric and math.isfinite(n.value) for n in numbers)
    csv = _summary(tmp_path, "classification_imagenet", [*_cls_rows(), _canon_row()])
    rows = paper_table(csv, "classification", reported=True).set_index(["backbone", "setting"])
    shown = 0
    for n in numbers:
        if n.task != "classification" or n.backbone not in ("vitb16", "vitb16canon", "resnet50"):
            continue
        row = rows.loc[(n.backbone, f"reported: {n.setting}")]
        assert row[n.metric] == n.value and row["source"] == "reported (s)"
        shown += 1
    assert shown == 12  # vitb16: ours, vitb16canon: canonicalization, resnet50: ours (x 4 each)


def test_reported_csv_source_column_reaches_the_table(tmp_path):
    reported = tmp_path / "reported.csv"
    reported.write_text(
        "task,dataset,backbone,setting,metric,value,source,note\n"
        "classification,imagenet,resnet50,ours,acc,77.96,paper Table 1,\n"
        "classification,imagenet,resnet50,ours,inv_error,0.11,secondary source,summary\n"
        "classification,imagenet,resnet50,base,acc,77.91,paper Table 1,\n"
    )
    csv = _summary(tmp_path, "classification_imagenet", _cls_rows())
    paths = write_paper_table(
        csv, "classification", tmp_path / "t1", reported=True, reported_csv=reported
    )
    df = pd.read_csv(paths[0]).set_index("setting")
    assert df.loc["reported: base", "source"] == "reported (paper Table 1)"
    assert df.loc["reported: ours", "source"] == "reported (paper Table 1; s)"
    assert df.loc["reported: ours", "acc"] == 77.96
    assert df.loc["reported: ours", "inv_error"] == 0.11
    assert "reported: canonicalization" not in df.index  # only this file's numbers
    nested = reported_numbers(reported)
    assert nested["classification"][("imagenet", "resnet50")]["ours"] == {
        "acc": 77.96,
        "inv_error": 0.11,
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("classification,imagenet,vitb16,base,acc,eighty,secondary source,", "not a number"),
        ("classification,imagenet,vitb16,base,acc,81.6,secondary source", "expected 8 fields"),
        ("classification,imagenet,,base,acc,81.6,secondary source,", "empty field"),
        ("classification,imagenet,vitb16,base,acc,81.6,,", "empty field"),
        ("classification,imagenet,vitb16,base,acc,nan,secondary source,", "finite"),
        ("classification,imagenet,vitb16,base,acc,1.0,paper Table 1,", "repeats line 2"),
    ],
)
def test_malformed_reported_row_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "reported.csv"
    path.write_text(
        "task,dataset,backbone,setting,metric,value,source,note\n"
        "classification,imagenet,vitb16,base,acc,81.67,secondary source,\n"
        f"{line}\n"
    )
    with pytest.raises(ValueError, match=rf"reported\.csv:3: .*{message}"):
        read_reported(path)
    path.write_text("task,dataset,value\n")
    with pytest.raises(ValueError, match=r"reported\.csv:1: header"):
        read_reported(path)


_FORBIDDEN = ("models", "soften", "layers", "projectors", "engine", "pipeline", "timing")


def test_figures_import_no_model_or_compute_module():
    """figures/ only draws: no import (top level, lazy or TYPE_CHECKING) of model code."""
    import ast

    import softeq.figures

    folder = Path(softeq.figures.__file__).parent
    offending = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "softeq" and len(parts) > 1 and parts[1] in _FORBIDDEN:
                    offending.append(f"{path.name}:{node.lineno}: {name}")
                if name in ("torch", "softeq") or name.startswith("torch."):
                    offending.append(f"{path.name}:{node.lineno}: {name}")
    assert not offending, offending
