"""Recipes side by side: several sweeps (each one recipe over seeds) in one table and one bar chart.

    asc compare                                     # every sweep in the store, one row each
    asc compare --experiment real-audio --experiment cpresnet
    asc compare 0123abcd=faithful 4567ef01="CP-ResNet + mixup"   # chosen sweeps (parent run ids), labelled
    asc compare --combine 1+2                       # and a row for the ensemble of rows 1 and 2

:func:`asc.runs.report.report` compares the cells of *one* sweep (window × mask); this compares sweeps. For each
sweep's parent run it keeps the newest FINISHED child of each config (as the report does) and gives: test and
best-validation accuracy (mean ± sample std over the seeds), the mean test accuracy of the best cell when a sweep
has several cells, the accuracy of the seeds' ensemble (their test probabilities averaged, :mod:`asc.runs.ensemble`;
runs made before asc logged them have none), epochs, wall time per seed, trainable and total parameters, forward
FLOPs per sample, and whether the recipe is the paper's setup (``faithful``) or why not. ``--combine A+B`` adds a
row for an ensemble of recipes A and B (the seeds' probabilities averaged across recipes, seed by seed). The first faithful row is
the baseline: every other row gets its difference in percent points (no faithful row: the first row; ``--baseline``
chooses). Written to ``--out`` (``compare.md``, ``compare.csv``, ``compare.png``) and logged to a run ``compare``
of the MLflow experiment ``comparisons``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from asc.runs.ensemble import ARTIFACT, ensemble, ensemble_accuracy
from asc.runs.report import latest_finished, markdown_table, mean_std
from asc.tracking.store import PARENT_TAG, TrackingError, TrackingStore

log = logging.getLogger(__name__)

COLUMNS = ["recipe", "parent_run_id", "experiment", "n", "test_mean", "test_std", "val_mean", "val_std", "epochs",
           "seconds_per_seed", "ensemble", "params_trainable", "params_total", "flops_per_sample", "faithful", "why"]


def sweep_row(store: TrackingStore, parent_run_id: str, label: str | None = None) -> dict:
    """One recipe: the sweep ``parent_run_id``'s finished runs summarised (see the module's docstring)."""
    parent = store.get_run(parent_run_id)
    runs = []
    for run in store.children(parent_run_id):
        tags, m = run.data.tags, run.data.metrics
        if "config_hash" not in tags:
            continue
        end = run.info.end_time or run.info.start_time
        runs.append({"run_id": run.info.run_id, "seed": tags.get("seed", run.info.run_id),
                     "status": run.info.status, "start_time": run.info.start_time,
                     "config_hash": tags["config_hash"], "cell": tags.get("cell", ""),
                     "test_acc": m.get("test/acc", math.nan), "val_acc": m.get("best_val/acc", math.nan),
                     "epochs": m.get("epoch", math.nan) + 1, "seconds": (end - run.info.start_time) / 1000,
                     "params_trainable": m.get("params/trainable", math.nan), "params_total": m.get("params/total", math.nan),
                     "flops": m.get("flops_per_sample", math.nan), "faithful": tags.get("faithful", "unknown"),
                     "why": tags.get("faithful.why", "")})
    frame = latest_finished(pd.DataFrame(runs, columns=["run_id", "seed", "status", "start_time", "config_hash", "cell",
                                                        "test_acc", "val_acc", "epochs", "seconds", "params_trainable",
                                                        "params_total", "flops", "faithful", "why"]))
    if frame.empty:
        raise TrackingError(f"sweep {parent_run_id} ({parent.info.run_name}) has no finished run")
    if frame["cell"].nunique() > 1:  # a grid: the cell with the best mean validation accuracy stands for the recipe
        best = frame.groupby("cell")["val_acc"].mean().idxmax()
        frame = frame[frame["cell"] == best]

    def sd(col: str) -> float:
        return float(frame[col].std(ddof=1)) if len(frame) > 1 else math.nan

    return {"recipe": label or parent.info.run_name, "parent_run_id": parent_run_id,
            "experiment": parent.info.experiment_id, "n": len(frame),
            "test_mean": float(frame["test_acc"].mean()), "test_std": sd("test_acc"),
            "val_mean": float(frame["val_acc"].mean()), "val_std": sd("val_acc"),
            "epochs": float(frame["epochs"].mean()), "seconds_per_seed": float(frame["seconds"].mean()),
            "ensemble": ensemble_accuracy(store, list(frame["run_id"])),
            "params_trainable": float(frame["params_trainable"].max()), "params_total": float(frame["params_total"].max()),
            "flops_per_sample": float(frame["flops"].max()), "faithful": str(frame["faithful"].iloc[0]),
            "why": str(frame["why"].iloc[0]), "runs": dict(zip(frame["seed"], frame["run_id"]))}


def combined_row(store: TrackingStore, members: list[dict], label: str | None = None) -> dict:
    """Several recipes (rows of :func:`sweep_row`) as one ensemble: for each seed all of them ran, the accuracy of
    their test probabilities averaged (one model per recipe); mean ± std over those seeds. Its ``ensemble`` column
    averages every run of every member. Costs (time, parameters, FLOPs) are the members' sums: an ensemble runs
    each of its models."""
    names = " + ".join(m["recipe"] for m in members)
    seeds = [seed for seed in members[0]["runs"] if all(seed in m["runs"] for m in members[1:])]
    if not seeds:
        raise TrackingError(f"--combine {names}: the recipes share no seed")

    def tables(run_ids: list[str]) -> list[pd.DataFrame]:
        try:
            return [store.read_csv(run_id, ARTIFACT) for run_id in run_ids]
        except TrackingError as err:
            raise TrackingError(f"--combine {names}: a run has no {ARTIFACT} (made before asc logged it: rerun "
                                f"its sweep) ({err})") from None

    accs = [ensemble(tables([m["runs"][seed] for m in members])) for seed in seeds]
    if any(math.isnan(a) for a in accs):
        raise TrackingError(f"--combine {names}: the recipes were tested on different recordings or classes "
                            "(another split or dataset); only recipes with the same test set can be combined")
    every = ensemble(tables([run_id for m in members for run_id in m["runs"].values()]))
    total = {col: float(sum(m[col] for m in members)) for col in
             ("seconds_per_seed", "params_trainable", "params_total", "flops_per_sample")}
    return {"recipe": label or names, "parent_run_id": ",".join(m["parent_run_id"] for m in members),
            "experiment": "", "n": len(accs), "test_mean": float(np.mean(accs)),
            "test_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan,
            "val_mean": math.nan, "val_std": math.nan, "epochs": math.nan, "ensemble": every, **total,
            "faithful": "false", "why": f"an ensemble of {names}"}


def _member(rows: list[dict], ref: str) -> dict:
    """A row of ``rows`` by its recipe label or its number (0 = first)."""
    by_label = [r for r in rows if r["recipe"] == ref]
    if len(by_label) == 1:
        return by_label[0]
    if ref.isdigit() and int(ref) < len(rows):
        return rows[int(ref)]
    known = ", ".join(f"{i}={r['recipe']}" for i, r in enumerate(rows))
    why = "names several rows" if by_label else "is no row"
    raise TrackingError(f"--combine: {ref!r} {why} of the table (its rows: {known}); give a row's number or label")


def sweep_parents(store: TrackingStore, experiments: list[str] | None = None) -> list[str]:
    """The parent runs of every sweep in ``experiments`` (names; default: all of the store's), oldest first."""
    names = experiments or [name for _, name in store.experiments()]
    ids = []
    for name in names:
        exp = store.client.get_experiment_by_name(name)
        if exp is None:
            known = ", ".join(n for _, n in store.experiments()) or "none"
            raise TrackingError(f"--experiment {name!r}: no such experiment in {store.uri} (it has: {known})")
        ids.append(exp.experiment_id)
    runs = store.search(ids, f"tags.`{PARENT_TAG}` = 'sweep'", order_by=["attributes.start_time ASC"]) if ids else []
    return [run.info.run_id for run in runs]


def _count(x: float) -> str:
    if math.isnan(x):
        return "—"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.0f}"


