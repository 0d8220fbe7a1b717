"""A trained model and everything needed to turn audio of any length into class probabilities.

The model is self-contained: its checkpoint holds the class names, the full :class:`~asc.data.features.FeatureSpec`
(``hparams.features``), the time window and the clip length it was trained on, so no dataset and no training
config is needed.

Clips. A recording is classified as the model was trained: as clips of the training clip length. A file up to
one hop longer than a clip is covered by the fewest clips (one for a clip-long file: what validation and test
do); a longer recording gets sliding clips every ``hop`` seconds (default half a clip), the last one aligned with
the end: ``1 + ceil((W - c) / h)`` clips for an image of ``W`` frames, clip ``c`` and hop ``h`` frames. A shorter
file is padded as the training data were. Each clip gets the mean class probabilities of the model's evaluation
views; the file gets the mean over its clips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asc.data.augment import ViewSpec
from asc.data.audio import AudioError, load_mono
from asc.data.clips import chunk_starts, fit_length
from asc.data.features import FEATURE_VERSION, FeatureSpec, image_from_audio
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
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""  # torch's own is a page of advice
        raise ModelError(f"{path}: not a readable checkpoint ({type(err).__name__}: {first[:200]})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ModelError(f"{path}: not a Lightning checkpoint of asc's SceneClassifier (no state_dict/hyper_parameters)")
    return ckpt


def spec_differences(have: FeatureSpec, want: FeatureSpec) -> list[str]:
    """``["kind: cqt != mel", ...]`` for the settings that differ."""
    a, b = asdict(have), asdict(want)
    return [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if a[k] != b[k]]


class Predictor:
    """A trained :class:`~asc.model.networks.SceneNet` with everything needed to turn audio into class probabilities.

    A recording is seen as the model was trained and evaluated: as clips of the training clip length
    (``clip_frames``; shorter recordings padded as in training, by repetition for models trained without padding),
    each clip through the model's evaluation views (:class:`asc.data.augment.ViewSpec`), the clip's probabilities the
    mean over its views. ``eval`` covers the recording with the fewest clips (what validation and test do), ``slide``
    puts one every ``hop`` seconds; the recording's probabilities are the mean over its clips.

    Attributes:
        spec: the feature settings the model was trained on.
        views: how a clip becomes network inputs; ``window`` its window in seconds.
        clip_frames, clip_seconds, pad: the training clip length and how shorter recordings were padded.
    """

    def __init__(self, module: SceneClassifier, spec: FeatureSpec, source: str = "", device: str = "cpu",
                 batch_size: int = 64) -> None:
        hp = module.hparams
        self.source = source
        self.class_names: list[str] = list(hp.class_names)
        self.spec = spec
        self.views: ViewSpec = module.views
        self.window = float(hp.get("window") or self.views.window_frames * self.hop_seconds)
        self.clip_frames = int(hp.clip["frames"])
        self.clip_seconds = float(hp.clip["seconds"])
        self.pad = hp.clip["pad"] if hp.clip["pad"] != "none" else "repeat"
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    @property
    def hop_seconds(self) -> float:
        return self.spec.hop_length / self.spec.sample_rate

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, expect: FeatureSpec | None = None, source: str | None = None, device: str = "cpu"
    ) -> Predictor:
        """Load a checkpoint written by training (or by :mod:`asc.tracking.packaging`).

        ``expect``: the feature settings the caller will feed; a model trained on others is refused, as is a model
        whose features were computed by an earlier version of asc's feature code.
        """
        ckpt = read_checkpoint(path)
        hp = dict(ckpt["hyper_parameters"])
        name = source or str(path)
        if "views" not in hp or "clip" not in hp or hp.get("features") is None:
            raise ModelError(f"{name}: trained by an earlier version of asc, whose checkpoints do not say how audio "
                             "becomes the model's inputs; retrain it with this version")
        if hp.get("feature_version") != FEATURE_VERSION:
            raise ModelError(f"{name}: its images were computed by asc's feature code v{hp.get('feature_version')}, "
                             f"this version computes v{FEATURE_VERSION} (other images); retrain it with this version")
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

    # -- clips ---------------------------------------------------------------------------------------------
    def hop_frames(self, hop: float | None) -> int:
        """Frames between sliding clips (``hop`` seconds; default: half a clip)."""
        hop = self.clip_seconds / 2 if hop is None else hop
        if hop <= 0:
            raise ValueError(f"hop={hop}: must be a positive number of seconds")
        return max(1, round(hop / self.hop_seconds))

    def clip_starts(self, frames: int, mode: str, hop_frames: int) -> np.ndarray:
        """Starts ``[n]`` of the clips over an image of ``frames``: ``eval`` (the fewest covering it) or ``slide``."""
        if mode == "eval":
            return chunk_starts(frames, self.clip_frames)
        if mode == "slide":
            return slide_starts(frames, self.clip_frames, hop_frames)
        raise ValueError(f"windows={mode!r}: not one of 'auto', 'eval', 'slide'")

    # -- inference -----------------------------------------------------------------------------------------
    def classify(self, clips: np.ndarray) -> np.ndarray:
        """Class probabilities ``[b, C]`` of clips ``uint8 [b, H, clip]``: the mean over the model's evaluation views."""
        x = torch.from_numpy(np.ascontiguousarray(clips)).to(self.device)
        with torch.inference_mode():
            return self.module.predict_proba(self.views.eval(x, self.module.net.norm)).float().cpu().numpy()

    def clip_probs(self, image: np.ndarray, starts: Sequence[int]) -> np.ndarray:
        """Class probabilities ``[n, C]`` of the clips of ``image`` ``[H, W]`` (uint8) starting at ``starts``."""
        starts = np.asarray(starts, dtype=np.int64)
        cols = np.arange(self.clip_frames)
        out = [self.classify(image[:, chunk.reshape(-1, 1) + cols].transpose(1, 0, 2))
               for chunk in np.array_split(starts, max(1, -(-len(starts) // self.batch_size)))]
        return np.concatenate(out)

    def check_image(self, image: np.ndarray, name: str = "input") -> None:
        if image.ndim != 2 or image.shape[0] != self.spec.height:
            raise ValueError(f"{name}: image of shape {image.shape}, the model expects [{self.spec.height}, frames]")
        if image.shape[1] < 2:
            raise AudioError(f"{name}: {image.shape[1]} frame(s) of audio: too short to classify")

    def predict_image(self, image: np.ndarray, hop: float | None = None, windows: str = "auto", name: str = "input") -> Prediction:
        """Clips, per-clip probabilities and their mean for one image ``[H, W]`` (uint8)."""
        self.check_image(image, name)
        frames = image.shape[1]
        seconds = (frames - 1) * self.hop_seconds
        image = fit_length(image, self.clip_frames, self.pad)
        hop_frames = self.hop_frames(hop)
        mode = windows
        if windows == "auto":
            mode = "eval" if image.shape[1] <= self.clip_frames + hop_frames else "slide"
        starts = self.clip_starts(image.shape[1], mode, hop_frames)
        probs = self.clip_probs(image, starts)
        t = self.hop_seconds
        return Prediction(
            file=name, seconds=seconds, mode=mode, class_names=self.class_names,
            starts=starts * t, ends=np.minimum(starts + self.clip_frames - 1, frames - 1) * t, probs=probs,
            mean=probs.mean(0), extra={"padded": frames < self.clip_frames},
        )

    def predict_file(self, path: str | Path, hop: float | None = None, windows: str = "auto") -> Prediction:
        y, _ = load_mono(path, sr=self.spec.sample_rate, resample=True)
        if y.size < 2 * self.spec.hop_length:
            raise AudioError(f"{path}: {y.size / self.spec.sample_rate:.3f} s of audio is too short to classify")
        return self.predict_image(image_from_long_audio(y, self.spec), hop, windows, name=str(path))


@dataclass
class Prediction:
    """One file's result: its clips (start and end in seconds), their probabilities ``[n, C]`` and the mean ``[C]``."""

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
    """Starts of sliding clips of ``width`` frames every ``hop`` over ``frames``, the last at ``frames - width``."""
    if width > frames:
        raise ValueError(f"a clip of {width} frames is wider than the {frames}-frame image")
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
