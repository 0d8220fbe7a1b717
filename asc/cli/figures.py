"""``asc figures FILE``: the paper's figures for any clip (see :mod:`asc.data.figures`)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from asc.config import feature_spec
from asc.data.audio import AudioError
from asc.data.figures import DPI, make_figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="asc figures", description="Write the paper's figures for an audio file as PNGs.")
    p.add_argument("file", type=Path, help="audio file (WAV/FLAC/OGG/MP3, any rate; resampled to the features' rate)")
    p.add_argument("--out", type=Path, default=Path("outputs/figures"), help="output folder (default: outputs/figures/)")
    p.add_argument("--features", default="cqt", help="network input features: conf/features NAME or YAML (default: cqt)")
    p.add_argument("--window", type=float, default=5.0, help="time window of the training sample, s (default: 5)")
    p.add_argument("--mask", type=float, default=0.1, help="largest masked band, fraction of the height (default: 0.1)")
    p.add_argument("--size", type=int, default=224, help="network input side, px (default: 224)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training sample's window and mask (default: 0)")
    p.add_argument("--offset", type=float, default=0.0, help="start at this many seconds into the file")
    p.add_argument("--duration", type=float, help="use only this many seconds (default: to the end)")
    p.add_argument("--dpi", type=int, default=DPI, help=f"PNG resolution (default: {DPI})")
    p.add_argument("--wav", action="store_true", help="also write the emphasised audio as <stem>-emphasis.wav")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)  # librosa's CQT, short clips
    try:
        spec = feature_spec(a.features)
        if not 0 <= a.mask < 1 or a.window <= 0 or a.size < 8:
            raise ValueError("--mask must be in [0, 1), --window positive and --size at least 8")
        files = make_figures(a.file, a.out, spec, a.window, a.mask, a.size, a.seed, a.wav, a.offset, a.duration, a.dpi)
    except (AudioError, ValueError) as err:
        print(f"asc figures: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    for name, path in files.items():
        print(f"{name:<13} {path}")