def _pct(mean: float, std: float, n: int) -> str:
    return mean_std(mean * 100, std * 100, n) if not math.isnan(mean) else "—"


def baseline_index(table: pd.DataFrame) -> int:
    """The row the others are measured against: the first of the paper's setup, else the first row."""
    faithful = np.flatnonzero(table["faithful"].to_numpy() == "true")
    return int(faithful[0]) if len(faithful) else 0


def markdown(table: pd.DataFrame, baseline: int | None = None) -> str:
    """The comparison as a Markdown table, with each row's test accuracy minus the ``baseline`` row's
    (default: :func:`baseline_index`) in percent points."""
    baseline = baseline_index(table) if baseline is None else baseline
    base = float(table["test_mean"].iloc[baseline])
    rows = []
    for i, r in enumerate(table.itertuples()):
        delta = "baseline" if i == baseline else f"{(r.test_mean - base) * 100:+.1f}"
        setup = "the paper's" if r.faithful == "true" else (r.why.split(";")[0][:60] or "not the paper's")
        rows.append([r.recipe, _pct(r.test_mean, r.test_std, r.n), delta, "—" if math.isnan(r.ensemble) else f"{r.ensemble * 100:.1f}",
                     _pct(r.val_mean, r.val_std, r.n),
                     _count(r.epochs), f"{r.seconds_per_seed:.0f}", _count(r.params_trainable),
                     _count(r.params_total), _count(r.flops_per_sample), setup])
    return markdown_table(["recipe", "test acc. (%)", "Δ test (pp)", "seed ensemble (%)", "best val. (%)", "epochs", "s / seed",
                           "trainable", "parameters", "FLOPs / sample", "setup"], rows)


