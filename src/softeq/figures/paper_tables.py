"""Tables 1-3 of the paper and its two ablations, from ``aggregate``'s summary CSVs.

Each table is built once as a DataFrame in display units (accuracies and mIoU in percent, KL errors
x 1e-2, distances in metres) and written three ways, atomically: ``.csv`` (numbers, full
precision, one column per value and its std over seeds), ``.md`` and ``.tex`` (a booktabs
``tabular``, "mean ± std" cells, 2 decimals as in the paper).

- Table 1 (classification): clean / rotated top-1 accuracy, combined sqrt(acc * rot_acc),
  invariance error KL x 1e-2; one block per dataset and backbone.
- Table 2 (segmentation): mIoU, rotated mIoU, combined, equivariance error KL x 1e-2.
- Table 3 (trajectories): one row per scene (datasets ``<family>-<scene>``) and the mean over the
  family's scenes. The paper reports the reference code's summed-over-steps convention
  (``ade_sum`` = pred_len x ADE): combined summed ADE = (ade_sum + rot_ade_sum) / 2, combined FDE,
  and the equivariance error summed over steps (eq_error x pred_len; that the paper's error is
  summed is an inference from its size next to the summed ADE, not verified). The standard
  mean-over-steps ADE, FDE, combined ADE and equivariance error follow in their own columns.

Rows are named from the softness columns: ``base (b=1)`` (b = 1 and pos = 1 or none),
``strict (b=0)`` (b = 0 and pos = 0 or none), else ``ours (b=..., pos=..., group, filter)`` (pos
left out where it equals b: models without a positional grid). With ``reported=True`` the paper's
numbers (:data:`REPORTED`) follow the matching dataset and backbone in rows marked "reported".
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from softeq.figures.aggregate import markdown_table, read_table
from softeq.figures.plots import OKABE_ITO, PANEL_H, PANEL_W, save_figure
from softeq.groups import PairRep
from softeq.io import atomic_write_text
from softeq.pipeline import ETHUCY_SCENES, SYNTHETIC_SCENES
from softeq.projectors import clear_cache, equivariant_projector

__all__ = [
    "REPORTED",
    "filter_ablation",
    "latex_escape",
    "measure_construction_timing",
    "paper_table",
    "plot_construction_timing",
    "setting_label",
    "write_construction_timing",
    "write_filter_ablation",
    "write_paper_table",
]

PathLike = str | os.PathLike[str]

# ------------------------------------------------------------------------------ reported numbers

# Secondary-source numbers: "reported (s)" in ../shared/PAPER.md, taken from third-party summaries
# of the paper's tables and NOT yet checked against the PDF. Quote them as "reported", never as
# verified. Keys: task -> (dataset, backbone as named in config/paper.yaml) -> setting -> values in
# display units (classification / segmentation: percent and x 1e-2; trajectories: metres, the
# summed-ADE convention). A value the summaries do not give is absent (an empty cell).
REPORTED: dict[str, dict[tuple[str, str], dict[str, dict[str, float]]]] = {
    "classification": {
        ("imagenet", "vitb16"): {
            "base": {"acc": 81.67, "rot_acc": 77.29, "combined": 79.40, "inv_error": 0.36},
            "ours": {"acc": 82.28, "rot_acc": 80.56, "combined": 81.40, "inv_error": 0.15},
            "canonicalization": {
                "acc": 76.51,
                "rot_acc": 75.81,
                "combined": 76.15,
                "inv_error": 0.15,
            },
        },
        ("imagenet", "dinov2b14"): {
            "base": {"acc": 84.27, "rot_acc": 82.82, "combined": 83.52, "inv_error": 0.13},
            "ours": {"acc": 85.31, "rot_acc": 84.44, "combined": 84.87, "inv_error": 0.05},
        },
        ("imagenet", "resnet50"): {
            "base": {"acc": 77.91, "rot_acc": 75.12, "combined": 76.48, "inv_error": 0.24},
            "ours": {"acc": 77.96, "rot_acc": 75.52, "combined": 76.72, "inv_error": 0.11},
        },
    },
    "segmentation": {
        ("voc", "vitb16seg"): {
            "base": {"miou": 73.40, "rot_miou": 70.09, "combined": 71.73, "eq_error": 12.31},
            "ours": {"miou": 74.78, "rot_miou": 71.61, "combined": 73.18, "eq_error": 11.12},
            "canonicalization": {
                "miou": 65.36,
                "rot_miou": 61.93,
                "combined": 63.62,
                "eq_error": 20.39,
            },
            # the hard-vs-smooth ablation (PAPER.md): smooth is "ours" above
            "ours, hard threshold": {"miou": 73.92, "eq_error": 11.74},
        },
        ("voc", "segformerb0"): {
            "base": {"miou": 65.35},  # "about 65.35"
            "ours": {"miou": 66.34, "rot_miou": 62.52, "combined": 64.40, "eq_error": 10.64},
        },
    },
    "trajectory": {
        ("ethucy-eth", "transformer"): {
            "base": {"cade_sum": 4.73, "cfde": 6.15, "eq_error_sum": 1.68},
            "strict": {"cade_sum": 5.40, "cfde": 7.33, "eq_error_sum": 0.00},
            "ours": {"cade_sum": 4.58, "cfde": 6.23, "eq_error_sum": 1.42},
        },
        ("ethucy-zara1", "transformer"): {
            "ours": {"cade_sum": 3.40, "cfde": 4.67, "eq_error_sum": 0.39},
        },
        ("ethucy-zara2", "transformer"): {
            "ours": {"cade_sum": 2.91, "cfde": 3.60, "eq_error_sum": 0.24},
        },
    },
    # Projector construction time (s), dense SVD vs block-Schur, at the paper's largest layer.
    "construction_timing": {
        ("paper", "largest layer"): {"reported": {"dense": 890.0, "schur": 0.25}}
    },
}
_REPORTED_SOURCE = "reported (s)"


# --------------------------------------------------------------------------------- column specs


@dataclass(frozen=True)
class _Column:
    """One displayed value: CSV name, Markdown and LaTeX headers, summary metric and scale."""

    name: str
    md: str
    tex: str
    metric: str | None = None  # summary metric (``{metric}_mean`` / ``_std``); None: derived
    scale: float = 1.0


_COLUMNS: dict[str, tuple[_Column, ...]] = {
    "classification": (
        _Column("acc", "acc. (%)", r"Acc.\ (\%)", "acc", 100.0),
        _Column("rot_acc", "rot. acc. (%)", r"Rot.\ acc.\ (\%)", "rot_acc", 100.0),
        _Column("combined", "combined (%)", r"Combined (\%)", "combined", 100.0),
        _Column(
            "inv_error", "inv. error (×1e-2)", r"Inv.\ err.\ ($\times 10^{-2}$)", "inv_error", 1e2
        ),
    ),
    "segmentation": (
        _Column("miou", "mIoU (%)", r"mIoU (\%)", "miou", 100.0),
        _Column("rot_miou", "rot. mIoU (%)", r"Rot.\ mIoU (\%)", "rot_miou", 100.0),
        _Column("combined", "combined (%)", r"Combined (\%)", "combined", 100.0),
        _Column("eq_error", "eq. error (×1e-2)", r"Eq.\ err.\ ($\times 10^{-2}$)", "eq_error", 1e2),
    ),
    "trajectory": (
        _Column("cade_sum", "cADE, summed (m)", r"cADE$_\Sigma$ (m)"),
        _Column("cfde", "cFDE (m)", "cFDE (m)"),
        _Column("eq_error_sum", "eq. error, summed (m)", r"Eq.\ err.$_\Sigma$ (m)"),
        _Column("ade", "ADE (m)", "ADE (m)", "ade"),
        _Column("fde", "FDE (m)", "FDE (m)", "fde"),
        _Column("cade", "cADE (m)", "cADE (m)"),
        _Column("eq_error", "eq. error (m)", r"Eq.\ err.\ (m)", "eq_error"),
    ),
}
TASKS = tuple(_COLUMNS)
_SETTING_ORDER = {"base": 0, "strict": 1, "ours": 2}
_MEAN_SCENE = "mean"


# -------------------------------------------------------------------------------------- helpers


def _fmt_b(value: float) -> str:
    return f"{float(value):g}"


def setting_label(
    softness: float,
    softness_pos: float | None,
    group: str,
    filter: str,
    *,
    show_pos: bool = True,
) -> str:
    """``base (b=1)``, ``strict (b=0)`` or ``ours (b=.., pos=.., group, filter)``.

    ``pos`` is shown only where it is known and differs from b (or ``show_pos`` forces it off):
    a model without a positional grid runs with pos = b, which says nothing.
    """
    pos = None if softness_pos is None or math.isnan(softness_pos) else float(softness_pos)
    b = float(softness)
    if b == 1.0 and pos in (None, 1.0):
        return "base (b=1)"
    if b == 0.0 and pos in (None, 0.0):
        return "strict (b=0)"
    parts = [f"b={_fmt_b(b)}"]
    if show_pos and pos is not None and pos != b:
        parts.append(f"pos={_fmt_b(pos)}")
    return f"ours ({', '.join([*parts, group, filter])})"


def _kind(label: str) -> str:
    return label.split(" ", 1)[0]


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (& % $ # _ { } ~ ^ \\) and typeset ± and ×."""
    special = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "±": r"$\pm$",
        "×": r"$\times$",
    }
    return "".join(special.get(ch, ch) for ch in str(text))


