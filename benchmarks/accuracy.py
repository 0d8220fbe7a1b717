"""Accuracy effects of the fast paths on synthetic scenes, mean +- std over seeds (``make bench-accuracy``).

1. Embedding cache: K fixed window positions per training clip against continuous random positions (the
   cache off), for K = 1, 2, 4, 8, without masking; and mask=0.2 from the cache (4 positions x 2 stored
   masks) against a fresh band at every step. The backbone is a frozen small CNN (random weights: ImageNet
   VGG16 cannot be downloaded here) so the runs fit a CPU; only the head trains, as in the paper.
2. Precision: the demo's trainable small CNN in fp32 against bf16 autocast + channels-last.

Every run is the real one (``asc.runs.train.run`` on the composed config), logged to a temporary MLflow store.

    python -m benchmarks.accuracy [--seeds 3] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asc.runs.train import RunResult

REPO = Path(__file__).resolve().parents[1]

#: synthetic set: 3 cities x 3 locations x 3 segments x 10 scenes = 270 clips of 6 s (48 kHz, 24 bit, stereo)
DATA = [
    "experiment=demo_small_cnn", "data.synthetic.cities=[lyon,milan,paris]", "data.synthetic.locations_per_city=3",
    "data.synthetic.segments_per_location=3", "data.synthetic.duration=6.0", "window=3.0", "model.image_size=64",
    "progress=false",
]
FROZEN = ["model.freeze=true", "model.pretrained=false", "model.hidden=[64]"]


def run(overrides: list[str]) -> RunResult:
    from hydra import compose, initialize_config_dir

    from asc.runs.train import run as train_run

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return train_run(cfg)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--positions", default="1,2,4,8")
    p.add_argument("--cache", default="cache", help="spectrogram and embedding cache (reused between runs)")
    p.add_argument("--data", default="data")
    p.add_argument("--json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="asc-bench-acc-"))
    common = [*DATA, f"paths.data={args.data}", f"paths.cache={args.cache}", f"paths.outputs={tmp / 'out'}",
              f"logger.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", f"logger.artifacts={tmp / 'art'}",
              f"trainer.max_epochs={args.epochs}", "trainer.patience=8"]
    configs: dict[str, list[str]] = {"continuous, mask 0": [*FROZEN, "mask=0"]}
    for k in args.positions.split(","):
        configs[f"cache K={k}, mask 0"] = [*FROZEN, "mask=0", "model.embedding_cache.enabled=true",
                                           f"model.embedding_cache.positions={k}"]
    configs["continuous, mask 0.2"] = [*FROZEN, "mask=0.2"]
    configs["cache K=4 x 2 masks, mask 0.2"] = [*FROZEN, "mask=0.2", "model.embedding_cache.enabled=true"]
    configs["small CNN trained, fp32"] = ["mask=0.1"]
    configs["small CNN trained, bf16 + channels-last"] = ["mask=0.1", "trainer.precision=bf16-mixed",
                                                          "model.channels_last=true"]
    results: dict[str, dict[str, list[float]]] = {}
    for name, extra in configs.items():
        for seed in range(args.seeds):
            r = run([*common, *extra, f"seed={seed}"])
            acc = results.setdefault(name, {"test": [], "val": []})
            acc["test"].append(r.test_acc)
            acc["val"].append(r.val_acc)
            print(f"  {name}, seed {seed}: test {r.test_acc:.3f}, val {r.val_acc:.3f}", flush=True)

    def ms(xs: list[float]) -> str:
        return f"{100 * statistics.mean(xs):5.1f} +- {100 * (statistics.stdev(xs) if len(xs) > 1 else 0):4.1f}"

    print(f"\n== accuracy on synthetic scenes (270 clips, 6 s), {args.seeds} seeds, test / best val % (measured)")
    width = max(map(len, results))
    for name, r in results.items():
        print(f"  {name:<{width}}  test {ms(r['test'])}   val {ms(r['val'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
