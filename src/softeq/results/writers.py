"""Writers for the paper-style tables: the same cells as CSV, aligned Markdown and LaTeX.

A table is a DataFrame of numbers (the CSV, full precision) plus its display: headers for
Markdown and LaTeX, string cells ("mean ± std", 2 decimals as in the paper) and the rows where a
new block starts (a ``\\midrule`` in LaTeX). Every file is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from softeq.io import atomic_write_text
from softeq.results.aggregate import markdown_table

__all__ = ["cell", "latex", "latex_escape", "markdown", "write_table_files"]

PathLike = str | os.PathLike[str]


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


def cell(mean: float, std: float | None, digits: int = 2) -> str:
    """``mean ± std`` at ``digits`` decimals; the std left out when missing, empty for no mean."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    text = f"{mean:.{digits}f}"
    if std is not None and not math.isnan(std):
        text += f" ± {std:.{digits}f}"
    return text


def markdown(header: Sequence[str], cells: list[list[str]], n_text: int) -> str:
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


def latex(header: Sequence[str], cells: list[list[str]], starts: Sequence[int], n_text: int) -> str:
    """A booktabs tabular: text columns left, numbers right, a midrule between blocks."""
    spec = "l" * n_text + "r" * (len(header) - n_text)
    lines = [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for i, row in enumerate(cells):
        if i in starts and i:
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def write_table_files(
    rows: pd.DataFrame,
    out_stem: PathLike,
    md_header: Sequence[str],
    tex_header: Sequence[str],
    cells: list[list[str]],
    starts: Sequence[int],
    n_text: int,
) -> list[Path]:
    """Write ``{out_stem}.csv`` (``rows``), ``.md`` and ``.tex`` (``cells``); return the paths.

    ``n_text`` leading columns are text (left-aligned), the rest numbers (right-aligned);
    ``starts`` are the row indices where a new block begins.
    """
    stem = Path(out_stem)
    csv = stem.with_name(stem.name + ".csv")
    md = stem.with_name(stem.name + ".md")
    tex = stem.with_name(stem.name + ".tex")
    atomic_write_text(csv, rows.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(md, markdown(md_header, cells, n_text))
    atomic_write_text(tex, latex(tex_header, cells, starts, n_text))
    return [csv, md, tex]
