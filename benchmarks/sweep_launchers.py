"""Wall time of a small synthetic sweep, run one job after another and under the joblib launcher.

    python benchmarks/sweep_launchers.py                 # 8 jobs (window=1,2 mask=0,0.2 seed=0,1), 2 processes
    python benchmarks/sweep_launchers.py --n-jobs 4 --epochs 5

Runs `python train.py -m` exactly as a user would, on a small synthetic set in a temporary folder (generated and
its features cached by an untimed warm-up run first, so both sweeps start from the same state), with
``resume=false`` so that the second sweep trains every job again. Prints both wall times and their ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

EXPERIMENT = """# @package _global_
defaults:
  - demo_small_cnn
data:
  synthetic: {{cities: [lyon, milan], locations_per_city: 3, segments_per_location: 2, duration: 4.0, sample_rate: 32000}}
features: {{sample_rate: 32000, n_bins: 240}}
model: {{image_size: {size}}}
trainer: {{max_epochs: {epochs}}}
window: 2.0

"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", nargs="+", default=["window=1,2", "mask=0,0.2", "seed=0,1"])
    p.add_argument("--n-jobs", type=int, default=2, help="joblib processes")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="asc-sweep-bench-") as tmp:
        root = Path(tmp)
        (root / "conf" / "experiment").mkdir(parents=True)
        (root / "conf" / "experiment" / "bench.yaml").write_text(EXPERIMENT.format(size=args.image_size, epochs=args.epochs))
        common = [
            "experiment=bench", f"hydra.searchpath=[file://{root / 'conf'}]", "progress=false",
            f"paths.data={root / 'data'}", f"paths.cache={root / 'cache'}", f"paths.outputs={root / 'outputs'}",
            f"logger.tracking_uri=sqlite:///{root / 'mlflow.db'}", f"logger.artifacts={root / 'mlartifacts'}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "ASC_SWEEP"))}

        def train(*extra: str, multirun: bool = True) -> float:
            t = time.perf_counter()
            flags = ["-m"] if multirun else []
            proc = subprocess.run([sys.executable, "train.py", *flags, *common, *extra], cwd=REPO, env=env,
                                  capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"train.py {' '.join(extra)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
            return time.perf_counter() - t

        warm = train("trainer.max_epochs=1", multirun=False)
        print(f"warm-up (data + features + one run, untimed below): {warm:.0f} s")
        jobs = 1
        for item in args.grid:
            jobs *= len(item.split("=", 1)[1].split(","))
        serial = train(*args.grid, "resume=false", f"hydra.sweep.dir={root / 'multirun' / 'serial'}")
        print(f"serial:           {jobs} jobs in {serial:.0f} s ({serial / jobs:.1f} s per job)")
        parallel = train(*args.grid, "resume=false", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}",
                         f"hydra.sweep.dir={root / 'multirun' / 'joblib'}")
        print(f"joblib n_jobs={args.n_jobs}: {jobs} jobs in {parallel:.0f} s ({parallel / jobs:.1f} s per job)")
        print(f"speed-up {serial / parallel:.2f}x on {os.cpu_count()} cores (load average at the start "
              f"{load[0]:.1f}, at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