def _read_summaries(summary_csvs: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    paths = [summary_csvs] if isinstance(summary_csvs, str | os.PathLike) else list(summary_csvs)
    if not paths:
        raise ValueError("no summary CSV given")
    frames = [read_table(p) for p in paths]
    required = ("task", "dataset", "backbone", "group", "filter", "softness", "softness_pos")
    for path, df in zip(paths, frames, strict=True):
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: not a summary table, missing column(s) {missing}")
    return pd.concat(frames, ignore_index=True, sort=False)


def _get(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats; all-NaN when the summary does not have it."""
    if column in df.columns:
        return pd.to_numeric(df[column], errors="coerce").astype("float64")
    return pd.Series(np.nan, index=df.index, dtype="float64")


def _backbone_order(task: str, backbones: Iterable[str]) -> list[str]:
    """The paper's order for the paper's backbones, then the others alphabetically."""
    paper = [b for (_, b) in REPORTED.get(task, {})]
    known = list(dict.fromkeys(paper))
    present = set(backbones)
    return [b for b in known if b in present] + sorted(present - set(known))


# ------------------------------------------------------------------------------------ the tables


def _values(task: str, df: pd.DataFrame, pred_len: float | None) -> pd.DataFrame:
    """Display-unit values (and stds) of every column spec, one row per summary row."""
    out = pd.DataFrame(index=df.index)
    for col in _COLUMNS[task]:
        if col.metric is not None:
            out[col.name] = _get(df, f"{col.metric}_mean") * col.scale
            out[f"{col.name}_std"] = _get(df, f"{col.metric}_std") * col.scale
    if task != "trajectory":
        return out
    ade, rot_ade = _get(df, "ade_mean"), _get(df, "rot_ade_mean")
    # steps per prediction: ade_sum = pred_len x ade exactly, per run and so per mean
    steps = _get(df, "ade_sum_mean") / ade
    if pred_len is not None:
        steps = steps.fillna(float(pred_len))
    cade = _get(df, "combined_ade_mean").fillna((ade + rot_ade) / 2)
    cade_std = _get(df, "combined_ade_std")
    out["cade"], out["cade_std"] = cade, cade_std
    cade_sum = _get(df, "combined_ade_sum_mean")
    rot_sum = _get(df, "rot_ade_sum_mean").fillna(rot_ade * steps)
    ade_sum = _get(df, "ade_sum_mean").fillna(ade * steps)
    out["cade_sum"] = cade_sum.fillna((ade_sum + rot_sum) / 2)
    out["cade_sum_std"] = _get(df, "combined_ade_sum_std").fillna(cade_std * steps)
    fde, rot_fde = _get(df, "fde_mean"), _get(df, "rot_fde_mean")
    out["cfde"] = _get(df, "combined_fde_mean").fillna((fde + rot_fde) / 2)
    out["cfde_std"] = _get(df, "combined_fde_std")
    out["eq_error_sum"] = out["eq_error"] * steps
    out["eq_error_sum_std"] = out["eq_error_std"] * steps
    out["pred_len"] = steps
    return out


def _value_names(task: str) -> list[str]:
    return [name for col in _COLUMNS[task] for name in (col.name, f"{col.name}_std")]


def paper_table(
    summary_csvs: PathLike | Iterable[PathLike],
    task: str,
    reported: bool = False,
    *,
    pred_len: int | None = None,
) -> pd.DataFrame:
    """The table's rows as numbers in display units (what ``write_paper_table`` writes).

    Columns: ``dataset`` (trajectories: the family, plus ``scene``), ``backbone``, ``setting``,
    ``source`` (``ours`` / ``reported (s)``), ``group``, ``filter``, ``softness``,
    ``softness_pos``, ``n_seeds``, then each value and its ``_std`` (see the module docstring).
    Trajectories: ``pred_len`` fills in the steps where a summary has no ``ade_sum``; the
    ``mean`` scene averages the per-scene means of every setting over the scenes it has
    (``n_scenes``), std left empty.
    """
    if task not in _COLUMNS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    df = _read_summaries(summary_csvs)
    df = df[df["task"] == task].reset_index(drop=True)
    if df.empty:
        raise ValueError(f"the summary tables hold no {task!r} rows")
    values = _values(task, df, pred_len)
    show_pos = task != "trajectory"
    rows = pd.DataFrame(
        {
            "dataset": df["dataset"].astype(str),
            "backbone": df["backbone"].astype(str),
            "setting": [
                setting_label(b, p, g, f, show_pos=show_pos)
                for b, p, g, f in zip(
                    df["softness"], df["softness_pos"], df["group"], df["filter"], strict=True
                )
            ],
            "source": "ours",
            "group": df["group"].astype(str),
            "filter": df["filter"].astype(str),
            "softness": _get(df, "softness"),
            "softness_pos": _get(df, "softness_pos"),
            "n_seeds": _get(df, "n_seeds"),
        }
    )
    rows = pd.concat([rows, values], axis=1)
    if task == "trajectory":
        rows = _with_scenes(rows)
    rows = _disambiguate(rows)
    if reported:
        rows = pd.concat([rows, _reported_rows(task, rows)], ignore_index=True)
    return _sorted(task, rows)


def _with_scenes(rows: pd.DataFrame) -> pd.DataFrame:
    """Split ``<family>-<scene>`` datasets and add the mean over scenes per family and setting."""
    split = rows["dataset"].str.split("-", n=1, expand=True)
    rows = rows.copy()
    rows["scene"] = split[1] if split.shape[1] > 1 else None
    rows["dataset"] = split[0]
    rows["scene"] = rows["scene"].fillna("")
    rows["n_scenes"] = 1.0
    keys = ["dataset", "backbone", "setting", "source", "group", "filter", "softness"]
    values = [c for c in _value_names("trajectory") if not c.endswith("_std")] + ["pred_len"]
    scened = rows[rows["scene"] != ""]
    means = []
    for key, sub in scened.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key, strict=True))
        row.update({c: sub[c].mean() for c in values})
        row.update(
            scene=_MEAN_SCENE,
            softness_pos=sub["softness_pos"].mean(),
            n_seeds=sub["n_seeds"].min(),
            n_scenes=float(len(sub)),
        )
        means.append(row)
    return pd.concat([rows, pd.DataFrame(means)], ignore_index=True) if means else rows


def _disambiguate(rows: pd.DataFrame) -> pd.DataFrame:
    """Append group / filter to base and strict labels that repeat within a block."""
    block = ["dataset", "backbone", *(["scene"] if "scene" in rows.columns else [])]
    rows = rows.copy()
    dup = rows.duplicated([*block, "setting"], keep=False)
    for i in rows.index[dup]:
        label = rows.at[i, "setting"]
        if not label.startswith("ours"):
            rows.at[i, "setting"] = f"{label[:-1]}, {rows.at[i, 'group']}, {rows.at[i, 'filter']})"
    return rows


def _reported_rows(task: str, rows: pd.DataFrame) -> pd.DataFrame:
    """REPORTED rows for the (dataset, backbone) pairs the table holds."""
    present = set(zip(rows["dataset"], rows["backbone"], strict=True))
    if task == "trajectory":
        present = {
            (f"{d}-{s}", b)
            for d, s, b in zip(rows["dataset"], rows["scene"], rows["backbone"], strict=True)
        }
    out = []
    for (dataset, backbone), settings in REPORTED.get(task, {}).items():
        if (dataset, backbone) not in present:
            continue
        for setting, numbers in settings.items():
            row = {
                "dataset": dataset,
                "backbone": backbone,
                "setting": f"reported: {setting}",
                "source": _REPORTED_SOURCE,
                **{k: float(v) for k, v in numbers.items()},
            }
            if task == "trajectory":
                row["dataset"], row["scene"] = dataset.split("-", 1)
            out.append(row)
    return pd.DataFrame(out, columns=list(rows.columns))


def _sorted(task: str, rows: pd.DataFrame) -> pd.DataFrame:
    order = {b: i for i, b in enumerate(_backbone_order(task, rows["backbone"]))}
    rows = rows.copy()
    key = pd.DataFrame(index=rows.index)
    key["dataset"] = rows["dataset"]
    if "scene" in rows.columns:
        known = {s: i for i, s in enumerate((*ETHUCY_SCENES, *SYNTHETIC_SCENES))}
        key["scene_rank"] = [
            10_000 if s == _MEAN_SCENE else known.get(s, 1_000) for s in rows["scene"]
        ]
        key["scene"] = rows["scene"]
    key["backbone"] = rows["backbone"].map(order)
    key["reported"] = (rows["source"] != "ours").astype(int)
    key["kind"] = [_SETTING_ORDER.get(_kind(s), 3) for s in rows["setting"]]
    key["group"] = rows["group"].fillna("")
    key["filter"] = rows["filter"].fillna("")
    key["softness"] = rows["softness"].fillna(-1.0)
    key["softness_pos"] = rows["softness_pos"].fillna(-1.0)
    idx = key.sort_values(list(key.columns), kind="stable").index
    out = rows.loc[idx].reset_index(drop=True)
    front = ["dataset", *(["scene"] if "scene" in out.columns else []), "backbone", "setting"]
    rest = [c for c in out.columns if c not in front]
    return out[front + rest]


# --------------------------------------------------------------------------------------- writing


def _cell(mean: float, std: float | None, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    text = f"{mean:.{digits}f}"
    if std is not None and not math.isnan(std):
        text += f" ± {std:.{digits}f}"
    return text


def _display(
    task: str, rows: pd.DataFrame, columns: Sequence[_Column] | None = None
) -> tuple[list[str], list[str], list[list[str]], list[int]]:
    """Headers (md, tex), string cells and the row indices where a new block starts."""
    columns = columns or _COLUMNS[task]
    block_cols = ["dataset", *(["scene"] if "scene" in rows.columns else []), "backbone"]
    lead = [c for c in block_cols if c == "backbone" or rows[c].nunique() > 1 or c == "scene"]
    md = [*lead, "setting", "seeds", *(c.md for c in columns)]
    tex = [
        *(c.capitalize() for c in lead),
        "Setting",
        "Seeds",
        *(c.tex for c in columns),
    ]
    cells, starts, previous = [], [], None
    for i, row in enumerate(rows.itertuples(index=False)):
        r = row._asdict()
        block = tuple(r[c] for c in block_cols)
        if block != previous:
            starts.append(i)
        shown = [str(r[c]) if block != previous else "" for c in lead]
        previous = block
        seeds = r.get("n_seeds")
        seeds_txt = "" if seeds is None or math.isnan(seeds) else f"{int(seeds)}"
        if r.get("scene") == _MEAN_SCENE and not math.isnan(r.get("n_scenes", math.nan)):
            seeds_txt = f"{seeds_txt} ({int(r['n_scenes'])} sc.)" if seeds_txt else ""
        values = [_cell(r.get(c.name, math.nan), r.get(f"{c.name}_std")) for c in columns]
        cells.append([*shown, r["setting"], seeds_txt, *values])
    return md, tex, cells, starts


def _markdown(header: Sequence[str], cells: list[list[str]], n_text: int) -> str:
    """A Markdown table, text columns left-aligned and number columns right-aligned."""
    table = markdown_table(pd.DataFrame(cells, columns=list(header)))
    lines = table.splitlines()
    widths = [len(c) for c in lines[1].strip("|").split("|")]  # each is " --- " padded
    seps = [
        " " + "-" * (w - 2) + " " if i < n_text else " " + "-" * (w - 3) + ": "
        for i, w in enumerate(widths)
    ]
    body = []
    for line in [lines[0], *lines[2:]]:
        parts = line[2:-2].split(" | ")
        if len(parts) != len(widths):  # an escaped pipe inside a cell: keep the line as is
            body.append(line)
            continue
        aligned = [
            p.rstrip().ljust(w - 2) if i < n_text else p.strip().rjust(w - 2)
            for i, (p, w) in enumerate(zip(parts, widths, strict=True))
        ]
        body.append("| " + " | ".join(aligned) + " |")
    return "\n".join([body[0], "|" + "|".join(seps) + "|", *body[1:]]) + "\n"


def _latex(
    header: Sequence[str], cells: list[list[str]], starts: Sequence[int], n_text: int
) -> str:
    """A booktabs tabular: text columns left, numbers right, a midrule between blocks."""
    spec = "l" * n_text + "r" * (len(header) - n_text)
    lines = [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for i, row in enumerate(cells):
        if i in starts and i:
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def _write_all(
    rows: pd.DataFrame,
    out_stem: PathLike,
    md_header: Sequence[str],
    tex_header: Sequence[str],
    cells: list[list[str]],
    starts: Sequence[int],
    n_text: int,
) -> list[Path]:
    stem = Path(out_stem)
    csv = stem.with_name(stem.name + ".csv")
    md = stem.with_name(stem.name + ".md")
    tex = stem.with_name(stem.name + ".tex")
    atomic_write_text(csv, rows.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(md, _markdown(md_header, cells, n_text))
    atomic_write_text(tex, _latex(tex_header, cells, starts, n_text))
    return [csv, md, tex]


def write_paper_table(
    summary_csvs: PathLike | Iterable[PathLike],
    task: str,
    out_stem: PathLike,
    reported: bool = False,
    *,
    pred_len: int | None = None,
) -> list[Path]:
    """Write Table 1 / 2 / 3 (``task``: classification / segmentation / trajectory).

    Writes ``{out_stem}.csv`` (:func:`paper_table`'s numbers), ``.md`` and ``.tex`` (booktabs
    ``tabular``, "mean ± std" over seeds, 2 decimals), each atomically; returns the three paths.
    ``reported`` adds the paper's (secondary-source) numbers for the datasets and backbones the
    table holds, in rows marked "reported: ...".
    """
    rows = paper_table(summary_csvs, task, reported, pred_len=pred_len)
    md, tex, cells, starts = _display(task, rows)
    n_text = len(md) - len(_COLUMNS[task])
    return _write_all(rows, out_stem, md, tex, cells, starts, n_text)


# ------------------------------------------------------------------------------ filter ablation

_MASKS = {
    "shrink": "scaled (f = b)",
    "threshold": "hard (0/1)",
    "rank": "smooth (exp tail)",
    "rank-hard": "hard (0/1)",
}
_FILTER_ORDER = {f: i for i, f in enumerate(_MASKS)}


def filter_ablation(summary_csv: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """Rows of settings (dataset, backbone, group, b, pos) run with two or more filters.

    One row per filter, with its ``mask`` kind (hard 0/1 for ``threshold`` and ``rank-hard``,
    smooth for ``rank``, scaled for ``shrink``) and the task's table columns, so hard and soft
    masks compare at equal softness. Raises if no setting has two filters.
    """
    df = _read_summaries(summary_csv)
    tasks = sorted(df["task"].unique())
    if len(tasks) != 1 or tasks[0] not in _COLUMNS:
        raise ValueError(f"the filter ablation needs one known task per table, got {tasks}")
    task = tasks[0]
    keys = ["dataset", "backbone", "group", "softness", "softness_pos"]
    df = df.copy()
    df["_pos"] = _get(df, "softness_pos").fillna(-1.0)
    counts = df.groupby([*keys[:-1], "_pos"], dropna=False)["filter"].transform("nunique")
    df = df[counts >= 2].reset_index(drop=True)
    if df.empty:
        raise ValueError("no setting was run with two or more filters: nothing to compare")
    values = _values(task, df, None)
    rows = pd.concat(
        [
            df[["dataset", "backbone", "group", "softness", "softness_pos", "filter"]],
            pd.DataFrame({"mask": df["filter"].map(_MASKS).fillna(""), "n_seeds": df["n_seeds"]}),
            values[[c for c in _value_names(task) if c in values.columns]],
        ],
        axis=1,
    )
    rows["_f"] = rows["filter"].map(_FILTER_ORDER).fillna(len(_FILTER_ORDER))
    rows["_p"] = df["_pos"]
    rows = rows.sort_values(
        ["dataset", "backbone", "group", "softness", "_p", "_f", "filter"], kind="stable"
    )
    return rows.drop(columns=["_f", "_p"]).reset_index(drop=True).assign(task=task)


def write_filter_ablation(
    summary_csv: PathLike | Iterable[PathLike], out_stem: PathLike
) -> list[Path]:
    """Write the hard-vs-soft filter ablation (:func:`filter_ablation`) as .csv, .md and .tex."""
    rows = filter_ablation(summary_csv)
    task = rows["task"].iloc[0]
    columns = _COLUMNS[task][:4] if task != "trajectory" else _COLUMNS[task][:3]
    md_header = ["dataset", "backbone", "group", "b", "pos", "filter", "mask", "seeds"]
    md_header += [c.md for c in columns]
    tex_header = ["Dataset", "Backbone", "Group", "$b$", "Pos.", "Filter", "Mask", "Seeds"]
    tex_header += [c.tex for c in columns]
    cells, starts, previous = [], [], None
    for i, r in enumerate(rows.to_dict("records")):
        block = (r["dataset"], r["backbone"], r["group"], r["softness"], r["softness_pos"])
        if block != previous:
            starts.append(i)
        previous = block
        pos = r["softness_pos"]
        seeds = r["n_seeds"]
        cells.append(
            [
                r["dataset"],
                r["backbone"],
                r["group"],
                _fmt_b(r["softness"]),
                "" if pos is None or math.isnan(pos) else _fmt_b(pos),
                r["filter"],
                r["mask"],
                "" if seeds is None or math.isnan(seeds) else str(int(seeds)),
                *(_cell(r.get(c.name, math.nan), r.get(f"{c.name}_std")) for c in columns),
            ]
        )
    return _write_all(rows, out_stem, md_header, tex_header, cells, starts, 8)


# --------------------------------------------------------------------------- construction time

_TIMING_COLUMNS = ("width", "schur_s", "dense_s")


def measure_construction_timing(
    widths: Sequence[int] = (8, 16, 32),
    dense_limit: int = 32,
    *,
    group: str = "SO2",
    softness: float = 0.5,
    filter: str = "shrink",
    repeats: int = 1,
) -> pd.DataFrame:
    """Seconds to build one SO(2) equivariant projector for a width x width pair layer.

    For every width (an even number: ``PairRep.vectors(width)`` in and out) the block-Schur and
    the dense (SVD of the (w^2 x w^2) Kronecker operator) constructions are timed from an empty
    projector cache (best of ``repeats``); the dense one only up to ``dense_limit`` (NaN beyond:
    its cost grows as w^6). ``max_abs_diff`` checks that the two agree on a random weight.
    Columns: ``width, schur_s, dense_s, max_abs_diff``.
    """

    def build(method: str, width: int):
        best, projector = math.inf, None
        for _ in range(max(1, repeats)):
            clear_cache()
            rep = PairRep.vectors(width)
            start = time.perf_counter()
            projector = equivariant_projector(group, rep, rep, softness, filter, method=method)
            best = min(best, time.perf_counter() - start)
        clear_cache()
        return best, projector

    rows = []
    for width in widths:
        schur_s, schur = build("schur", int(width))
        dense_s, diff = math.nan, math.nan
        if width <= dense_limit:
            dense_s, dense = build("dense", int(width))
            weight = torch.randn(width, width, dtype=torch.float64, generator=_gen(width))
            diff = float((schur.apply(weight) - dense.apply(weight)).abs().max())
        rows.append(
            {"width": int(width), "schur_s": schur_s, "dense_s": dense_s, "max_abs_diff": diff}
        )
    return pd.DataFrame(rows, columns=[*_TIMING_COLUMNS, "max_abs_diff"])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _read_timing(timing_csv: PathLike) -> pd.DataFrame:
    path = Path(timing_csv)
    df = pd.read_csv(path)
    missing = [c for c in _TIMING_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; needs {list(_TIMING_COLUMNS)}")
    if df.empty:
        raise ValueError(f"{path}: no rows")
    return df.sort_values("width", kind="stable").reset_index(drop=True)


def write_construction_timing(timing_csv: PathLike, out_stem: PathLike) -> list[Path]:
    """The Schur-vs-SVD ablation table: width, seconds each way and the speed-up (dense / Schur).

    Widths where the dense construction was skipped have empty dense cells. Writes .csv, .md and
    .tex like the paper tables.
    """
    df = _read_timing(timing_csv)
    rows = df.copy()
    rows["speedup"] = rows["dense_s"] / rows["schur_s"]
    md_header = ["width", "block-Schur (s)", "dense SVD (s)", "speed-up (×)"]
    tex_header = ["Width", r"Block-Schur (s)", r"Dense SVD (s)", r"Speed-up ($\times$)"]
    cells = []
    for r in rows.to_dict("records"):
        cells.append(
            [
                str(int(r["width"])),
                _seconds(r["schur_s"]),
                _seconds(r["dense_s"]),
                ""
                if math.isnan(r["speedup"])
                else f"{r['speedup']:,.3g}"
                if r["speedup"] < 100
                else f"{r['speedup']:,.0f}",
            ]
        )
    return _write_all(rows, out_stem, md_header, tex_header, cells, [0], 1)


def _seconds(value: float) -> str:
    if value is None or math.isnan(value):
        return ""
    return f"{value:.3g}"


def plot_construction_timing(timing_csv: PathLike, out_png: PathLike, *, pdf: bool = False) -> Path:
    """Construction seconds against layer width, log scale, block-Schur vs dense SVD.

    Dense points that were skipped (too large) are simply missing; the dense line ends there.
    One paper-column panel, Okabe-Ito colours and distinct markers / line styles.
    """
    df = _read_timing(timing_csv)
    style = {
        "font.size": 8,
        "axes.labelsize": 8,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "legend.fontsize": 8,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "pdf.fonttype": 42,
    }
    with mpl.rc_context(style):
        fig = Figure(figsize=(PANEL_W, PANEL_H + 0.4), layout="constrained")
        ax = fig.subplots()
        series = (
            ("schur_s", "block-Schur", OKABE_ITO[0], "o", "-"),
            ("dense_s", "dense SVD", OKABE_ITO[1], "s", "--"),
        )
        skipped = df.loc[df["dense_s"].isna(), "width"]
        if not skipped.empty:  # say why the dense line stops short
            series = (
                series[0],
                (
                    *series[1][:1],
                    f"dense SVD (skipped at width ≥ {int(skipped.min())})",
                    *series[1][2:],
                ),
            )
        for column, label, color, marker, line in series:
            sub = df[["width", column]].dropna()
            sub = sub[sub[column] > 0]
            if not sub.empty:
                ax.plot(sub["width"], sub[column], marker=marker, ls=line, color=color, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(df["width"].to_list(), labels=[str(int(w)) for w in df["width"]])
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.set_xlabel("layer width (features in = out)")
        ax.set_ylabel("projector construction (s)")
        fig.legend(loc="outside upper center", ncols=1, frameon=False)  # never over data
        return save_figure(fig, out_png, pdf)
