"""Static map rendering: the PNG scatters, and the style colours every view (PNG, explorer, report) shares.

The interactive explorer is explorer.py; the report page is page.py, from templates/ (package data).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "templates"


def style_colors(classes: list[str]) -> list[str]:
    """One stable colour per class (classes.json order), shared by the PNG, explorer and report.

    Up to 20 classes take tab20's strong colours first, then its light ones, so small taxonomies stay distinct.
    """
    if len(classes) <= 20:
        tab20 = plt.get_cmap("tab20").colors
        palette = [tab20[i] for i in [*range(0, 20, 2), *range(1, 20, 2)]]
    else:
        palette = [plt.get_cmap("hsv")(i / len(classes)) for i in range(len(classes))]
    return [matplotlib.colors.to_hex(palette[i]) for i in range(len(classes))]


def platform_colors(n: int) -> list[str]:
    """One colour per platform, from a palette unlike the styles' (Dark2, then Set1), for colouring by platform."""
    palette = [*plt.get_cmap("Dark2").colors, *plt.get_cmap("Set1").colors]
    return [matplotlib.colors.to_hex(palette[i % len(palette)]) for i in range(n)]


def scatter_png(points: pd.DataFrame, classes: list[str], title: str, path: Path, seed: int,
                whole: pd.DataFrame | None = None) -> None:
    """Static map coloured by top style; drawn in a seeded random order so no style hides the others. With `whole`
    (x, y of the map every platform shares), its points are drawn in grey beneath and frame the axes, so every
    platform's PNG shows the same region at the same place."""
    colors = dict(zip(classes, style_colors(classes)))
    order = np.random.default_rng(seed).permutation(len(points))
    shown = points.iloc[order]
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    if whole is not None:
        ax.scatter(whole["x"], whole["y"], c="#dddddd", s=float(np.clip(4000 / len(whole), 1, 25)), linewidths=0,
                   rasterized=True)
    ax.scatter(shown["x"], shown["y"], c=[colors[s] for s in shown["top1"]], s=float(np.clip(4000 / max(len(points), 1), 1, 25)),
               alpha=0.75, linewidths=0, rasterized=True)
    counts = points["top1"].value_counts()
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[s], label=f"{s} ({counts[s]})")
               for s in classes if s in counts]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8, title="top style")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
