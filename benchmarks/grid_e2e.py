"""The paper's grid end to end, from WAV files to the report, with the wall time of each stage (issue #14).

Stages, each the command a user types (run as a subprocess in a work folder, so every start-up cost counts):

0. data: ``asc synth`` writes a synthetic set in TAU's layout and format (10 s, 48 kHz, 24-bit stereo), or ``--data``
   names a real one (TAU itself); not counted in the total (it stands for the download);
1. features: ``asc extract ROOT --set backend=torch`` (decoding on every core, the constant-Q transform in batches on
   the GPU, else the CPU; ``--backend librosa`` for the faithful path on every core);
2. grid: ``asc train -m experiment=fast window=3,5,7 mask=0,0.1,0.2 seed=0,1,2`` -- the 27 jobs of the paper's grid
   with the frozen backbone's embedding cache, bf16 and channels-last (``conf/experiment/fast.yaml``), on the same
   features (``features.backend``), one job after another unless ``--n-jobs``;
3. report: ``asc report SWEEP_DIR``: the table next to the published one.

Full size (the default): TAU's 14,400 clips (10 cities x 4 locations x 36 segments per scene), frozen VGG16 -- with
random weights unless ``--pretrained`` (a machine without the internet has no ImageNet weights; the cost is the same),
the configs' epochs and early stopping. ``--size cpu``: the same stages scaled down for a CPU-only machine: 200 clips
(2 cities x 2 locations x 5 segments per scene: 10 per scene and city, so the paper split's cuts give exactly
60:20:20 as TAU's 144 give 86:29:29), a frozen small CNN with random weights instead of VGG16, 64 px inputs, at most
10 epochs -- printed with the run. Every setting can be given (``--cities``, ``--model``, ...).

    python -m benchmarks.grid_e2e                      # full size (GPU node; ~41 GB of generated audio)
    python -m benchmarks.grid_e2e --size cpu           # the scaled-down version (make bench-grid)
    python -m benchmarks.grid_e2e --data /big/TAU-urban-acoustic-scenes-2019-development --pretrained
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: ``--size`` presets: clips per scene = cities x locations x segments.
SIZES = {
    "full": dict(cities=10, locations=4, segments=36, model="vgg16", image_size=None, epochs=None),
    "cpu": dict(cities=2, locations=2, segments=5, model="small_cnn", image_size=64, epochs=10),
}
GRID = ["window=3,5,7", "mask=0,0.1,0.2", "seed=0,1,2"]


def run(cmd: list[str], cwd: Path, log: Path, env: dict[str, str], timeout: float | None = None) -> tuple[float, int]:
    """Run ``cmd``; returns ``(seconds, exit status)``. Output goes to ``log``. Past ``timeout`` seconds its process
    group (launcher workers included) gets SIGTERM, then SIGKILL 15 s later, and the status is 124."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = 124
    return time.perf_counter() - start, rc


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="preset (default: full, TAU's size)")
    p.add_argument("--data", type=Path, help="a dataset in TAU's layout (default: generate one)")
    p.add_argument("--cities", type=int)
    p.add_argument("--locations", type=int)
    p.add_argument("--segments", type=int)
    p.add_argument("--model", help="model group: vgg16 | efficientnet_lite0 | small_cnn (frozen, random weights)")
    p.add_argument("--image-size", type=int, help="network input size (default: the model's)")
    p.add_argument("--epochs", type=int, help="trainer.max_epochs (default: the config's, with early stopping)")
    p.add_argument("--pretrained", action="store_true", help="ImageNet weights (needs them on disk or the internet)")
    p.add_argument("--backend", choices=("torch", "librosa"), default="torch", help="features.backend")
    p.add_argument("--device", help="extraction device (default: cuda if available, else cpu)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="extraction processes")
    p.add_argument("--n-jobs", type=int, default=1, help="grid jobs at once (hydra/launcher=joblib when > 1)")
    p.add_argument("--grid-timeout", type=float, help="seconds: stop the grid there, report what finished")
    p.add_argument("--workdir", type=Path, help="where data, cache, runs go (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--grid", nargs="*", default=GRID, help=f"the sweep (default: {' '.join(GRID)}: 27 jobs)")
    p.add_argument("--extra", nargs="*", default=[], help="more overrides for asc train")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)
    preset = SIZES[a.size]
    cities, locations, segments = (a.cities or preset["cities"], a.locations or preset["locations"],
                                   a.segments or preset["segments"])
    model = a.model or preset["model"]
    image_size = a.image_size or preset["image_size"]
    epochs = a.epochs or preset["epochs"]
    work = Path(a.workdir or tempfile.mkdtemp(prefix="asc-grid-e2e-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    asc = [str(bin_dir / "asc")] if (bin_dir / "asc").exists() else [sys.executable, "-m", "asc"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ASC_SWEEP"))}
    env["PYTHONUNBUFFERED"] = "1"
    load = os.getloadavg()[0]
    times: dict[str, float] = {}
    res: dict = {"size": a.size, "workdir": str(work), "load_average_before": load}

    def stage(name: str, cmd: list[str], timeout: float | None = None) -> int:
        print(f"[{name}] {' '.join(cmd)}", flush=True)
        seconds, rc = run(cmd, work, work / f"{name}.log", env, timeout)
        times[name] = seconds
        print(f"[{name}] {seconds:.1f} s{'' if rc == 0 else f'  (exit status {rc})'}", flush=True)
        if rc not in (0, 124):
            print(tail(work / f"{name}.log"), file=sys.stderr)
        return rc

    try:
        if a.data:
            root = a.data.resolve()
        else:
            root = work / "data"
            if stage("data", [*asc, "synth", str(root), "--cities", str(cities), "--locations", str(locations),
                              "--segments", str(segments), "--workers", str(a.workers)]):
                raise SystemExit("generating the data failed")
        clips = sum(1 for _ in open(root / "meta.csv")) - 1
        features = [f"backend={a.backend}"]
        cmd = [*asc, "extract", str(root), "--cache", str(work / "cache"), "--workers", str(a.workers),
               "--no-progress", "--set", *features]
        if a.device:
            cmd += ["--device", a.device]
        if stage("features", cmd):
            raise SystemExit("feature extraction failed")
        sweep = work / "multirun" / "grid"
        train = [*asc, "train", "-m", "experiment=fast", *a.grid, f"model={model}", "model.freeze=true",
                 f"model.pretrained={str(a.pretrained).lower()}", f"features.backend={a.backend}", "data=tau",
                 f"data.root={root}", f"paths.cache={work / 'cache'}", f"paths.outputs={work / 'outputs'}",
                 f"hydra.sweep.dir={sweep}", f"logger.tracking_uri=sqlite:///{work / 'mlflow.db'}",
                 f"logger.artifacts={work / 'mlartifacts'}", "logger.experiment=grid-e2e", "logger.log_model=false",
                 "progress=false"]
        if image_size:
            train.append(f"model.image_size={image_size}")
        if epochs:
            train.append(f"trainer.max_epochs={epochs}")
        if a.n_jobs > 1:
            train += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={a.n_jobs}"]
        train += a.extra
        rc = stage("grid", train, timeout=a.grid_timeout)
        res["grid_exit_status"] = rc
        if stage("report", [*asc, "report", str(sweep)]):
            print("the report failed", file=sys.stderr)
        report = sweep / "report" / "report.md"
        res["report"] = report.read_text() if report.exists() else None
        jobs = re.search(r"Jobs: (\d+) expected, (\d+) finished", res["report"] or "")
        res["jobs_expected"], res["jobs_finished"] = (int(jobs[1]), int(jobs[2])) if jobs else (None, None)
        best = re.search(r"Best cell by mean validation accuracy: (.*)", res["report"] or "")
        res["best_cell"] = best[1] if best else None
    finally:
        total = sum(v for k, v in times.items() if k != "data")
        res.update({"clips": locals().get("clips"), "model": model, "image_size": image_size, "epochs": epochs,
                    "backend": a.backend, "pretrained": a.pretrained, "n_jobs": a.n_jobs, "seconds": times,
                    "total_s": total, "load_average_after": os.getloadavg()[0]})
        rows = [(k if k != "data" else "data (generated; not in the total)", f"{v:.1f} s") for k, v in times.items()]
        rows = [(label, f"{value}   {100 * times[k] / total:.0f} % of the total" if k != "data" and total else value)
                for (label, value), k in zip(rows, times, strict=True)]
        rows.append(("total: features + grid + report", f"{total:.1f} s = {total / 60:.2f} min"))
        if res.get("jobs_finished") is not None:
            rows.append(("grid jobs finished", f"{res['jobs_finished']} of {res['jobs_expected']}"
                                              f"{'  (stopped at --grid-timeout)' if res.get('grid_exit_status') == 124 else ''}"))
        if res.get("best_cell"):
            rows.append(("best cell", res["best_cell"]))
        from benchmarks.common import machine, table

        table(f"the paper's grid end to end ({a.size}): {res['clips']} clips, {model} "
              f"({'ImageNet' if a.pretrained else 'random'} weights, frozen), {image_size or 'default'} px, "
              f"{epochs or 'config'} epochs, features.backend={a.backend} (measured)", rows,
              f"{res.get('jobs_expected') or 27} jobs, experiment=fast; load average {load:.1f} before, {res['load_average_after']:.1f} after; "
              f"work folder {work}")
        res["machine"] = machine()
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(res, indent=2, default=str))
        if not a.keep and not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return res


if __name__ == "__main__":
    main()
