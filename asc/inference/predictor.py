"""A trained model and everything needed to turn audio of any length into class probabilities.

The model is self-contained: its checkpoint holds the class names, the full :class:`~asc.data.features.FeatureSpec`
(``hparams.features``), the time window and the clip length it was trained on, so no dataset and no training
config is needed.

Windows. A file about as long as the training clips (at most one hop longer) gets the evaluation windows of
the model (``eval_windows``: the centre window, or windows covering the clip). A longer recording gets
sliding windows every ``hop`` seconds, the last one aligned with the end of the file: ``1 + ceil((W - w) / h)``
windows for an image of ``W`` frames, window ``w`` and hop ``h`` frames. Each window gets its class
probabilities; the file gets their mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asc.data import augment
from asc.data.audio import AudioError, load_mono
from asc.data.features import FeatureSpec, image_from_audio
from asc.model.module import SceneClassifier


class ModelError(ValueError):
    """A model that cannot be used: missing, unreadable, unknown run, or trained on other features."""


# --------------------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------------------
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt zip, unpickling refused, not a torch file...
        raise ModelError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ModelError(f"{path}: not a Lightning checkpoint of asc's SceneClassifier (no state_dict/hyper_parameters)")
    return ckpt


def spec_differences(have: FeatureSpec, want: FeatureSpec) -> list[str]:
    """``["kind: cqt != mel", ...]`` for the settings that differ."""
    a, b = asdict(have), asdict(want)
    return [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if a[k] != b[k]]


class Predictor:
    """A trained :class:`~asc.model.networks.SceneNet` with everything needed to turn audio into class probabilities.

    Attributes:
        spec: the feature settings the model was trained on.
        window: window length in seconds; ``window_frames`` its width in image frames.
        clip_seconds: length of the training clips (None for checkpoints that do not say).
    """

    def __init__(self, module, spec: FeatureSpec, source: str = "", device: str = "cpu", batch_size: int = 64) -> None:
        hp = module.hparams
        self.source = source
        self.class_names: list[str] = list(hp.class_names)
        self.spec = spec
        self.window_frames = int(hp.window_frames)
        self.window = float(hp.get("window") or self.window_frames * spec.hop_length / spec.sample_rate)
        self.clip_seconds: float | None = hp.get("clip_seconds")
        self.image_size = int(hp.image_size)
        self.eval_windows = str(hp.eval_windows)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, expect: FeatureSpec | None = None, source: str | None = None, device: str = "cpu"
    ) -> Predictor:
        """Load a checkpoint written by training (or by :mod:`asc.tracking.packaging`).

        ``expect``: the feature settings the caller will feed; a model trained on others is refused. For a
        checkpoint from before the settings travelled with the model, ``expect`` supplies them.
        """
        ckpt = read_checkpoint(path)
        hp = dict(ckpt["hyper_parameters"])
        name = source or str(path)
        if hp.get("features") is None:
            if expect is None:
                raise ModelError(
                    f"{name}: the model holds no feature settings (trained before asc stored them in the checkpoint); "
                    "pass --features NAME|YAML with the settings it was trained with, or retrain it"
                )
            hp["features"] = asdict(expect)
        try:
            spec = FeatureSpec(**hp["features"])
        except (TypeError, ValueError) as err:
            raise ModelError(f"{name}: its feature settings are not understood by this version of asc ({err})") from err
        if expect is not None and spec != expect:
            raise ModelError(
                f"{name}: the model was trained on other features than expected: " + "; ".join(spec_differences(spec, expect))
            )
        hp["model"] = {**hp["model"], "pretrained": False}  # the weights come from the checkpoint
        try:
            module = SceneClassifier(**hp)
            module.load_state_dict(ckpt["state_dict"])
        except (TypeError, RuntimeError, ValueError) as err:
            raise ModelError(f"{name}: the checkpoint does not fit asc's SceneClassifier ({err})") from err
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(module, spec, source=name, device=device)

    # -- windows -------------------------------------------------------------------------------------------
    def slide_starts(self, frames: int, hop_frames: int) -> np.ndarray:
        """Sliding window starts ``[n]``: every ``hop_frames``, the last aligned with the end."""
        return slide_starts(frames, self.window_frames, hop_frames)

    def eval_starts(self, frames: int) -> np.ndarray:
        """The evaluation windows of the model (those of :func:`asc.data.augment.eval_batch`)."""
        return augment.eval_starts(frames, self.window_frames, self.eval_windows).numpy()

    def hop_frames(self, hop: float | None) -> int:
        hop = self.window / 2 if hop is None else hop
        if hop <= 0:
            raise ValueError(f"hop={hop}: must be a positive number of seconds")
        return max(1, round(hop * self.spec.sample_rate / self.spec.hop_length))

    # -- inference -----------------------------------------------------------------------------------------
    def window_probs(self, image: np.ndarray, starts: Sequence[int]) -> np.ndarray:
        """Class probabilities ``[n, C]`` of the windows of ``image`` ``[H, W]`` uint8 starting at ``starts``."""
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).unsqueeze(0)
        starts = torch.as_tensor(np.asarray(starts, dtype=np.int64), device=self.device)
        out = []
        with torch.inference_mode():
            for chunk in starts.split(self.batch_size):
                crops = augment.crop(x.expand(chunk.numel(), -1, -1), chunk, self.window_frames)
                batch = augment.to_network(augment.resize(crops, self.image_size), norm=self.module.net.norm)
                out.append(self.module(batch).float().softmax(-1).cpu())
        return torch.cat(out).numpy()

    def check_image(self, image: np.ndarray, name: str = "input") -> None:
        if image.ndim != 2 or image.shape[0] != self.spec.height:
            raise ValueError(f"{name}: image of shape {image.shape}, the model expects [{self.spec.height}, frames]")
        if image.shape[1] < self.window_frames:
            seconds = (image.shape[1] - 1) * self.spec.hop_length / self.spec.sample_rate
            raise AudioError(
                f"{name}: {seconds:.2f} s of audio is shorter than the model's {self.window:g} s window"
            )

    def predict_image(self, image: np.ndarray, hop: float | None = None, windows: str = "auto", name: str = "input") -> Prediction:
        """Windows, per-window probabilities and their mean for one image ``[H, W]``."""
        self.check_image(image, name)
        frames = image.shape[1]
        seconds = (frames - 1) * self.spec.hop_length / self.spec.sample_rate
        hop_frames = self.hop_frames(hop)
        mode = windows
        if windows == "auto":
            mode = "eval" if seconds <= self.eval_limit(hop_frames) else "slide"
        if mode == "eval":
            starts = self.eval_starts(frames)
        elif mode == "slide":
            starts = self.slide_starts(frames, hop_frames)
        else:
            raise ValueError(f"windows={windows!r}: not one of 'auto', 'eval', 'slide'")
        probs = self.window_probs(image, starts)
        t = self.spec.hop_length / self.spec.sample_rate
        return Prediction(
            file=name, seconds=seconds, mode=mode, class_names=self.class_names,
            starts=starts * t, ends=(starts + self.window_frames) * t, probs=probs, mean=probs.mean(0),
        )

    def eval_limit(self, hop_frames: int) -> float:
        """Longest file (s) that gets the evaluation windows: the training clip length plus one hop."""
        hop_s = hop_frames * self.spec.hop_length / self.spec.sample_rate
        clip = self.clip_seconds if self.clip_seconds else 2 * self.window
        return clip + hop_s

    def predict_file(self, path: str | Path, hop: float | None = None, windows: str = "auto") -> Prediction:
        y, _ = load_mono(path, sr=self.spec.sample_rate, resample=True)
        need = (self.window_frames - 1) * self.spec.hop_length
        if y.size < max(need, 2):
            raise AudioError(
                f"{path}: {y.size / self.spec.sample_rate:.2f} s of audio is shorter than the model's {self.window:g} s window"
            )
        return self.predict_image(image_from_long_audio(y, self.spec), hop, windows, name=str(path))


@dataclass
class Prediction:
    """One file's result: windows (seconds), their probabilities ``[n, C]`` and the mean ``[C]``."""

    file: str
    seconds: float
    mode: str  # "eval" or "slide"
    class_names: list[str]
    starts: np.ndarray
    ends: np.ndarray
    probs: np.ndarray
    mean: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int) -> list[tuple[str, float]]:
        order = np.argsort(-self.mean, kind="stable")[:k]
        return [(self.class_names[i], float(self.mean[i])) for i in order]

    def to_dict(self, k: int = 3) -> dict[str, Any]:
        return {
            "file": self.file, "seconds": round(self.seconds, 4), "mode": self.mode,
            "top": [{"class": c, "p": p} for c, p in self.top(k)],
            "probs": dict(zip(self.class_names, map(float, self.mean), strict=True)),
            "windows": [
                {"start": float(s), "end": float(e), "probs": dict(zip(self.class_names, map(float, p), strict=True))}
                for s, e, p in zip(self.starts, self.ends, self.probs, strict=True)
            ],
        }


