"""The sweep summary: mean ± std per grid cell, the paper's table side by side, logged to the parent run.

    asc report                          # the newest sweep under multirun/
    asc report multirun/2026-01-01/12-00-00
    asc report --parent-run 0123abcd...  # any sweep's MLflow parent run

It reads the sweep's child runs from MLflow, keeps the newest FINISHED run of each scientific config (so it
works after failures and resumes), aggregates them per cell (window, mask), and writes to ``--out`` and to the
parent run's ``summary/`` artifacts:

- ``report.md``: the grid in the paper's layout (this sweep, published, difference), the test grid, the best
  cell's test accuracy and confusion matrix next to the published ones, and the jobs' status;
- ``cells.csv`` (one row per cell), ``best_cell.csv`` (per-class recall of the best cell vs the paper);
- ``heatmap.png`` (the grid), ``confusion/<cell>.csv|png`` (each cell's mean confusion matrix over seeds).

The parent run also gets metrics ``cell/window_<w>_mask_<m>/{val,test}_acc_{mean,std}`` and ``.../n``.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from asc import published

log = logging.getLogger(__name__)

RUN_COLUMNS = ["run_id", "run_name", "status", "start_time", "window", "mask", "seed", "config_hash",
               "settings_hash", "cell", "val_acc", "test_acc"]


# -- aggregation (pure) ---------------------------------------------------------------------------------------
def latest_finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest FINISHED run of each ``config_hash`` (a resumed or repeated job counts once)."""
    done = runs[runs["status"] == "FINISHED"].sort_values("start_time", ascending=False)
    return done.drop_duplicates("config_hash").reset_index(drop=True)


