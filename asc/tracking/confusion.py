"""A confusion matrix anyone can read: CSV and PNG with class names on both axes (rows true, columns predicted)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # drawn without pyplot: no GUI backend, no global figure state


def confusion_csv(cm: np.ndarray, class_names: Sequence[str]) -> str:
    """Rows true, columns predicted, class names on both axes."""
    lines = ["true\\predicted," + ",".join(class_names)]
    lines += [f"{name}," + ",".join(str(int(v)) for v in row) for name, row in zip(class_names, cm, strict=True)]
    return "\n".join(lines) + "\n"


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Heatmap PNG of a confusion matrix with counts and row-normalised shading."""
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1e-12, None)
    n = len(class_names)
    fig = Figure(figsize=(1.0 + 0.75 * n, 0.8 + 0.65 * n))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            text = f"{cm[i, j]:.0f}" if float(cm[i, j]).is_integer() else f"{cm[i, j]:.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
