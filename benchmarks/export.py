"""ONNX export: onnxruntime against torch on the CPU, per 10 s clip of the paper's setup (5 s window, reference crop,
the centre view), one thread, batch 1 -- and the largest difference of their probabilities.

    python -m benchmarks.export [--backbones small_cnn efficientnet_lite0 vgg16] [--rounds 20]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from asc.data.augment import ViewSpec
from asc.data.features import FeatureSpec
from asc.inference.export import OnnxPredictor, export, latency
from asc.inference.predictor import Predictor
from asc.model.module import SceneClassifier
from benchmarks.common import machine, save, table

SIZES = {"small_cnn": 128, "efficientnet_lite0": 224, "vgg16": 224}


def measure(backbone: str, rounds: int) -> dict[str, float]:
    spec = FeatureSpec()
    views = ViewSpec.for_clip(spec.frames(10.0), 5.0, spec.hop_length / spec.sample_rate, crop="reference",
                              band="reference", size=SIZES[backbone])
    model = dict(backbone=backbone, pretrained=backbone == "efficientnet_lite0", freeze=backbone != "small_cnn",
                 hidden=[512])  # VGG16 with random weights: the same cost as ImageNet's
    torch.manual_seed(0)
    module = SceneClassifier([f"c{i}" for i in range(10)], model, views=asdict(views), features=asdict(spec),
                             clip=dict(frames=spec.frames(10.0), seconds=10.0, pad="none"), window=5.0).eval()
    predictor = Predictor(module, spec, source=backbone)
    with tempfile.TemporaryDirectory() as tmp:
        checked = export(predictor, Path(tmp) / "m.onnx")
        onnx = OnnxPredictor(Path(tmp) / "m.onnx")
        torch.set_num_threads(1)
        t_torch, t_onnx = latency(predictor, rounds), latency(onnx, rounds)
    return {"torch_ms": 1000 * t_torch, "onnx_ms": 1000 * t_onnx, "ratio": t_torch / t_onnx,
            "max_abs_diff": checked["max_abs_diff"], "mib": checked["bytes"] / 2**20}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="*", default=list(SIZES))
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--json")
    a = p.parse_args(argv)
    res = {b: measure(b, a.rounds) for b in a.backbones}
    m = machine()
    table(f"ONNX export, CPU latency per 10 s clip, one thread ({m['cpu']}, load average {m['load_average']:.1f})",
          [(b, f"torch {r['torch_ms']:.1f} ms, onnxruntime {r['onnx_ms']:.1f} ms ({r['ratio']:.2f}x), "
               f"max |diff| {r['max_abs_diff']:.1e}, {r['mib']:.1f} MiB") for b, r in res.items()])
    save({"export": res}, a.json)
    return res


if __name__ == "__main__":
    main()
