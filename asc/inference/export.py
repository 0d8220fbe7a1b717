"""The trained classifier as ONNX (``asc export``): a clip's 8-bit image in, class probabilities out.

The exported graph is the whole evaluation path of one clip, so an ONNX runtime anywhere gives what validation
and test scored: ``uint8 [B, H, W]`` (clips of the training length ``W``, any batch ``B``) -> the model's
evaluation views -> normalisation -> frozen backbone and head -> softmax -> the mean over the views, ``float32
[B, classes]``. The views are fixed matrix products (:class:`ClipViews`): the reference crop's PIL resampling
passes as integer-valued float64 products with PIL's rounding (bit-exact: the same pixels as
:mod:`asc.data.augment`), the exact crop's bicubic resize as torch's own matrix. The model's facts (classes,
feature settings, views, clip length) travel in the file's metadata (``asc.model``, JSON), so ``asc predict -m
model.onnx`` needs nothing else (:class:`OnnxPredictor`).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from asc.data import augment
from asc.data.augment import PRECISION_BITS, ViewSpec
from asc.data.features import FEATURE_VERSION, FeatureSpec
from asc.inference.predictor import ModelError, Predictor
from asc.model.module import SceneClassifier

#: The metadata key that holds the model's facts.
META_KEY = "asc.model"
INPUT, OUTPUT = "clips", "probabilities"


def _dense(first: torch.Tensor, weights: torch.Tensor, n_in: int) -> torch.Tensor:
    """A PIL pass's coefficients (one table: ``first [1, out]``, ``weights [1, out, K]``) as a matrix ``[out, in]``."""
    out, K = weights.shape[1:]
    m = torch.zeros(out, n_in, dtype=torch.float64)
    cols = (first[0].view(-1, 1) + torch.arange(K)).clamp(max=n_in - 1)
    m.scatter_add_(1, cols.cpu(), weights[0].to(torch.float64).cpu())  # taps past the edge have weight 0
    return m


def _pil_round(acc: torch.Tensor) -> torch.Tensor:
    """PIL's ``clip8((2^21 + acc) >> 22)`` on integer-valued float64."""
    return torch.floor((acc + float(1 << (PRECISION_BITS - 1))) / float(1 << PRECISION_BITS)).clamp(0, 255)


class ClipViews(nn.Module):
    """The evaluation views of clips ``[B, H, W]`` as fixed matrix products: ``[B, n, size, size]`` (0..255), the
    same numbers as :meth:`asc.data.augment.ViewSpec.eval` before its normalisation."""

    def __init__(self, views: ViewSpec, height: int, frames: int) -> None:
        super().__init__()
        self.reference = views.crop == "reference"
        starts = views.eval_starts(height, frames)
        self.n = starts.numel()
        if self.reference:  # PIL: resize the clip's columns, cut each square's columns, then its rows (8 bit between)
            resized, size = views.resized, views.size
            resize = _dense(*augment._pil_table(frames, resized, "cpu"), frames) if resized != frames else None
            left, top, cw, ch = augment.fit_boxes(resized, height, starts.to(torch.float64))
            crops = [_dense(*augment.pil_coefficients(resized, size, left[i:i + 1], left[i:i + 1] + cw, cw + 1), resized)
                     for i in range(self.n)]
            rows = _dense(*augment.pil_coefficients(height, size, top[:1], top[:1] + ch, ch + 1), height)
            self.register_buffer("resize", resize if resize is not None else torch.eye(frames, dtype=torch.float64))
            self.register_buffer("crops", torch.stack(crops))  # [n, size, resized]
            self.register_buffer("rows", rows)  # [size, height]
        else:  # torch's bicubic resize of each window: rows and columns as matrices, no rounding
            width, size = views.window_frames, views.size
            self.starts = [int(s) for s in starts]
            self.width = width
            self.register_buffer("rows", augment._bicubic_matrix(height, size, "cpu").clone())  # [size, height]
            self.register_buffer("cols", augment._bicubic_matrix(width, size, "cpu").clone())  # [size, width]

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if self.reference:
            x = clips.to(torch.float64)  # [B, H, W], whole numbers 0..255
            x = _pil_round(torch.matmul(x, self.resize.T))  # [B, H, resized]
            x = _pil_round(torch.matmul(x.unsqueeze(1), self.crops.transpose(1, 2)))  # [B, n, H, size]
            x = _pil_round(torch.matmul(self.rows, x))  # [B, n, size, size]
            return x.to(torch.float32)
        x = clips.to(torch.float32)
        views = [torch.matmul(self.rows, torch.matmul(x[:, :, s : s + self.width], self.cols.T)) for s in self.starts]
        return torch.stack(views, 1).clamp(0, 255)