def job_status(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per ``config_hash``: FINISHED if any of its runs finished, else the status of its newest run."""
    rows = []
    for _, group in runs.sort_values("start_time", ascending=False).groupby("config_hash", sort=False):
        finished = group[group["status"] == "FINISHED"]
        row = (finished if len(finished) else group).iloc[0]
        rows.append(row)
    return pd.DataFrame(rows, columns=runs.columns).reset_index(drop=True)


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell (runs sharing ``settings_hash``): n, seeds, mean and sample std (ddof=1) of val and test accuracy.

    ``runs`` has one row per finished run with columns window, mask, seed, settings_hash, val_acc, test_acc
    (any unit; the result is in the same unit). The std of a single run is NaN. Sorted by window, mask.
    """
    rows = []
    for key, group in runs.groupby("settings_hash", sort=False):
        row = {
            "window": float(group["window"].iloc[0]), "mask": float(group["mask"].iloc[0]), "settings_hash": key,
            "n": len(group), "seeds": " ".join(str(int(s)) for s in sorted(group["seed"])),
        }
        for metric in ("val_acc", "test_acc"):
            values = group[metric].to_numpy(dtype=float)
            row[f"{metric}_mean"] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    cols = ["window", "mask", "settings_hash", "n", "seeds", "val_acc_mean", "val_acc_std", "test_acc_mean", "test_acc_std"]
    return pd.DataFrame(rows, columns=cols).sort_values(["window", "mask"], kind="stable").reset_index(drop=True)


def with_published(cells: pd.DataFrame) -> pd.DataFrame:
    """Add the published validation accuracy (%) of each cell and this sweep's difference to it (percent points)."""
    cells = cells.copy()
    pub = [published.val_acc(w, m) for w, m in zip(cells["window"], cells["mask"], strict=True)]
    cells["published_val_acc_mean"] = [p[0] if p else math.nan for p in pub]
    cells["published_val_acc_std"] = [p[1] if p else math.nan for p in pub]
    cells["val_acc_diff"] = cells["val_acc_mean"] - cells["published_val_acc_mean"]
    return cells


def best_cell(cells: pd.DataFrame) -> pd.Series | None:
    """The cell with the highest mean validation accuracy (model selection on validation, as the paper did)."""
    if cells.empty:
        return None
    return cells.loc[cells["val_acc_mean"].idxmax()]


# -- formatting -----------------------------------------------------------------------------------------------
def cell_key(window: float, mask: float) -> str:
    """A name usable as MLflow metric key and file name, e.g. ``window_5_mask_0.1``."""
    return f"window_{window:g}_mask_{mask:g}"


def mean_std(mean: float, std: float, n: int | None = None) -> str:
    if math.isnan(mean):
        return "—"
    text = f"{mean:.1f} ± {std:.1f}" if not math.isnan(std) else f"{mean:.1f}"
    return text + (f" (n={n})" if n is not None else "")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def grid_tables(cells: pd.DataFrame) -> str:
    """The paper's layout (rows: window, columns: mask) for validation (vs published) and test accuracy."""
    overlap = any(published.val_acc(w, m) for w, m in zip(cells["window"], cells["mask"], strict=True))
    windows = sorted(set(cells["window"]) | (set(published.WINDOWS) if overlap else set()))
    masks = sorted(set(cells["mask"]) | (set(published.MASKS) if overlap else set()))
    by_cell = {(r.window, r.mask): r for r in cells.itertuples()}
    header = ["time window"] + [f"mask {100 * m:g} %" for m in masks]
    val_rows, test_rows = [], []
    for w in windows:
        val_row, test_row = [f"{w:g} s"], [f"{w:g} s"]
        for m in masks:
            r = by_cell.get((w, m))
            pub = published.val_acc(w, m)
            pub_text = f"paper {pub[0]:.1f} ± {pub[1]:.1f}" if pub else "paper —"
            if r is None:
                val_row.append(f"not run · {pub_text}")
                test_row.append("not run")
                continue
            diff = f" · Δ {r.val_acc_diff:+.1f}" if not math.isnan(r.val_acc_diff) else ""
            val_row.append(f"**{mean_std(r.val_acc_mean, r.val_acc_std, r.n)}** · {pub_text}{diff}")
            test_row.append(mean_std(r.test_acc_mean, r.test_acc_std, r.n))
        val_rows.append(val_row)
        test_rows.append(test_row)
    return "\n\n".join([
        "Validation accuracy (%), mean ± sample std over seeds: **this sweep** · published (Schuchardt 2019) · "
        "difference in percent points",
        markdown_table(header, val_rows),
        "Test accuracy (%), mean ± sample std over seeds (the paper published the test result of one cell only)",
        markdown_table(header, test_rows),
    ])


def confusion_markdown(cm: np.ndarray, classes: list[str], decimals: int = 0) -> str:
    rows = [[c] + [f"{v:.{decimals}f}" for v in row] for c, row in zip(classes, cm, strict=True)]
    return markdown_table(["true \\ predicted"] + list(classes), rows)


def recall(cm: np.ndarray) -> np.ndarray:
    """Per-class accuracy (%) of a confusion matrix with rows true, columns predicted."""
    cm = np.asarray(cm, dtype=float)
    return 100 * np.diag(cm) / np.clip(cm.sum(1), 1e-12, None)


def best_cell_section(best: pd.Series, cm: np.ndarray | None, classes: list[str] | None) -> tuple[str, pd.DataFrame]:
    """The best cell next to the published 69.7 % and its confusion matrix; and the per-class table."""
    pw, pm = published.BEST_CELL
    lines = [
        f"Best cell by mean validation accuracy: window {best['window']:g} s, mask {100 * best['mask']:g} % — "
        f"test accuracy **{mean_std(best['test_acc_mean'], best['test_acc_std'])} %** "
        f"(validation {mean_std(best['val_acc_mean'], best['val_acc_std'])} %; n={int(best['n'])}).",
        f"Published ({pw:g} s, mask {100 * pm:g} %): test accuracy **{published.TEST_ACC} %** "
        f"({published.TEST_CORRECT} of {published.TEST_CLIPS} test clips).",
    ]
    table = pd.DataFrame(columns=["class", "this_sweep_pct", "published_pct", "diff_pct"])
    if cm is None or classes is None:
        lines.append("(No confusion matrix was logged for this cell's runs.)")
        return "\n\n".join(lines), table
    lines += [f"Confusion matrix of this cell, mean over its {int(best['n'])} run(s) (rows true, columns predicted):",
              confusion_markdown(cm, classes, 1)]
    pub_cm = published.CONFUSION
    if sorted(classes) == sorted(published.CLASSES):
        order = [classes.index(c) for c in published.CLASSES]
        ours = recall(cm[np.ix_(order, order)])
        theirs = recall(pub_cm)
        table = pd.DataFrame({
            "class": list(published.CLASSES) + ["(overall)"],
            "this_sweep_pct": list(np.round(ours, 1)) + [round(float(best["test_acc_mean"]), 1)],
            "published_pct": list(np.round(theirs, 1)) + [published.TEST_ACC],
        })
        table["diff_pct"] = (table["this_sweep_pct"] - table["published_pct"]).round(1)
        lines += ["Published confusion matrix (test set, rows true, columns predicted):",
                  confusion_markdown(pub_cm, list(published.CLASSES)),
                  "Per-class test accuracy (%):",
                  markdown_table(["class", "this sweep", "published", "Δ"],
                                 [[r["class"], f"{r['this_sweep_pct']:.1f}", f"{r['published_pct']:.1f}",
                                   f"{r['diff_pct']:+.1f}"] for _, r in table.iterrows()])]
    else:
        lines.append(f"(The classes differ from the paper's {list(published.CLASSES)}: no per-class comparison.)")
    return "\n\n".join(lines), table


def heatmap(cells: pd.DataFrame, path: str | Path) -> Path:
    """PNG of the grid: mean validation accuracy (with the published value) and mean test accuracy, in %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = sorted(set(cells["window"]))
    masks = sorted(set(cells["mask"]))
    fig, axes = plt.subplots(1, 2, figsize=(4.0 + 2.2 * len(masks), 1.6 + 1.0 * len(windows)))
    for ax, metric, title in zip(axes, ("val_acc", "test_acc"), ("validation accuracy (%)", "test accuracy (%)"), strict=True):
        grid = np.full((len(windows), len(masks)), np.nan)
        text = [["" for _ in masks] for _ in windows]
        for r in cells.itertuples():
            i, j = windows.index(r.window), masks.index(r.mask)
            mean, std = getattr(r, f"{metric}_mean"), getattr(r, f"{metric}_std")
            grid[i, j] = mean
            text[i][j] = mean_std(mean, std) + f"\nn={r.n}"
            pub = published.val_acc(r.window, r.mask)
            if metric == "val_acc" and pub:
                text[i][j] += f"\npaper {pub[0]:.1f}"
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i in range(len(windows)):
            for j in range(len(masks)):
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8,
                        color="white" if np.isnan(grid[i, j]) or grid[i, j] < np.nanmean(grid) else "black")
        ax.set_xticks(range(len(masks)), [f"{100 * m:g} %" for m in masks])
        ax.set_yticks(range(len(windows)), [f"{w:g} s" for w in windows])
        ax.set_xlabel("largest masked band")
        ax.set_ylabel("time window")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# -- MLflow ---------------------------------------------------------------------------------------------------
def collect(client, parent_run_id: str) -> pd.DataFrame:
    """The parent run's children as a table (:data:`RUN_COLUMNS`); accuracies as fractions, NaN if not logged."""
    from asc.sweep import children

    rows = []
    for run in children(client, parent_run_id):
        tags, metrics = run.data.tags, run.data.metrics
        if "config_hash" not in tags:
            continue
        rows.append({
            "run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
            "start_time": run.info.start_time, "window": float(tags["window"]), "mask": float(tags["mask"]),
            "seed": int(tags["seed"]), "config_hash": tags["config_hash"],
            "settings_hash": tags.get("settings_hash", tags.get("cell", "")), "cell": tags.get("cell", ""),
            "val_acc": metrics.get("best_val/acc", math.nan), "test_acc": metrics.get("test/acc", math.nan),
        })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def mean_confusion(client, run_ids: list[str]) -> tuple[np.ndarray | None, list[str] | None]:
    """Mean of the runs' ``confusion_test.csv`` (rows true, columns predicted); (None, None) if none is logged."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mats, classes = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for i, run_id in enumerate(run_ids):
            try:
                path = client.download_artifacts(run_id, "confusion_test.csv", str(Path(tmp) / str(i)))
            except Exception:  # noqa: BLE001 - a run without the artifact is left out of the mean
                log.warning("run %s has no confusion_test.csv; left out of the mean confusion matrix", run_id)
                continue
            frame = pd.read_csv(path, index_col=0)
            names = [str(c) for c in frame.columns]
            if classes is None:
                classes = names
            elif names != classes:
                raise ValueError(f"run {run_id}: confusion_test.csv has classes {names}, the other runs {classes}")
            mats.append(frame.to_numpy(dtype=float))
    if not mats:
        return None, None
    return np.mean(mats, axis=0), classes


@dataclass
class Report:
    """What :func:`report` produced."""

    markdown: str
    cells: pd.DataFrame
    out: Path


def report(client, parent_run_id: str, out: str | Path, echo: bool = False, log_to_parent: bool = True) -> Report:
    """Summarise the sweep under ``parent_run_id``: write the files into ``out`` and log them to the parent."""
    from asc.tracking import plot_confusion

    out = Path(out)
    (out / "confusion").mkdir(parents=True, exist_ok=True)
    parent = client.get_run(parent_run_id)
    runs = collect(client, parent_run_id)
    finished = latest_finished(runs)
    finished = finished[np.isfinite(finished["val_acc"].astype(float))]
    pct = finished.assign(val_acc=100 * finished["val_acc"], test_acc=100 * finished["test_acc"])
    cells = with_published(aggregate(pct))
    duplicated = cells.duplicated(["window", "mask"], keep=False)

    sections = [f"# Sweep report: {parent.info.run_name}",
                f"MLflow parent run `{parent_run_id}` (sweep `{parent.data.tags.get('sweep', '')}`). "
                f"Published values: {published.SOURCE}."]
    sections.append(jobs_section(runs, parent.data.tags.get("sweep.jobs", "")))
    if duplicated.any():
        sections.append("Note: some cells hold runs of different settings (the sweep varies more than window, mask "
                        "and seed); the grid shows the one with the most runs, cells.csv lists all.")
        cells_grid = cells.sort_values("n", ascending=False).drop_duplicates(["window", "mask"]).sort_values(["window", "mask"])
    else:
        cells_grid = cells
    if cells.empty:
        sections.append("No job of this sweep has finished yet.")
        best_table = pd.DataFrame()
    else:
        sections.append(grid_tables(cells_grid))
        best = best_cell(cells_grid)
        confusions = {}
        for r in cells.itertuples():
            ids = list(finished.loc[finished["settings_hash"] == r.settings_hash, "run_id"])
            cm, classes = mean_confusion(client, ids)
            if cm is None:
                continue
            stem = cell_key(r.window, r.mask) + (f"_{r.settings_hash[:8]}" if duplicated[r.Index] else "")
            confusions[r.settings_hash] = (cm, classes)
            (out / "confusion" / f"{stem}.csv").write_text(confusion_csv_float(cm, classes))
            plot_confusion(cm, classes, out / "confusion" / f"{stem}.png",
                           f"window {r.window:g} s, mask {100 * r.mask:g} %: mean of {r.n} run(s), test")
        cm, classes = confusions.get(best["settings_hash"], (None, None))
        text, best_table = best_cell_section(best, cm, classes)
        sections.append(text)
        heatmap(cells_grid, out / "heatmap.png")
    markdown = "\n\n".join(sections) + "\n"
    (out / "report.md").write_text(markdown)
    cells.to_csv(out / "cells.csv", index=False, float_format="%.4f")
    best_table.to_csv(out / "best_cell.csv", index=False)
    if log_to_parent:
        log_summary(client, parent_run_id, cells, runs)
        client.log_artifacts(parent_run_id, str(out), "summary")
    if echo:
        print(markdown)
        print(f"written to {out}/" + (f" and logged to MLflow run {parent_run_id} (artifacts: summary/)" if log_to_parent else ""))
    return Report(markdown, cells, out)


def confusion_csv_float(cm: np.ndarray, classes: list[str]) -> str:
    """Like :func:`asc.tracking.confusion_csv` for a mean matrix (three decimals)."""
    buf = io.StringIO()
    pd.DataFrame(np.round(cm, 3), index=classes, columns=classes).rename_axis("true\\predicted").to_csv(buf)
    return buf.getvalue()


def jobs_section(runs: pd.DataFrame, expected: str) -> str:
    status = job_status(runs) if not runs.empty else runs
    counts = status["status"].value_counts().to_dict() if not status.empty else {}
    parts = [f"{counts.get('FINISHED', 0)} finished"]
    parts += [f"{n} {s.lower()}" for s, n in sorted(counts.items()) if s != "FINISHED"]
    head = f"Jobs: {expected} expected, " if expected else "Jobs: "
    lines = [head + ", ".join(parts) + "."]
    if expected and expected.isdigit() and len(status) < int(expected):
        lines.append(f"{int(expected) - len(status)} job(s) never reached MLflow (not started, or killed early); "
                     "rerun the sweep's command to run them.")
    unfinished = status[status["status"] != "FINISHED"] if not status.empty else status
    for _, r in unfinished.iterrows():
        lines.append(f"- `{r['run_name']}`: {r['status']} (MLflow run {r['run_id']})")
    return "\n".join(lines)


def log_summary(client, parent_run_id: str, cells: pd.DataFrame, runs: pd.DataFrame) -> None:
    """Per-cell metrics on the parent run (accuracies as fractions, like the children's)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    duplicated = cells.duplicated(["window", "mask"], keep=False)
    for r in cells.itertuples():
        key = "cell/" + cell_key(r.window, r.mask) + (f"_{r.settings_hash[:8]}" if duplicated[r.Index] else "")
        values = {"n": r.n, "val_acc_mean": r.val_acc_mean / 100, "val_acc_std": r.val_acc_std / 100,
                  "test_acc_mean": r.test_acc_mean / 100, "test_acc_std": r.test_acc_std / 100}
        metrics += [Metric(f"{key}/{k}", float(v), now, 0) for k, v in values.items() if not math.isnan(v)]
    best = best_cell(cells)
    if best is not None:
        metrics += [Metric("best/val_acc_mean", float(best["val_acc_mean"]) / 100, now, 0),
                    Metric("best/test_acc_mean", float(best["test_acc_mean"]) / 100, now, 0)]
        client.set_tag(parent_run_id, "best_cell", f"window={best['window']:g},mask={best['mask']:g}")
    status = job_status(runs) if not runs.empty else runs
    for s in ("FINISHED", "FAILED", "KILLED", "RUNNING"):
        metrics.append(Metric(f"jobs/{s.lower()}", float((status["status"] == s).sum()) if not status.empty else 0.0, now, 0))
    for i in range(0, len(metrics), 1000):
        client.log_batch(parent_run_id, metrics=metrics[i : i + 1000])


# -- command line ---------------------------------------------------------------------------------------------
def newest_sweep(root: str | Path = "multirun") -> Path:
    """The most recently written sweep folder under ``root`` (one holding ``sweep.json``)."""
    from asc.sweep import SWEEP_FILE

    found = sorted(Path(root).glob(f"**/{SWEEP_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no sweep folder (with {SWEEP_FILE}) under {Path(root).resolve()}; "
                                "run `python train.py -m ...` first or pass SWEEP_DIR / --parent-run")
    return found[-1].parent


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc report",
        description="Summarise a sweep (mean ± std per window/mask cell) next to the published table; "
                    "write report.md, cells.csv, best_cell.csv, a heatmap and mean confusion matrices, "
                    "and log them to the sweep's MLflow parent run.",
    )
    p.add_argument("sweep_dir", nargs="?", type=Path, help="the sweep folder (default: the newest under multirun/)")
    p.add_argument("--parent-run", help="MLflow run id of the sweep's parent run (instead of SWEEP_DIR)")
    p.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, the sweep's, sqlite:///mlflow.db)")
    p.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR/report or outputs/reports/<run id>)")
    p.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")
    args = p.parse_args(argv)

    from mlflow import MlflowClient

    from asc.sweep import SweepInfo
    from asc.tracking import tracking_uri

    try:
        if args.parent_run:
            uri, parent, out = args.tracking_uri or tracking_uri(None), args.parent_run, None
        else:
            sweep_dir = args.sweep_dir or newest_sweep()
            info = SweepInfo.read(sweep_dir)
            uri = args.tracking_uri or tracking_uri(info.tracking_uri)
            parent, out = info.parent_run_id, Path(sweep_dir) / "report"
        client = MlflowClient(uri)
        client.get_run(parent)  # a clear error for a wrong id or store
    except Exception as err:  # noqa: BLE001 - one line for the user, not a traceback
        where = f" (MLflow store {uri}; --tracking-uri chooses another)" if "uri" in locals() else ""
        print(f"asc report: {err}{where}", file=sys.stderr)
        raise SystemExit(2) from None
    report(client, parent, args.out or out or Path("outputs/reports") / parent, echo=True, log_to_parent=not args.no_log)