def slide_starts(frames: int, width: int, hop: int) -> np.ndarray:
    """Starts of sliding windows of ``width`` frames every ``hop`` over ``frames``, the last at ``frames - width``."""
    if width > frames:
        raise ValueError(f"window of {width} frames is wider than the {frames}-frame image")
    n = 1 + math.ceil((frames - width) / hop)
    starts = np.arange(n, dtype=np.int64) * hop
    starts[-1] = frames - width
    return starts


def image_from_long_audio(y: np.ndarray, spec: FeatureSpec, chunk: float = 60.0, margin: float = 5.0) -> np.ndarray:
    """:func:`asc.data.features.image_from_audio` in chunks of ``chunk`` seconds, to bound memory on long recordings.

    Each chunk is computed with ``margin`` seconds of audio on both sides (longer than the constant-Q transform's
    longest filter) and only its own frames are kept. Recordings up to ``chunk`` seconds are one chunk, i.e.
    exactly the training pipeline. The dB floor (``top_db``) is relative to each chunk's maximum.
    """
    hop = spec.hop_length
    total = y.size // hop + 1
    step = max(1, int(chunk * spec.sample_rate) // hop)
    if total <= step:
        return image_from_audio(y, spec)
    m = math.ceil(margin * spec.sample_rate / hop) * hop
    parts = []
    for a in range(0, total, step):
        b = min(total, a + step)
        lo = max(0, a * hop - m)
        hi = y.size if b == total else min(y.size, (b - 1) * hop + m + 1)
        image = image_from_audio(y[lo:hi], spec)
        off = (a * hop - lo) // hop
        parts.append(image[:, off : off + (b - a)])
    return np.ascontiguousarray(np.concatenate(parts, axis=1))
