"""``asc export``: a trained model as ONNX, a clip's 8-bit image in, class probabilities out (see
:mod:`asc.inference.export`).

    asc export -m runs:/0123abcd... --out scenes.onnx
    asc predict -m scenes.onnx recording.wav          # onnxruntime instead of torch, the same results
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from asc.inference.export import OnnxPredictor, export, latency
from asc.inference.predictor import ModelError
from asc.inference.sources import load_predictor


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="asc export",
        description="Write a trained model as ONNX: input uint8 clips [batch, height, frames] (the training clip "
                    "length), output class probabilities [batch, classes] (the mean over the model's evaluation "
                    "views, as validation and test score). The model's facts travel in the file's metadata.",
    )
    p.add_argument("-m", "--model", required=True, help="checkpoint path, runs:/<run_id>, or models:/<name>/<version>")
    p.add_argument("--out", type=Path, default=Path("model.onnx"), help="the ONNX file to write (default: model.onnx)")
    p.add_argument("--tracking-uri", help="MLflow store for runs:/ and models:/ (default: $MLFLOW_TRACKING_URI or "
                                          "sqlite:///mlflow.db)")
    p.add_argument("--no-latency", action="store_true", help="skip the CPU latency comparison with torch")
    a = p.parse_args(argv)
    try:
        predictor = load_predictor(a.model, a.tracking_uri)
        if isinstance(predictor, OnnxPredictor):
            raise ModelError(f"{a.model}: already an ONNX file")
        checked = export(predictor, a.out)
    except (ModelError, OSError) as err:
        print(f"asc export: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{a.out}: {checked['bytes'] / 2**20:.1f} MiB, {len(predictor.class_names)} classes, clips of "
          f"{predictor.clip_seconds:g} s ({predictor.spec.height} x {predictor.clip_frames}); onnxruntime vs torch: "
          f"max |difference| {checked['max_abs_diff']:.1e}")
    if not a.no_latency:
        torch.set_num_threads(1)
        onnx = OnnxPredictor(a.out)
        t_torch, t_onnx = latency(predictor), latency(onnx)
        print(f"CPU latency per clip, one thread: torch {1000 * t_torch:.1f} ms, onnxruntime {1000 * t_onnx:.1f} ms "
              f"({t_torch / t_onnx:.2f}x)")
