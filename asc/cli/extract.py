"""``asc extract ROOT``: every clip's spectrogram image into the feature cache (see :mod:`asc.data.cache`)."""

from __future__ import annotations

import argparse
import logging
import time

from joblib import cpu_count

from asc.cli.console import fail
from asc.config import feature_spec
from asc.data.audio import AudioError
from asc.data.cache import BATCH_SIZE, FeatureCache
from asc.data.dataset import DatasetError, add_dataset_arguments, read_folder, read_tau, safe_path
from asc.data.features import torch_transform
from asc.files import DiskFull


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc extract",
        description="Compute the spectrogram image of every clip of a dataset into the feature cache, on all cores, "
                    "with progress and ETA. Resumable: rerun after a kill and only missing entries are computed. "
                    "Training finds the same entries (same features settings, same --cache as paths.cache).",
    )
    add_dataset_arguments(p)
    p.add_argument("--features", default="cqt", help="cqt (the paper's), mel, or a YAML file (default: cqt)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="feature settings to override, e.g. --set sample_rate=32000, or --set backend=torch: the same "
                        "images computed in batches on the GPU (or the CPU), as features.backend=torch in training")
    p.add_argument("--cache", default="cache", help="cache folder, as paths.cache in training (default: cache)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes (default: every usable core); with backend=torch: the decoding processes")
    p.add_argument("--device", default=None,
                   help="backend=torch: where the batches are transformed, e.g. cuda, cuda:1, cpu (default: cuda if "
                        "available, else cpu)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"backend=torch: clips per batch (default: {BATCH_SIZE})")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="a bad audio file stops the run (raise, default) or is skipped with a warning (skip)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    workers = a.workers or cpu_count()
    try:
        spec = feature_spec(a.features, a.set)
        df = read_tau(a.root) if a.kind == "tau" else read_folder(a.root, a.labels_csv)
        files = [safe_path(a.root, name) for name in df["filename"]]
        cache = FeatureCache(a.cache, spec)
        start = time.perf_counter()
        report = cache.build(files, list(df["filename"]), workers, a.on_error, progress=not a.no_progress,
                             device=a.device, batch_size=a.batch_size)
    except (AudioError, DatasetError, ValueError, DiskFull) as err:
        fail("extract", err)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in cache.dir.glob("*.npy"))
    rate = report.computed / seconds if report.computed else 0.0
    print(f"{cache.dir}: {report.computed} computed, {report.cached} already cached, {len(report.skipped)} skipped; "
          f"{size / 2**20:.1f} MiB in the cache")
    if report.computed and spec.backend == "torch":
        print(f"{seconds:.1f} s, {rate:.2f} clips/s: decoded on {min(workers, report.computed)} worker(s), transformed "
              f"on {torch_transform(spec, a.device).device} in batches of up to {a.batch_size}")
    elif report.computed:
        print(f"{seconds:.1f} s, {rate:.2f} clips/s on {min(workers, report.computed)} worker(s) "
              f"({rate / min(workers, report.computed):.3f} clips/s per worker)")
    for _, error in report.skipped:
        print(f"skipped {error}")
