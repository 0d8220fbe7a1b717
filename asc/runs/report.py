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

Compared only where that means something: when every run is the paper's setup (tag ``faithful=true``, see
:func:`asc.runs.identity.paper_differences`) the published values are a target and the report shows the
difference; for synthetic data, another backbone, the embedding cache or any other change it says so at the
top and shows the published numbers as context, without a difference to beat.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from asc.runs import published
from asc.tracking.confusion import plot_confusion
from asc.tracking.store import TrackingError, TrackingStore

log = logging.getLogger(__name__)

RUN_COLUMNS = ["run_id", "run_name", "status", "start_time", "window", "mask", "seed", "config_hash",
               "settings_hash", "cell", "faithful", "not_faithful", "val_acc", "test_acc"]


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


def with_published(cells: pd.DataFrame, comparable: bool = True) -> pd.DataFrame:
    """Add the published validation accuracy (%) of each cell and, when the runs are the paper's setup
    (``comparable``), this sweep's difference to it in percent points (NaN otherwise)."""
    cells = cells.copy()
    pub = [published.val_acc(w, m) for w, m in zip(cells["window"], cells["mask"], strict=True)]
    cells["published_val_acc_mean"] = [p[0] if p else math.nan for p in pub]
    cells["published_val_acc_std"] = [p[1] if p else math.nan for p in pub]
    cells["val_acc_diff"] = cells["val_acc_mean"] - cells["published_val_acc_mean"] if comparable else math.nan
    return cells


