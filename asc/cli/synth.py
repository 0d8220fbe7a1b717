"""``asc synth ROOT``: a synthetic dataset in the TAU 2019 development layout (see :mod:`asc.data.synth`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asc.data.scenes import CITIES
from asc.data.synth import SynthConfig, generate


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc synth",
        description="Write a synthetic acoustic-scene dataset in the TAU 2019 development layout.",
    )
    p.add_argument("root", type=Path, help="output folder (created; left alone if it already holds meta.csv)")
    p.add_argument("--cities", type=int, default=4, help="number of cities, 1-10 (default: 4)")
    p.add_argument("--locations", type=int, default=3, help="recording locations per scene and city (default: 3)")
    p.add_argument("--segments", type=int, default=3, help="10 s segments per location (default: 3)")
    p.add_argument("--duration", type=float, default=10.0, help="clip length in seconds (default: 10)")
    p.add_argument("--sample-rate", type=int, default=48_000, help="Hz (default: 48000, as TAU)")
    p.add_argument("--channels", type=int, default=2, help="default: 2, as TAU")
    p.add_argument("--subtype", default="PCM_24", help="WAV subtype, e.g. PCM_16, PCM_24, FLOAT (default: PCM_24)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    a = p.parse_args(argv)
    if not 1 <= a.cities <= len(CITIES):
        p.error(f"--cities must be between 1 and {len(CITIES)}")
    cfg = SynthConfig(
        cities=CITIES[: a.cities], locations_per_city=a.locations, segments_per_location=a.segments,
        duration=a.duration, sample_rate=a.sample_rate, channels=a.channels, subtype=a.subtype, seed=a.seed,
    )
    generate(a.root, cfg, workers=a.workers)
    print(f"{cfg.n_clips} clips in {a.root}")
