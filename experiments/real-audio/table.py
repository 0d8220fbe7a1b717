"""The tables of experiments/real-audio/README.md, read back from MLflow (through asc's TrackingStore only).

One sweep per setting (``python train.py -m experiment=real_audio ... seed=0,1,2 sweep_id=NAME``); for each named
sweep: the newest finished run of each seed, test and best-validation accuracy (mean ± sample std over seeds), the
run's own wall time, the data counts (``data/*``), per-class test accuracy (mean ± std) and the confusion matrix
summed over seeds. With ``--data-root`` it adds controls that hear no animal: each test recording predicted as the
most common training label among the training recordings of its sample rate, of its duration, or of both.

    .venv/bin/python experiments/real-audio/table.py --data-root /work/shared/real-audio/animals \\
        animals-cqt-lite0="CQT + emphasis, Lite0" animals-mel-lite0="mel, Lite0" ...
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from asc.data.dataset import audio_headers, read_folder
from asc.data.splits import make_split
from asc.runs.report import collect, latest_finished, markdown_table
from asc.tracking.store import TrackingStore


def pm(values: np.ndarray, scale: float = 100, decimals: int = 1) -> str:
    values = np.asarray(values, dtype=float) * scale
    std = values.std(ddof=1) if len(values) > 1 else math.nan
    return f"{values.mean():.{decimals}f} ± {std:.{decimals}f}" if not math.isnan(std) else f"{values.mean():.{decimals}f}"


def sweep_runs(store: TrackingStore, experiment: str, sweep: str) -> list:
    """The newest finished run of each config (seed) of sweep ``sweep``, as MLflow runs, by seed."""
    exp = store.experiment(experiment)
    parents = store.parents(exp, "sweep", sweep)
    if not parents:
        raise SystemExit(f"no sweep {sweep!r} in experiment {experiment!r} of {store.uri}")
    parent = parents[-1].info.run_id
    finished = latest_finished(collect(store, parent)).sort_values("seed")
    return [store.get_run(run_id) for run_id in finished["run_id"]]


def confusion(store: TrackingStore, run_id: str, tmp: Path) -> pd.DataFrame:
    return pd.read_csv(store.download(run_id, "confusion_test.csv", tmp / run_id), index_col=0)


def controls(root: str, bins: int = 10) -> dict[str, float]:
    """Test accuracy on the grouped split of rules that hear no animal: each test recording gets the most common
    training label of its sample rate, of its duration (``bins`` quantile bins of the training durations), of both."""
    df = read_folder(root)
    df["part"] = make_split(df, "grouped", 42)
    heads, _ = audio_headers(Path(root), df, progress=False)
    df["rate"] = heads["sample_rate"].to_numpy()
    edges = np.quantile(heads["seconds"][df["part"] == "train"], np.linspace(0, 1, bins + 1)[1:-1])
    df["length"] = np.searchsorted(edges, heads["seconds"].to_numpy())
    df["both"] = df["rate"].astype(str) + "/" + df["length"].astype(str)
    train, test = df[df["part"] == "train"], df[df["part"] == "test"]
    fallback = train["label"].value_counts().index[0]
    out = {"majority class": float((test["label"] == fallback).mean())}
    for key, name in (("rate", "sample rate"), ("length", "duration"), ("both", "sample rate and duration")):
        rule = train.groupby(key)["label"].agg(lambda s: s.value_counts().index[0])
        out[name] = float((test[key].map(rule).fillna(fallback) == test["label"]).mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweeps", nargs="+", help="SWEEP_ID=label")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--experiment", default="real-audio")
    p.add_argument("--data-root", help="the recordings, for the sample-rate control")
    args = p.parse_args()
    store = TrackingStore(args.tracking_uri, explicit=True)
    rows, per_class, matrices = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.sweeps:
            sweep, _, label = item.partition("=")
            runs = sweep_runs(store, args.experiment, sweep)
            m = [r.data.metrics for r in runs]
            seconds = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
            counts = {k.split("/", 1)[1]: int(v) for k, v in m[0].items() if k.startswith("data/")}
            rows.append([label or sweep, f"`{sweep}`", " ".join(r.data.tags["seed"] for r in runs),
                         f"**{pm([x['test/acc'] for x in m])}**", pm([x["best_val/acc"] for x in m]),
                         " / ".join(f"{s:.0f}" for s in seconds),
                         ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))])
            classes = sorted(k.removeprefix("test/acc_") for k in m[0] if k.startswith("test/acc_"))
            per_class[label or sweep] = {c: pm([x[f"test/acc_{c}"] for x in m], decimals=0) for c in classes}
            matrices[label or sweep] = sum(confusion(store, r.info.run_id, Path(tmp)) for r in runs)
    print(markdown_table(["setting", "sweep", "seeds", "test accuracy (%)", "best validation (%)",
                          "run wall time (s, per seed)", "data/* counts"], rows))
    print()
    first = next(iter(per_class.values()))
    print("Per-class test accuracy (%), mean ± std over seeds:\n")
    print(markdown_table(["class", *per_class], [[c, *(v[c] for v in per_class.values())] for c in first]))
    for label, cm in matrices.items():
        print(f"\nConfusion matrix, {label}: test set, summed over the seeds (rows true, columns predicted):\n")
        print(markdown_table(["true \\ predicted", *cm.columns],
                             [[i, *(str(int(v)) for v in row)] for i, row in zip(cm.index, cm.to_numpy(), strict=True)]))
    if args.data_root:
        print("\nControls that hear no animal (test accuracy, %; the most common training label of each value):\n")
        print(markdown_table(["rule", "test accuracy (%)"],
                             [[k, f"{100 * v:.1f}"] for k, v in controls(args.data_root).items()]))


if __name__ == "__main__":
    main()
