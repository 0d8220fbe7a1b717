"""``python -m benchmarks`` (``make bench``): every speed benchmark in one go, then the grid projection.

Includes the constant-Q images of ``features.backend=torch`` against librosa on the CPU (``benchmarks.device_features``).

    python -m benchmarks [--quick] [--json results.json] [--gpu-json experiments/bench/gpu-h100.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import allocator, augmentation, checked_reads, device_features, extraction, grid, head_epoch, train_step
from benchmarks.common import machine


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer clips, samples and rounds")
    p.add_argument("--gpu-json", default="experiments/bench/gpu-h100.json",
                   help="recorded benchmarks.gpu result to project the grid on that GPU too")
    p.add_argument("--json", help="write every result here")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    print(f"machine: {machine()}")
    q = args.quick
    res = {
        "allocator": allocator.main(["--seconds", "3" if q else "6"]),
        "extraction": extraction.main(["--clips", "8" if q else "16"]),
        "device_features": device_features.main(["--clips", "10" if q else "20", "--device", "cpu",
                                                 "--rounds", "2" if q else "3"]),
        "augmentation": augmentation.main(["--samples", "128" if q else "256", "--rounds", "3" if q else "5"]),
        "train_step": train_step.main(["--rounds", "2" if q else "3"]),
        "head_epoch": head_epoch.main(["--samples", "32" if q else "64"]),
        "checked_reads": checked_reads.main(["--entries", "100" if q else "400", "--rounds", "3" if q else "5"]),
    }
    known = {"train": res["train_step"]["cpu"]["bf16_cl_samples_per_s"], "head": res["head_epoch"]["cpu"]["cache_samples_per_s"]}
    res["grid"] = grid.main(["--gpu-json", args.gpu_json], cpu_rates=grid.measure_cpu(known=known))
    print(f"\nall benchmarks: {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), **res}, indent=2, default=str))


if __name__ == "__main__":
    main()