def bar_chart(table: pd.DataFrame, path: str | Path) -> Path:
    """Test accuracy per recipe (mean, sample std as the error bar); the paper's setup in grey."""
    fig = Figure(figsize=(max(5.0, 1.1 * len(table) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    colours = ["0.6" if f == "true" else "C0" for f in table["faithful"]]
    ax.bar(x, table["test_mean"] * 100, yerr=np.nan_to_num(table["test_std"].to_numpy() * 100), capsize=4, color=colours)
    for xi, m in zip(x, table["test_mean"]):
        ax.text(xi, m * 100 + 1, f"{m * 100:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, table["recipe"], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_ylim(0, 105)
    ax.set_title("recipes (grey: the paper's setup)")
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


@dataclass
class Comparison:
    table: pd.DataFrame
    markdown: str
    out: Path
    run_id: str | None


def compare(store: TrackingStore, sweeps: list[tuple[str, str | None]], out: str | Path,
            log_to: str | None = "comparisons", skip_unfinished: bool = False,
            baseline: int | None = None, combine: list[str] | None = None) -> Comparison:
    """``sweeps``: (parent run id, label or None). Writes ``out``/compare.{md,csv,png}; logs them to a new run
    ``compare`` of experiment ``log_to`` (None: not logged). ``skip_unfinished``: a sweep without a finished run
    is left out with a warning (else it is an error). ``baseline``: the row index the others are measured against
    (default: :func:`baseline_index`). ``combine``: ensembles of rows, each ``"A+B[+...]"`` by label or row
    number, added as rows (:func:`combined_row`)."""
    rows = []
    for pid, label in sweeps:
        try:
            rows.append(sweep_row(store, pid, label))
        except TrackingError as err:
            if not skip_unfinished:
                raise
            log.warning("%s: left out", err)
    if not rows:
        raise TrackingError(f"no finished sweep to compare in {store.uri} (run `python train.py -m ...` first, "
                            "or name parent run ids)")
    for spec in combine or []:
        refs = [ref.strip() for ref in spec.split("+")]
        if len(refs) < 2:
            raise TrackingError(f"--combine {spec!r}: name two or more rows joined by '+', e.g. --combine 1+2")
        rows.append(combined_row(store, [_member(rows, ref) for ref in refs]))
    table = pd.DataFrame(rows, columns=COLUMNS)
    text = markdown(table, baseline)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text + "\n")
    table.to_csv(out / "compare.csv", index=False)
    bar_chart(table, out / "compare.png")
    run_id = None
    if log_to:
        run_id = store.create_run(store.experiment(log_to), "compare", tags={"asc.compare.sweeps": ",".join(p for p, _ in sweeps)})
        for name in ("compare.md", "compare.csv", "compare.png"):
            store.log_artifact(run_id, out / name)
        for i, r in enumerate(table.itertuples()):
            store.log_metrics(run_id, {"test_acc_mean": r.test_mean, "val_acc_mean": r.val_mean}, step=i)
        store.end_run(run_id)
    return Comparison(table, text, out, run_id)
