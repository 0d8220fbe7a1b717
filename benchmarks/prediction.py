"""Prediction latency per 10 s of 48 kHz audio, and the stream mode's real-time factor, per backbone.

    .venv/bin/python benchmarks/prediction.py [--rounds 5] [--device cpu] [--threads N]

Untrained weights (``pretrained=false``): the numbers are the cost of the computation, not of the accuracy.
Prints medians over ``--rounds`` and the ratios that matter (features vs network; stream compute vs hop).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asc.data.augment import ViewSpec
from asc.data.features import FeatureSpec, image_from_audio
from asc.model.module import SceneClassifier
from asc.inference.predictor import Predictor
from asc.inference.stream import stream

MODELS = {
    "small_cnn": dict(model=dict(backbone="small_cnn", pretrained=False, freeze=False, channels=[16, 32, 64, 128],
                                 hidden=[64], dropout=0.3), size=128),
    "vgg16": dict(model=dict(backbone="vgg16", pretrained=False, freeze=True, hidden=[512], dropout=0.5), size=224),
}


def median_time(fn, rounds: int) -> float:
    fn()  # warm-up (librosa's filter cache, torch's kernels)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_predictor(name: str, spec: FeatureSpec, window: float, device: str, folder: Path) -> Predictor:
    views = ViewSpec.for_clip(spec.frames(10.0), window, spec.hop_length / spec.sample_rate, crop="reference",
                              band="reference", size=MODELS[name]["size"])
    module = SceneClassifier(class_names=[f"c{i}" for i in range(10)], model=MODELS[name]["model"], views=asdict(views),
                             clip=dict(frames=spec.frames(10.0), seconds=10.0, pad="none"), features=asdict(spec),
                             window=window)
    path = folder / f"{name}.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return Predictor.from_checkpoint(path, device=device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--window", type=float, default=5.0)
    p.add_argument("--stream-seconds", type=float, default=30.0)
    p.add_argument("--models", default="small_cnn,vgg16")
    a = p.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    if a.threads:
        torch.set_num_threads(a.threads)
    spec = FeatureSpec()
    sr = spec.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(10 * sr) / sr
    y = (0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * 60 * t)).astype(np.float32)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {a.device}, load average {os.getloadavg()[0]:.1f}")
    print(f"audio: 10 s at {sr} Hz; window {a.window:g} s; median of {a.rounds} rounds\n")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wav = folder / "clip.wav"
        sf.write(wav, np.stack([y, y], 1), sr, subtype="PCM_24")
        long = folder / "long.wav"
        sf.write(long, np.tile(y, 6), sr, subtype="PCM_16")  # 60 s
        t_read_feat = median_time(lambda: image_from_audio(y, spec), a.rounds)
        print(f"features (constant-Q image of 10 s): {t_read_feat * 1e3:8.1f} ms")
        image = image_from_audio(y, spec)
        pcm = (np.tile(y, int(np.ceil(a.stream_seconds / 10)))[: int(a.stream_seconds * sr)] * 32767).astype("<i2")
        for name in a.models.split(","):
            pred = make_predictor(name, spec, a.window, a.device, folder)
            t_net = median_time(lambda: pred.clip_probs(image, [0]), a.rounds)
            t_clip = median_time(lambda: pred.predict_file(wav), a.rounds)
            t_long = median_time(lambda: pred.predict_file(long, hop=a.window / 2), max(1, a.rounds // 2)) / 6
            n_long = len(pred.predict_file(long, hop=a.window / 2).starts)
            report = stream(pred, io.BytesIO(pcm.tobytes()), sr, 1, "int16", hop=a.window / 2, smooth=4)
            print(f"\n{name} (input {pred.views.size} px):")
            print(f"  network, one clip (its centre view):     {t_net * 1e3:8.1f} ms")
            print(f"  10 s clip, file to probabilities:        {t_clip * 1e3:8.1f} ms  "
                  f"(= {t_clip / 10 * 1e3:.1f} ms per s of audio; network {t_net / t_clip:.0%} of it)")
            print(f"  60 s recording, per 10 s of audio:       {t_long * 1e3:8.1f} ms  ({n_long} clips, hop {a.window / 2:g} s)")
            print(f"  stream: {len(report.decisions)} decisions over {report.seconds:.0f} s, "
                  f"{report.compute / len(report.decisions) * 1e3:.1f} ms each every {report.hop:.2f} s: "
                  f"real-time factor {report.real_time_factor:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
