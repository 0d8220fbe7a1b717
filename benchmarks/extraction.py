"""Spectrogram extraction: this project's cache builder against a reference-style sequential pipeline.

Clips: generated 10 s, 48 kHz, 24-bit stereo WAV files (TAU's format). Reference style, per file and in
one process: ``librosa.load`` (mono mix), the faithful constant-Q dB spectrogram (the package's transform),
scikit-learn's ``MinMaxScaler`` over each frame, and an 8-bit PNG written with matplotlib. This project:
:meth:`asc.data.cache.FeatureCache.build` (the same transform, a ``.npy`` per clip, written atomically), on one
core and on all cores, and with ``features.backend=torch`` (batched tensor ops). Warm-ups (numba's JIT, the worker
pool) are run first and not timed.

    python -m benchmarks.extraction [--clips 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import save, table


def write_clips(folder: Path, n: int, seconds: float = 10.0, sr: int = 48_000, seed: int = 0) -> list[Path]:
    """``n`` stereo 24-bit WAV files of coloured noise with a few tones (TAU's format)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    files = []
    for i in range(n):
        noise = np.cumsum(rng.standard_normal((t.size, 2)), axis=0)
        noise = noise - np.convolve(noise[:, 0], np.ones(64) / 64, mode="same")[:, None]
        tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(50, 5000, 4))[:, None]
        y = 0.3 * noise / np.abs(noise).max() + 0.05 * tones
        path = folder / f"clip-{i:03d}.wav"
        sf.write(path, y.astype(np.float32), sr, subtype="PCM_24")
        files.append(path)
    return files


def reference_style(path: Path, out: Path) -> None:
    """One file the way the reference pipeline did it, sequentially: librosa.load -> the same (faithful) constant-Q
    dB spectrogram -> MinMaxScaler -> PNG (matplotlib). The transform is the package's, so the comparison measures
    the pipeline (caching, parallelism, batching), not a cheaper transform."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.preprocessing import MinMaxScaler

    from asc.data.features import FeatureSpec, spectrogram_db

    y, sr = librosa.load(path, sr=None, mono=True)
    D = spectrogram_db(y, FeatureSpec(sample_rate=sr))
    image = MinMaxScaler(feature_range=(0, 255)).fit_transform(D).astype(np.uint8)[::-1]
    plt.imsave(out / f"{path.stem}.png", image, cmap="gray", vmin=0, vmax=255)


def main(argv: list[str] | None = None) -> dict:
    from threadpoolctl import threadpool_limits

    from asc.data.cache import FeatureCache
    from asc.data.features import FeatureSpec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="'all cores' (default: every core)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="asc-bench-extract-"))
    try:
        (tmp / "audio").mkdir()
        n_warm = 3 * args.workers  # enough that every worker of the pool gets some
        files = write_clips(tmp / "audio", args.clips + n_warm)
        warmups, files = files[:n_warm], files[n_warm:]
        names = [f.name for f in files]
        spec = FeatureSpec()
        png = tmp / "png"
        png.mkdir()

        # warm-ups: numba's JIT in this process, the worker pool (and its JIT) for the parallel build
        reference_style(warmups[0], png)
        FeatureCache(tmp / "warm1", spec).build(warmups[:1], [w.name for w in warmups[:1]], workers=1, progress=False)
        FeatureCache(tmp / "warmN", spec).build(warmups, [w.name for w in warmups], workers=args.workers, progress=False)

        def timed(fn) -> float:
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t

        with threadpool_limits(1):
            t_ref = timed(lambda: [reference_style(f, png) for f in files])
            t_one = timed(lambda: FeatureCache(tmp / "one", spec).build(files, names, workers=1, progress=False))
        t_all = timed(lambda: FeatureCache(tmp / "all", spec).build(files, names, workers=args.workers, progress=False))
        torch_spec = replace(spec, backend="torch")
        FeatureCache(tmp / "warmT", torch_spec).build(warmups, [w.name for w in warmups], workers=args.workers,
                                                       progress=False)
        t_torch = timed(lambda: FeatureCache(tmp / "torch", torch_spec).build(files, names, workers=args.workers,
                                                                                progress=False))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.clips
    res = {
        "clips": n,
        "workers": args.workers,
        "reference_s_per_clip": t_ref / n,
        "ours_1core_s_per_clip": t_one / n,
        "ours_all_s_per_clip": t_all / n,
        "ratio_1core": t_ref / t_one,
        "ratio_all": t_ref / t_all,
        "scaling": t_one / t_all,
        "ours_torch_s_per_clip": t_torch / n,
        "ratio_torch": t_ref / t_torch,
    }
    table(
        f"extraction: {n} clips of 10 s, 48 kHz, 24-bit stereo (measured)",
        [
            ("reference style, 1 core", f"{res['reference_s_per_clip']:.3f} s/clip"),
            ("asc FeatureCache, 1 core", f"{res['ours_1core_s_per_clip']:.3f} s/clip   {res['ratio_1core']:.2f}x reference"),
            (f"asc FeatureCache, {args.workers} cores", f"{res['ours_all_s_per_clip']:.3f} s/clip   {res['ratio_all']:.2f}x reference"),
            ("scaling 1 -> all cores", f"{res['scaling']:.2f}x on {args.workers} cores"),
            ("asc FeatureCache, backend=torch", f"{res['ours_torch_s_per_clip']:.3f} s/clip   {res['ratio_torch']:.2f}x reference"),
        ],
        f"target: >= 2x the reference on 2 cores; load average before the run {os.getloadavg()[0]:.1f}",
    )
    save({"extraction": res}, args.json)
    return res


if __name__ == "__main__":
    main()
