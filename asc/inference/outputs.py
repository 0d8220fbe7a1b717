"""What prediction writes: the console's top classes, JSON, CSV and bar charts."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from matplotlib.figure import Figure

from asc.inference.predictor import Prediction, Predictor

def format_top(top: Iterable[tuple[str, float]], width: int = 0) -> str:
    return "  ".join(f"{c:<{width}} {p:.2f}" if width else f"{c} {p:.2f}" for c, p in top)


def write_json(
    path: Path, predictor: Predictor, results: list[Prediction], errors: list[tuple[str, str]], k: int = 3
) -> None:
    doc = {
        "model": predictor.source, "classes": predictor.class_names, "features": asdict(predictor.spec),
        "window": predictor.window, "files": [r.to_dict(k) for r in results],
        "errors": [{"file": f, "error": e} for f, e in errors],
    }
    path.write_text(json.dumps(doc, indent=1))


def write_csv(path: Path, class_names: Sequence[str], results: list[Prediction]) -> None:
    """One row per window and one ``mean`` row per file: ``file,window,start,end,<classes>``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "window", "start", "end", *class_names])
        for r in results:
            for i, (s, e, p) in enumerate(zip(r.starts, r.ends, r.probs, strict=True)):
                w.writerow([r.file, i, f"{s:.3f}", f"{e:.3f}", *(f"{v:.6f}" for v in p)])
            w.writerow([r.file, "mean", f"{r.starts.min():.3f}", f"{r.ends.max():.3f}", *(f"{v:.6f}" for v in r.mean)])


def plot_bars(result: Prediction, path: str | Path, k: int = 3) -> Path:
    """Bar chart of the ``k`` most probable classes (the paper's "bus 0.71, metro 0.23, metro_station 0.05")."""
    top = result.top(k)
    fig = Figure(figsize=(1.6 + 1.3 * len(top), 3.6))
    ax = fig.subplots()
    bars = ax.bar([c for c, _ in top], [p for _, p in top], color="#3b75af")
    ax.bar_label(bars, labels=[f"{p:.2f}" for _, p in top], padding=2)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("probability")
    n = len(result.starts)
    ax.set_title(f"{Path(result.file).name}\n(mean over {n} window{'s' * (n != 1)})" if n > 1 else Path(result.file).name,
                 fontsize=10)
    ax.tick_params(axis="x", labelrotation=20 if len(top) > 3 else 0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
