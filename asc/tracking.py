"""MLflow: run names, the logger, and the artifacts a reader needs (config, confusion matrix)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np


def run_name(window: float, mask: float, seed: int) -> str:
    """The run's identity in the grid, e.g. ``window=5,mask=0.1,seed=2``."""
    return f"window={window:g},mask={mask:g},seed={seed}"


def tracking_uri(uri: str | None) -> str:
    """``MLFLOW_TRACKING_URI`` wins; else the config's URI (default: a SQLite file in the working folder).

    Note that ``mlflow.set_tracking_uri`` (which Lightning calls) exports that variable for the rest of the
    process: code that runs several stores in one process (tests) clears it between runs.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or uri or "sqlite:///mlflow.db"


def absolute_uri(uri: str) -> str:
    """A relative ``sqlite:///file.db`` made absolute, naming the same file from any folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def schema_lock(url: str) -> AbstractContextManager:
    """An inter-process lock beside a SQLite database, held while a process creates or upgrades its schema.

    Processes that open a new SQLite store at the same moment (two ``asc.tune`` workers, a joblib sweep)
    would otherwise run the same migrations together and fail half-way ("table _alembic_tmp_... already
    exists"). Database servers serialise their own DDL, so other URLs get no lock.
    """
    from sqlalchemy.engine import make_url

    from asc.files import exclusive
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return nullcontext()
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return nullcontext()
    path = Path(parsed.database)
    if not path.parent.is_dir():  # the store cannot open either; let it say so
        return nullcontext()
    return exclusive(f"{path}.lock", f"{path}: another process is creating its tables; waiting", timeout=600)


_OPENED: set[str] = set()


def open_store(uri: str) -> str:
    """Create or upgrade the MLflow store at ``uri`` once per process, one process at a time; returns ``uri``."""
    key = absolute_uri(uri)  # a relative SQLite path names another file in another folder
    if key not in _OPENED:
        from mlflow import MlflowClient

        with schema_lock(uri):
            MlflowClient(uri).search_experiments(max_results=1)
        _OPENED.add(key)
    return uri


def artifact_location(path: str | None) -> str | None:
    """Local artifact folder as a ``file://`` URI (used only when the experiment is created)."""
    return Path(path).resolve().as_uri() if path else None


def make_logger(experiment: str, name: str, uri: str | None, artifacts: str | None, tags: Mapping[str, Any]):
    """Lightning's MLFlowLogger on the configured store."""
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(
        experiment_name=experiment,
        run_name=name,
        tracking_uri=open_store(tracking_uri(uri)),
        artifact_location=artifact_location(artifacts),
        tags={k: str(v) for k, v in tags.items()},
    )


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b.c": value}`` (lists kept as their string form)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def confusion_csv(cm: np.ndarray, class_names: Sequence[str]) -> str:
    """Rows true, columns predicted, class names on both axes."""
    lines = ["true\\predicted," + ",".join(class_names)]
    lines += [f"{name}," + ",".join(str(int(v)) for v in row) for name, row in zip(class_names, cm, strict=True)]
    return "\n".join(lines) + "\n"


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Heatmap PNG of a confusion matrix with counts and row-normalised shading."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1e-12, None)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.65 * n))
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
    plt.close(fig)
    return Path(path)


def log_confusion(client, run_id: str, cm: np.ndarray, class_names: Sequence[str], stem: str = "confusion_test", title: str = "") -> None:
    """Log ``<stem>.csv`` and ``<stem>.png`` to the run."""
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / f"{stem}.csv"
        csv.write_text(confusion_csv(cm, class_names))
        png = plot_confusion(cm, class_names, Path(tmp) / f"{stem}.png", title)
        client.log_artifact(run_id, str(csv))
        client.log_artifact(run_id, str(png))
