"""Copy a few figures of the embedded default into docs/ as small PNGs for the README.

make docs-figures     # after `make run`
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

FIGURES = {
    "figure1_vit.png": 900,
    "classification_digits_tunability.png": 1000,
    "classification_digits_bounds.png": 1000,
    "classification_digits_angles.png": 1000,
    "figure2_digits69.png": 1200,
}


def main(results: str = "results/figures", docs: str = "docs") -> None:
    for name, width in FIGURES.items():
        source = Path(results) / name
        if not source.exists():
            raise SystemExit(f"{source} is missing: run `make run` first")
        image = Image.open(source).convert("RGB")
        height = round(image.height * width / image.width)
        image.resize((width, height), Image.LANCZOS).save(Path(docs) / name, optimize=True)
        print(Path(docs) / name)


if __name__ == "__main__":
    main(*sys.argv[1:])