def setup_section(runs: pd.DataFrame) -> tuple[str, bool]:
    """Whether the finished runs are the paper's setup (so the published table is a target), said in a line."""
    if runs.empty:
        return "", True
    off = runs[runs["faithful"] != "true"]
    if off.empty:
        return "Setup: the paper's (every run tagged faithful=true): the published values are the target.", True
    reasons = sorted({why for text in off["not_faithful"] for why in str(text).split("; ") if why})
    shown = "; ".join(reasons[:6]) + (f"; … ({len(reasons) - 6} more)" if len(reasons) > 6 else "")
    return ("**Not the paper's setup** — the published numbers are shown as context, not as a difference to beat "
            f"({len(off)} of {len(runs)} run(s) differ: {shown or 'runs made before asc tagged faithfulness'})."), False


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
            diff = f" · Δ {r.val_acc_diff:+.1f}" if not math.isnan(r.val_acc_diff) else " (context)" if pub else ""
            val_row.append(f"**{mean_std(r.val_acc_mean, r.val_acc_std, r.n)}** · {pub_text}{diff}")
            test_row.append(mean_std(r.test_acc_mean, r.test_acc_std, r.n))
        val_rows.append(val_row)
        test_rows.append(test_row)
    return "\n\n".join([
        "Validation accuracy (%), mean ± sample std over seeds: **this sweep** · published (Schuchardt 2019) · "
        "difference in percent points (only for the paper's setup)",
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


def best_cell_section(best: pd.Series, cm: np.ndarray | None, classes: list[str] | None,
                      comparable: bool = True) -> tuple[str, pd.DataFrame]:
    """The best cell next to the published 69.7 % and its confusion matrix; and the per-class table (with the
    difference only when the runs are the paper's setup)."""
    pw, pm = published.BEST_CELL
    lines = [
        f"Best cell by mean validation accuracy: window {best['window']:g} s, mask {100 * best['mask']:g} % — "
        f"test accuracy **{mean_std(best['test_acc_mean'], best['test_acc_std'])} %** "
        f"(validation {mean_std(best['val_acc_mean'], best['val_acc_std'])} %; n={int(best['n'])}).",
        f"Published ({pw:g} s, mask {100 * pm:g} %): test accuracy **{published.TEST_ACC} %** "
        f"({published.TEST_CORRECT} of {published.TEST_CLIPS} test clips)" + ("." if comparable else ", for context."),
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
        table["diff_pct"] = (table["this_sweep_pct"] - table["published_pct"]).round(1) if comparable else math.nan
        header = ["class", "this sweep", "published"] + (["Δ"] if comparable else [])
        rows = [[r["class"], f"{r['this_sweep_pct']:.1f}", f"{r['published_pct']:.1f}"]
                + ([f"{r['diff_pct']:+.1f}"] if comparable else []) for _, r in table.iterrows()]
        lines += ["Published confusion matrix (test set, rows true, columns predicted):",
                  confusion_markdown(pub_cm, list(published.CLASSES)),
                  "Per-class test accuracy (%)" + ("" if comparable else ", the published column as context") + ":",
                  markdown_table(header, rows)]
    else:
        lines.append(f"(The classes differ from the paper's {list(published.CLASSES)}: no per-class comparison.)")
    return "\n\n".join(lines), table


def heatmap(cells: pd.DataFrame, path: str | Path) -> Path:
    """PNG of the grid: mean validation accuracy (with the published value) and mean test accuracy, in %."""
    windows = sorted(set(cells["window"]))
    masks = sorted(set(cells["mask"]))
    fig = Figure(figsize=(4.0 + 2.2 * len(masks), 1.6 + 1.0 * len(windows)))
    axes = fig.subplots(1, 2)
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
    return Path(path)


# -- MLflow ---------------------------------------------------------------------------------------------------
def collect(store: TrackingStore, parent_run_id: str) -> pd.DataFrame:
    """The parent run's children as a table (:data:`RUN_COLUMNS`); accuracies as fractions, NaN if not logged."""
    rows = []
    for run in store.children(parent_run_id):
        tags, metrics = run.data.tags, run.data.metrics
        if "config_hash" not in tags:
            continue
        rows.append({
            "run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
            "start_time": run.info.start_time, "window": float(tags["window"]), "mask": float(tags["mask"]),
            "seed": int(tags["seed"]), "config_hash": tags["config_hash"],
            "settings_hash": tags.get("settings_hash", tags.get("cell", "")), "cell": tags.get("cell", ""),
            "faithful": tags.get("faithful", "unknown"), "not_faithful": tags.get("faithful.why", ""),
            "val_acc": metrics.get("best_val/acc", math.nan), "test_acc": metrics.get("test/acc", math.nan),
        })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def mean_confusion(store: TrackingStore, run_ids: list[str]) -> tuple[np.ndarray | None, list[str] | None]:
    """Mean of the runs' ``confusion_test.csv`` (rows true, columns predicted); (None, None) if none is logged."""
    mats, classes = [], None
    for run_id in run_ids:
        try:
            frame = store.read_csv(run_id, "confusion_test.csv", index_col=0)
        except TrackingError:  # a run without the artifact is left out of the mean
            log.warning("run %s has no confusion_test.csv; left out of the mean confusion matrix", run_id)
            continue
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


def report(store: TrackingStore, parent_run_id: str, out: str | Path, echo: bool = False,
           log_to_parent: bool = True) -> Report:
    """Summarise the sweep under ``parent_run_id``: write the files into ``out`` and log them to the parent."""
    out = Path(out)
    (out / "confusion").mkdir(parents=True, exist_ok=True)
    parent = store.get_run(parent_run_id)
    runs = collect(store, parent_run_id)
    finished = latest_finished(runs)
    finished = finished[np.isfinite(finished["val_acc"].astype(float))]
    pct = finished.assign(val_acc=100 * finished["val_acc"], test_acc=100 * finished["test_acc"])
    setup, comparable = setup_section(finished)
    cells = with_published(aggregate(pct), comparable)
    duplicated = cells.duplicated(["window", "mask"], keep=False)

    sections = [f"# Sweep report: {parent.info.run_name}",
                f"MLflow parent run `{parent_run_id}` (sweep `{parent.data.tags.get('sweep', '')}`). "
                f"Published values: {published.SOURCE}."]
    sweep_dir, swept = parent.data.tags.get("sweep.dir"), parent.data.tags.get("sweep.swept", "")
    mistakes = read_mistakes(sweep_dir) if sweep_dir else []
    sections.append(jobs_section(runs, parent.data.tags.get("sweep.jobs", ""), mistakes, set(filter(None, swept.split(",")))))
    if setup:
        sections.append(setup)
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
            cm, classes = mean_confusion(store, ids)
            if cm is None:
                continue
            stem = cell_key(r.window, r.mask) + (f"_{r.settings_hash[:8]}" if duplicated[r.Index] else "")
            confusions[r.settings_hash] = (cm, classes)
            (out / "confusion" / f"{stem}.csv").write_text(confusion_csv_float(cm, classes))
            plot_confusion(cm, classes, out / "confusion" / f"{stem}.png",
                           f"window {r.window:g} s, mask {100 * r.mask:g} %: mean of {r.n} run(s), test")
        cm, classes = confusions.get(best["settings_hash"], (None, None))
        text, best_table = best_cell_section(best, cm, classes, comparable)
        sections.append(text)
        heatmap(cells_grid, out / "heatmap.png")
    markdown = "\n\n".join(sections) + "\n"
    (out / "report.md").write_text(markdown)
    cells.to_csv(out / "cells.csv", index=False, float_format="%.4f")
    best_table.to_csv(out / "best_cell.csv", index=False)
    if log_to_parent:
        log_summary(store, parent_run_id, cells, runs)
        store.log_artifacts(parent_run_id, out, "summary")
    if echo:
        print(markdown)
        print(f"written to {out}/" + (f" and logged to MLflow run {parent_run_id} (artifacts: summary/)" if log_to_parent else ""))
    return Report(markdown, cells, out)


def confusion_csv_float(cm: np.ndarray, classes: list[str]) -> str:
    """Like :func:`asc.tracking.store.confusion_csv` for a mean matrix (three decimals)."""
    buf = io.StringIO()
    pd.DataFrame(np.round(cm, 3), index=classes, columns=classes).rename_axis("true\\predicted").to_csv(buf)
    return buf.getvalue()


#: The folder in a sweep's folder with one file per job that stopped on a mistake in its input (written by
#: :meth:`asc.runs.sweep.SweepCallback.on_job_end`).
MISTAKES = ".mistakes"


def read_mistakes(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The jobs of the sweep in ``sweep_dir`` that stopped on a mistake in their input, in job order: ``num``,
    ``overrides``, ``error`` (the one line) and ``config_hash`` (the job's MLflow runs carry it, if it started one)."""
    folder = Path(sweep_dir) / MISTAKES
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def job_name(overrides: list[str], swept: set[str]) -> str:
    """A job by the swept settings that tell it apart (all its overrides where none is known)."""
    named = [o for o in overrides if o.split("=", 1)[0] in swept] or overrides
    return " ".join(named) or "(no overrides)"


def jobs_section(runs: pd.DataFrame, expected: str, mistakes: Sequence[dict[str, Any]] = (),
                 swept: set[str] = frozenset()) -> str:
    """How many jobs finished, failed, never ran; each unfinished one, with its one-line reason where it stopped on a
    mistake in its input (:func:`read_mistakes`; one found before the job started has no MLflow run)."""
    status = job_status(runs) if not runs.empty else runs
    counts = status["status"].value_counts().to_dict() if not status.empty else {}
    reasons = {m["config_hash"]: m["error"] for m in mistakes if m.get("config_hash")}
    known = set(status["config_hash"]) if not status.empty else set()
    before = [m for m in mistakes if m.get("config_hash") not in known]  # stopped before their MLflow run
    parts = [f"{counts.get('FINISHED', 0)} finished"]
    parts += [f"{n} {s.lower()}" for s, n in sorted(counts.items()) if s != "FINISHED"]
    if before:
        parts.append(f"{len(before)} stopped on a mistake in its input before it started")
    head = f"Jobs: {expected} expected, " if expected else "Jobs: "
    lines = [head + ", ".join(parts) + "."]
    if expected and expected.isdigit() and len(status) + len(before) < int(expected):
        lines.append(f"{int(expected) - len(status) - len(before)} job(s) never reached MLflow (not started, or killed "
                     "early); rerun the sweep's command to run them.")
    unfinished = status[status["status"] != "FINISHED"] if not status.empty else status
    for _, r in unfinished.iterrows():
        why = f": {reasons[r['config_hash']]}" if r["config_hash"] in reasons else ""
        lines.append(f"- `{r['run_name']}`: {r['status']} (MLflow run {r['run_id']}){why}")
    for m in before:
        lines.append(f"- `{job_name(m['overrides'], swept)}`: stopped on a mistake in its input: {m['error']}")
    return "\n".join(lines)


def log_summary(store: TrackingStore, parent_run_id: str, cells: pd.DataFrame, runs: pd.DataFrame) -> None:
    """Per-cell metrics on the parent run (accuracies as fractions, like the children's)."""
    metrics: dict[str, float] = {}
    duplicated = cells.duplicated(["window", "mask"], keep=False)
    for r in cells.itertuples():
        key = "cell/" + cell_key(r.window, r.mask) + (f"_{r.settings_hash[:8]}" if duplicated[r.Index] else "")
        values = {"n": r.n, "val_acc_mean": r.val_acc_mean / 100, "val_acc_std": r.val_acc_std / 100,
                  "test_acc_mean": r.test_acc_mean / 100, "test_acc_std": r.test_acc_std / 100}
        metrics.update({f"{key}/{k}": float(v) for k, v in values.items() if not math.isnan(v)})
    best = best_cell(cells)
    if best is not None:
        metrics["best/val_acc_mean"] = float(best["val_acc_mean"]) / 100
        metrics["best/test_acc_mean"] = float(best["test_acc_mean"]) / 100
        store.set_tags(parent_run_id, {"best_cell": f"window={best['window']:g},mask={best['mask']:g}"})
    status = job_status(runs) if not runs.empty else runs
    for s in ("FINISHED", "FAILED", "KILLED", "RUNNING"):
        metrics[f"jobs/{s.lower()}"] = float((status["status"] == s).sum()) if not status.empty else 0.0
    store.log_metrics(parent_run_id, metrics)