class ExportableClassifier(nn.Module):
    """``uint8 [B, H, W]`` clips -> class probabilities ``[B, C]``: views, normalisation, network, mean over views."""

    def __init__(self, module: SceneClassifier, height: int) -> None:
        super().__init__()
        frames = int(module.hparams.clip["frames"])
        self.views = ClipViews(module.views, height, frames)
        mean, std = module.net.norm or (augment.IMAGENET_MEAN, augment.IMAGENET_STD)
        bias, scale = augment._affine("cpu", tuple(mean), tuple(std))
        self.register_buffer("bias", bias.clone())
        self.register_buffer("scale", scale.clone())
        self.net = module.net

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        views = self.views(clips)  # [B, n, S, S]
        B, n, S, _ = views.shape
        x = views.reshape(B * n, 1, S, S) * self.scale + self.bias  # [B n, 3, S, S], as augment.to_network
        probs = torch.softmax(self.net(x).float(), -1)
        return probs.view(B, n, -1).mean(1)


def model_facts(predictor: Predictor) -> dict[str, Any]:
    """What a file needs to say about the model: classes, features, views, clip, window."""
    return {"class_names": predictor.class_names, "features": asdict(predictor.spec), "feature_version": FEATURE_VERSION,
            "views": asdict(predictor.views), "clip": {"frames": predictor.clip_frames, "seconds": predictor.clip_seconds,
                                                        "pad": predictor.pad}, "window": predictor.window,
            "source": predictor.source}


def export(predictor: Predictor, path: str | Path, batch: int = 2) -> dict[str, float]:
    """Write ``predictor``'s model as ONNX to ``path`` (dynamic batch) and check it against torch on random clips;
    returns ``{"max_abs_diff": ..., "bytes": ...}``."""
    path = Path(path)
    module = predictor.module.cpu().eval()
    wrapper = ExportableClassifier(module, predictor.spec.height).eval()
    g = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (batch, predictor.spec.height, predictor.clip_frames), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        want = wrapper(example)
    with warnings.catch_warnings():  # torch.export's own use of its deprecated pytree API
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        onnx_program = torch.onnx.export(wrapper, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                         dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                                         verbose=False)
    onnx_program.optimize()
    model = onnx_program.model_proto
    meta = model.metadata_props.add()
    meta.key, meta.value = META_KEY, json.dumps(model_facts(predictor))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save_model(model, str(tmp))
    tmp.replace(path)
    got = OnnxPredictor(path).classify(example.numpy())
    return {"max_abs_diff": float(np.abs(got - want.numpy()).max()), "bytes": path.stat().st_size}


class OnnxPredictor(Predictor):
    """A :class:`Predictor` running an exported ONNX file with onnxruntime (CPU by default): the same clips, windows
    and outputs as the checkpoint it was exported from."""

    def __init__(self, path: str | Path, source: str | None = None, providers: list[str] | None = None,
                 batch_size: int = 64) -> None:
        path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
            facts = json.loads(self.session.get_modelmeta().custom_metadata_map[META_KEY])
        except Exception as err:  # noqa: BLE001 - not an ONNX file, or not one asc exported
            raise ModelError(f"{path}: not an ONNX model exported by asc export ({type(err).__name__}: {err})") from err
        if facts.get("feature_version") != FEATURE_VERSION:
            raise ModelError(f"{path}: its images were computed by asc's feature code v{facts.get('feature_version')}, "
                             f"this version computes v{FEATURE_VERSION}; export it again from a retrained model")
        self.source = source or str(path)
        self.class_names = list(facts["class_names"])
        self.spec = FeatureSpec(**facts["features"])
        self.views = ViewSpec(**facts["views"])
        self.window = float(facts["window"])
        self.clip_frames = int(facts["clip"]["frames"])
        self.clip_seconds = float(facts["clip"]["seconds"])
        self.pad = facts["clip"]["pad"] if facts["clip"]["pad"] != "none" else "repeat"
        self.batch_size = batch_size
        self.device = torch.device("cpu")
        self.module = None

    def classify(self, clips: np.ndarray) -> np.ndarray:
        """Class probabilities ``[b, C]`` of clips ``uint8 [b, H, W]``."""
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(clips, dtype=np.uint8)})[0]


def latency(predictor: Predictor, rounds: int = 20, batch: int = 1) -> float:
    """Median seconds per call of ``predictor.classify`` on ``batch`` random clips (CPU)."""
    g = np.random.default_rng(0)
    clips = g.integers(0, 256, (batch, predictor.spec.height, predictor.clip_frames), dtype=np.uint8)
    predictor.classify(clips)  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        predictor.classify(clips)
        times.append(time.perf_counter() - t)
    return float(np.median(times))
