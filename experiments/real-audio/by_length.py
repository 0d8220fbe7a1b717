"""Test accuracy by recording length, per padding rule: where ``data.pad=silence`` loses against ``repeat``.

For each named sweep (``SWEEP_ID=label``) and each of its seeds, the run's best checkpoint (from MLflow, through
asc's TrackingStore) predicts every test recording of the grouped split from the cached images, as evaluation does
(the fewest clips covering the recording, the model's evaluation window of each). Recordings are grouped by length:
shorter than the part of a clip that the centre window shows first (``--centre-start``: the centre window of a 5 s
clip with a 2.5 s window under the reference crop starts 1.07 s in, so with silence padding it holds no sound at all),
shorter than a clip (padded), and a clip or longer.

    .venv/bin/python experiments/real-audio/by_length.py --data-root /work/shared/real-audio/animals \\
        animals-cqt-lite0=repeat animals-cqt-lite0-silence=silence
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from asc.data.cache import FeatureCache
from asc.data.dataset import read_folder
from asc.data.splits import make_split
from asc.inference.predictor import Predictor
from asc.runs.report import collect, latest_finished, markdown_table
from asc.tracking.store import TrackingStore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweeps", nargs="+", help="SWEEP_ID=label")
    p.add_argument("--data-root", required=True)
    p.add_argument("--cache", default="cache")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--experiment", default="real-audio")
    p.add_argument("--centre-start", type=float, default=1.07, help="seconds into a clip where the centre window starts")
    args = p.parse_args()
    store = TrackingStore(args.tracking_uri, explicit=True)
    df = read_folder(args.data_root)
    df = df[make_split(df, "grouped", 42) == "test"].reset_index(drop=True)
    files = [Path(args.data_root) / name for name in df["filename"]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.sweeps:
            sweep, _, label = item.partition("=")
            parent = store.parents(store.experiment(args.experiment), "sweep", sweep)[-1].info.run_id
            runs = latest_finished(collect(store, parent)).sort_values("seed")
            hits = []
            for run_id in runs["run_id"]:
                ckpt = store.download(run_id, "checkpoints/best.ckpt", Path(tmp) / run_id)
                predictor = Predictor.from_checkpoint(ckpt)
                images = list(FeatureCache(args.cache, predictor.spec).each(files, list(df["filename"]), False))
                names = [predictor.class_names[int(np.argmax(predictor.predict_image(im, windows="eval").mean))]
                         for im in images]
                hits.append(np.array(names) == df["label"].to_numpy())
            seconds = np.array([(im.shape[1] - 1) * predictor.hop_seconds for im in images])
            clip = predictor.clip_seconds
            groups = {f"< {args.centre_start:g} s": seconds < args.centre_start,
                      f"{args.centre_start:g}-{clip:g} s (padded)": (seconds >= args.centre_start) & (seconds < clip),
                      f">= {clip:g} s": seconds >= clip, "all": np.ones_like(seconds, dtype=bool)}
            for name, sel in groups.items():
                acc = [100 * h[sel].mean() for h in hits]
                rows.append([label or sweep, name, str(int(sel.sum())),
                             f"{np.mean(acc):.1f} ± {np.std(acc, ddof=1):.1f}" if len(acc) > 1 else f"{acc[0]:.1f}"])
    print(markdown_table(["setting", "test recordings", "n", "test accuracy (%), mean ± std over seeds"], rows))


if __name__ == "__main__":
    main()
