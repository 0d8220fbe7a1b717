"""Feature extraction throughput on clips in TAU's real format (10 s, 48 kHz, 24 bit, stereo), and what it
projects for the full development set (14400 clips).

    .venv/bin/python benchmarks/extract_throughput.py [--clips 32] [--features cqt] [--workers N]

Prints clips/s on one worker (per core), on all workers, the parallel efficiency (ratio), the cache entry
size, and the projected time and disk size for 14400 clips.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

FULL_SET = 14_400


def main() -> None:
    from joblib import cpu_count

    from asc.config import feature_spec
    from asc.data.cache import FeatureCache
    from asc.data.synth import SynthConfig, clip_names, generate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=32, help="clips to extract with all workers (default: 32)")
    p.add_argument("--single", type=int, default=6, help="clips to extract with one worker (default: 6)")
    p.add_argument("--features", default="cqt")
    p.add_argument("--workers", type=int, default=None, help="default: every usable core")
    p.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    a = p.parse_args()
    workers = a.workers or cpu_count()
    warnings.filterwarnings("ignore", message="n_fft=.*is too large")
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        tmp = Path(tmp)
        per_location = 2
        cfg = SynthConfig(cities=("lyon",), locations_per_city=-(-(max(a.clips, a.single) + 3 * workers) // (10 * per_location)),
                          segments_per_location=per_location)  # TAU's format: 10 s, 48 kHz, PCM_24, stereo
        t = time.perf_counter()
        root = generate(tmp / "tau", cfg, workers=workers, progress=False)
        print(f"generated {cfg.n_clips} clips of {cfg.duration:g} s, {cfg.sample_rate} Hz, {cfg.subtype}, "
              f"{cfg.channels} ch in {time.perf_counter() - t:.1f} s")
        files = [root / name for name, *_ in clip_names(cfg)]
        try:
            spec = feature_spec(a.features)
        except ImportError:  # no omegaconf (a bare GPU image): the cqt defaults are conf/features/cqt.yaml's
            from asc.data.features import FeatureSpec

            spec = FeatureSpec(kind=a.features)

        def timed(cache_dir: Path, chosen: list[Path], n_workers: int) -> float:
            cache = FeatureCache(cache_dir, spec)
            # warm-up: start the workers, import librosa and compile its JIT in each (a few clips each)
            warm, rest = chosen[: 3 * n_workers], chosen[3 * n_workers :]
            cache.build(warm, [f.name for f in warm], workers=n_workers, progress=False)
            t0 = time.perf_counter()
            report = cache.build(rest, [f.name for f in rest], workers=n_workers, progress=False)
            assert report.computed == len(rest)
            return report.computed / (time.perf_counter() - t0)

        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # one core: no BLAS/OpenMP threads either (loky gives its workers the same)
            one = timed(tmp / "c1", files[: a.single + 3], 1)
        many = timed(tmp / "cN", files[: a.clips + 3 * workers], workers)
        entry = next((tmp / "cN").glob(f"{spec.kind}-*/*.npy"))
        size = entry.stat().st_size
    print(f"features={a.features}: one worker {one:.3f} clips/s (per core); {workers} workers {many:.2f} clips/s; "
          f"speed-up {many / one:.2f}x = {many / one / workers:.0%} parallel efficiency")
    print(f"cache entry {size / 1024:.1f} KiB; full set ({FULL_SET} clips): {size * FULL_SET / 1e9:.2f} GB on disk "
          f"and in memory, {FULL_SET / many / 3600:.2f} h on {workers} workers "
          f"({FULL_SET / one / 3600:.1f} core-hours)")


if __name__ == "__main__":
    main()
