"""Issue #14 on a GPU node, in one run (~7 min): constant-Q images on the GPU against librosa, then the paper's grid
end to end at a size that fits the time, results in one JSON.

    python -m benchmarks.gpu_issue14                                   # on the GPU machine (after make install)
    python -m benchmarks.gpu_issue14 --device cpu --quick              # anywhere: checks that it runs

1. ``benchmarks.device_features`` on ``--clips`` TAU-format clips: the torch images' grey-level difference from the
   faithful ones (computed on the GPU), WAV file to image per clip with one CPU thread (librosa) against the GPU path
   (decoding on one CPU thread, transform in batches on the GPU), and ``asc extract``'s cache build with every core,
   librosa against the torch backend on the GPU;
2. ``benchmarks.grid_e2e``: data (generated, not counted), ``asc extract`` on the GPU, the 27 jobs of
   ``experiment=fast`` (frozen VGG16 with random weights -- the node has no ImageNet weights; the cost is the
   same -- 224 px, embedding cache, bf16, channels-last), ``asc report``, each stage's wall time. The size defaults
   to 2000 clips (10 cities x 2 locations x 10 segments per scene: a seventh of TAU, 20 per scene and city so the
   paper split is exactly 60:20:20) and at most ``--epochs`` epochs; the grid is stopped at the time budget and the
   report covers the jobs that finished.

Writes ``experiments/bench/gpu-issue14.json`` (``--json``) and prints both tables.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from benchmarks.common import machine


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes and a small CNN: check that the script runs")
    p.add_argument("--budget", type=float, default=420, help="seconds for everything; the grid is cut to fit")
    p.add_argument("--clips", type=int, default=64, help="clips of the feature benchmark")
    p.add_argument("--batch", type=int, default=64, help="clips per batch of the torch transform")
    p.add_argument("--cities", type=int, default=10)
    p.add_argument("--locations", type=int, default=2)
    p.add_argument("--segments", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10, help="at most this many epochs per grid job")
    p.add_argument("--json", default="experiments/bench/gpu-issue14.json")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    workers = os.cpu_count() or 1
    res: dict = {"machine": machine(), "device": a.device, "quick": a.quick}
    print(res["machine"], flush=True)

    def save() -> None:
        res["total_s"] = time.perf_counter() - t0
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2, default=str))

    from benchmarks import device_features, grid_e2e

    clips = 8 if a.quick else a.clips
    try:
        res["device_features"] = device_features.main(
            ["--clips", str(clips), "--device", a.device, "--batch", str(min(a.batch, clips)), "--workers", str(workers),
             "--rounds", "1" if a.quick else "3"])
    except Exception as err:  # noqa: BLE001 - keep going: the grid is the other half of the answer
        res["device_features"] = f"failed: {err!r}"
        print(res["device_features"], flush=True)
    save()

    if a.quick:
        size = ["--size", "cpu", "--cities", "1", "--locations", "1", "--segments", "5", "--epochs", "2",
                "--grid", "window=3", "mask=0,0.1", "seed=0"]
    else:
        size = ["--cities", str(a.cities), "--locations", str(a.locations), "--segments", str(a.segments),
                "--model", "vgg16", "--epochs", str(a.epochs)]
    left = a.budget - (time.perf_counter() - t0)
    # data + features take about a tenth of the rest; the report about 20 s
    grid_timeout = max(60.0, 0.85 * left - 30)
    res["grid_e2e"] = grid_e2e.main([*size, "--device", a.device, "--workers", str(workers),
                                     "--grid-timeout", str(grid_timeout)])
    save()
    print(f"\ngpu_issue14: {res['total_s']:.0f} s in all; results in {a.json}")
    return res


if __name__ == "__main__":
    main()
