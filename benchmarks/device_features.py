"""Constant-Q images on the device (``features.backend=torch``) against the faithful librosa path: how far apart, how fast.

Clips: synthetic scenes in TAU's format (10 s, 48 kHz, 24-bit stereo WAV; ``asc.data.synth``, one clip per scene
and segment). Both paths decode the WAV files on the CPU (``asc.data.features.audio_from_file``) -- every time is
WAV file to 8-bit image.

- **difference**: the torch images against the librosa ones, in grey levels (mean, largest, share of pixels moved);
- **one thread each**: librosa's ``image_from_file`` clip by clip against the torch path (decode and emphasis clip
  by clip, then the transform in batches of ``--batch``), both limited to one thread -- the per-core ratio; the
  torch time is also split into decoding and transform;
- **cache builds**: ``FeatureCache.build`` with every core, librosa (``--workers`` processes) against torch
  (``--workers`` decoding processes, transform on ``--device``), entries written -- what ``asc extract`` does.

    python -m benchmarks.device_features [--clips 20] [--device cpu|cuda] [--batch 32] [--workers N] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import interleaved, save, sync, table


def tau_clips(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """At least ``n`` synthetic scene clips in TAU's format (10 per segment: one per scene); returns the first ``n``."""
    from asc.data.synth import SynthConfig, generate

    cfg = SynthConfig(cities=("lyon",), locations_per_city=1, segments_per_location=max(1, math.ceil(n / 10)), seed=seed)
    generate(folder, cfg, progress=False)
    return sorted((folder / "audio").glob("*.wav"))[:n]


def decode(files: list[Path], spec) -> list[np.ndarray]:
    """Each file as the torch backend's decoding workers hand it over: mono float32, emphasised."""
    from asc.data.features import audio_from_file, emphasis

    return [emphasis(audio_from_file(f, spec), spec.sample_rate, spec.emphasis_alpha) for f in files]


def torch_images(audio: list[np.ndarray], transform, batch: int) -> np.ndarray:
    """Images ``[N, H, W]`` uint8 of equally long clips, in batches of ``batch`` on the transform's device."""
    out = []
    for k in range(0, len(audio), batch):
        images, finite = transform(torch.from_numpy(np.stack(audio[k : k + batch])))
        assert bool(finite.all())
        out.append(images.cpu().numpy())
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> dict:
    from threadpoolctl import threadpool_limits

    from asc.data.cache import FeatureCache
    from asc.data.features import FeatureSpec, image_from_file, torch_transform

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--device", default=None, help="torch backend's device (default: cuda if available, else cpu)")
    p.add_argument("--batch", type=int, default=32, help="clips per batch of the torch transform")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes of the cache builds")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-build", action="store_true", help="skip the cache builds on every core")
    p.add_argument("--data", type=Path, help="a folder of generated clips to reuse (created if missing)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="asc-bench-devfeat-"))
    try:
        files = tau_clips(args.data or tmp / "clips", args.clips)
        n = len(files)
        spec = FeatureSpec()
        tspec = dataclasses.replace(spec, backend="torch")
        transform = torch_transform(tspec, device)
        names = [f.name for f in files]

        # difference (and warm-ups: numba's JIT, the transform's first call)
        faithful = np.stack([image_from_file(f, spec) for f in files])
        ours = torch_images(decode(files, tspec), transform, args.batch)
        d = np.abs(ours.astype(int) - faithful.astype(int))
        diff = {"mean_levels": float(d.mean()), "max_levels": int(d.max()), "share_moved": float((d > 0).mean()),
                "per_clip_mean_max": float(d.mean(axis=(1, 2)).max()), "clips": n, "shape": list(ours.shape[1:])}

        # one thread each: WAV file to image
        threads = torch.get_num_threads()
        audio: list[np.ndarray] = []

        def decode_all() -> None:
            audio[:] = decode(files, tspec)

        with threadpool_limits(1):
            torch.set_num_threads(1 if device == "cpu" else threads)
            try:
                t = interleaved({
                    "librosa": lambda: [image_from_file(f, spec) for f in files],
                    "torch": lambda: torch_images(decode(files, tspec), transform, args.batch),
                    "decode": decode_all,
                    "transform": lambda: torch_images(audio, transform, args.batch),
                }, rounds=args.rounds, warmup=0, device=device)
            finally:
                torch.set_num_threads(threads)
        one = {k: v / n for k, v in t.items()}
        one["ratio"] = t["librosa"] / t["torch"]
        one["transform_ratio"] = (t["librosa"] - t["decode"]) / t["transform"]

        res = {"device": device, "batch": args.batch, "load_average_before": load, "difference": diff,
               "one_thread_s_per_clip": one}

        # cache builds on every core
        if not args.no_build:
            def build(s, name: str) -> float:
                folder = tmp / f"cache-{name}"
                shutil.rmtree(folder, ignore_errors=True)
                sync(device)
                start = time.perf_counter()
                FeatureCache(folder, s).build(files, names, workers=args.workers, progress=False, device=device,
                                              batch_size=args.batch)
                sync(device)
                return time.perf_counter() - start

            build(spec, "warm"), build(tspec, "warm")  # worker pools, JIT in the workers
            times: dict[str, list[float]] = {"librosa": [], "torch": []}
            for _ in range(args.rounds):
                times["librosa"].append(build(spec, "librosa"))
                times["torch"].append(build(tspec, "torch"))
            med = {k: float(np.median(v)) for k, v in times.items()}
            res["build"] = {"workers": args.workers, "librosa_clips_per_s": n / med["librosa"],
                            "torch_clips_per_s": n / med["torch"], "ratio": med["librosa"] / med["torch"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [
        ("difference torch - librosa", f"mean {diff['mean_levels']:.5f} grey levels, max {diff['max_levels']}, "
                                       f"{diff['share_moved']:.4%} of the pixels moved (target: mean <= 0.5)"),
        ("librosa, 1 thread", f"{one['librosa'] * 1e3:.0f} ms/clip (WAV to image)"),
        (f"torch on {device}, 1 thread", f"{one['torch'] * 1e3:.0f} ms/clip   {one['ratio']:.2f}x librosa"),
        ("  of which decoding + emphasis", f"{one['decode'] * 1e3:.0f} ms/clip (CPU, the same for both paths)"),
        ("  of which the transform", f"{one['transform'] * 1e3:.1f} ms/clip in batches of {args.batch}   "
                                     f"{one['transform_ratio']:.1f}x librosa's transform"),
    ]
    if "build" in res:
        b = res["build"]
        rows += [(f"cache build, {b['workers']} workers, librosa", f"{b['librosa_clips_per_s']:.1f} clips/s"),
                 (f"cache build, {b['workers']} decoders, torch on {device}",
                  f"{b['torch_clips_per_s']:.1f} clips/s   {b['ratio']:.2f}x librosa")]
    table(f"constant-Q images, torch backend vs librosa: {n} TAU-format clips (measured)", rows,
          f"load average before the run {load:.1f}; medians of {args.rounds} alternating rounds")
    save({"device_features": res}, args.json)
    return res


if __name__ == "__main__":
    main()
