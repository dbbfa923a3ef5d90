"""The MT-Bench radar chart of the Zephyr paper: one polygon per run over the eight categories."""

from __future__ import annotations

import math
from pathlib import Path

from .mt_bench import CATEGORIES


def radar(runs: dict[str, dict], path: Path, title: str = "MT-Bench by category") -> bool:
    """runs: name -> {category: score}. Writes a PNG; returns False when there is nothing to draw."""
    runs = {name: cats for name, cats in runs.items() if cats and any(v is not None for v in cats.values())}
    if not runs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {c for cats in runs.values() for c in cats}
    labels = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    if len(labels) < 3:
        labels = list(CATEGORIES)
    angles = [2 * math.pi * i / len(labels) for i in range(len(labels))]
    fig, ax = plt.subplots(figsize=(5.6, 5.6), subplot_kw={"polar": True})
    for name, cats in runs.items():
        values = [cats.get(c) or 0.0 for c in labels]
        ax.plot(angles + angles[:1], values + values[:1], linewidth=1.4, label=name)
        ax.fill(angles + angles[:1], values + values[:1], alpha=0.12)
    ax.set_xticks(angles)
    ax.set_xticklabels([c.capitalize() for c in labels])
    ax.set_ylim(0, 10)
    ax.set_yticks([2, 4, 6, 8, 10])
    ax.set_title(title, pad=18)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.12), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
