"""Classifying a live PCM stream (``asc predict -``).

Raw PCM on standard input at ``--rate``/``--channels``/``--dtype``. Every hop the last clip of audio (the training
clip length; a rolling buffer of one clip) is turned into an image and classified through the model's evaluation
views; the printed decision is the mean of the last ``--smooth`` clips' probabilities.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import IO, Any

import librosa
import numpy as np

from asc.data.audio import PCM_DTYPES
from asc.data.features import image_from_audio
from asc.inference.outputs import format_top
from asc.inference.predictor import Predictor


@dataclass
class StreamReport:
    decisions: list[dict[str, Any]]
    seconds: float  # audio read
    compute: float  # seconds spent computing decisions
    hop: float

    @property
    def real_time_factor(self) -> float:
        """Compute time per decision over the hop it has to keep up with (< 1: faster than real time)."""
        return (self.compute / len(self.decisions)) / self.hop if self.decisions else float("nan")


def read_exact(stream: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the stream."""
    chunks, got = [], 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def pcm_to_float(raw: bytes, dtype: str, channels: int) -> np.ndarray:
    """Interleaved PCM bytes -> mono float32 ``[samples]`` in [-1, 1] (little-endian)."""
    dt = np.dtype(dtype).newbyteorder("<")
    x = np.frombuffer(raw[: len(raw) // (dt.itemsize * channels) * dt.itemsize * channels], dtype=dt)
    x = x.reshape(-1, channels).astype(np.float32)
    if dt.kind == "i":
        x /= float(2 ** (8 * dt.itemsize - 1))
    return x.mean(axis=1)


def stream(
    predictor: Predictor,
    source: IO[bytes],
    rate: int,
    channels: int = 1,
    dtype: str = "int16",
    hop: float | None = None,
    smooth: int = 4,
    top_k: int = 3,
    out: IO[str] | None = None,
) -> StreamReport:
    """Classify a live PCM stream: a decision every ``hop`` s, smoothed over the last ``smooth`` windows."""
    if dtype not in PCM_DTYPES:
        raise ValueError(f"--dtype {dtype!r}: not one of {PCM_DTYPES}")
    if rate <= 0 or channels <= 0 or smooth <= 0:
        raise ValueError("--rate, --channels and --smooth must be positive")
    spec = predictor.spec
    hop_frames = predictor.hop_frames(hop)
    hop_s = hop_frames * spec.hop_length / spec.sample_rate
    need = (predictor.clip_frames - 1) * spec.hop_length + 1  # samples at the model's rate for one clip
    buffer_len = math.ceil(need * rate / spec.sample_rate) + 1  # at the stream's rate
    block = max(1, round(hop_s * rate))
    frame_bytes = np.dtype(dtype).itemsize * channels
    buffer = np.zeros(0, dtype=np.float32)
    history: deque[np.ndarray] = deque(maxlen=smooth)
    decisions: list[dict[str, Any]] = []
    total = 0
    compute = 0.0
    first = True
    while True:
        raw = read_exact(source, (buffer_len if first else block) * frame_bytes)
        if len(raw) < (buffer_len if first else block) * frame_bytes:
            total += len(raw) // frame_bytes  # a partial hop at the end of the stream: counted, not classified
            break
        x = pcm_to_float(raw, dtype, channels)
        total += x.size
        buffer = np.concatenate([buffer, x])[-buffer_len:]
        first = False
        t0 = time.perf_counter()
        y = buffer
        if rate != spec.sample_rate:
            y = librosa.resample(y, orig_sr=rate, target_sr=spec.sample_rate)
        image = image_from_audio(y[-need:], spec)
        probs = predictor.clip_probs(image, [image.shape[1] - predictor.clip_frames])[0]
        history.append(probs)
        smoothed = np.mean(history, axis=0)
        compute += time.perf_counter() - t0
        t = total / rate
        order = np.argsort(-smoothed, kind="stable")[:top_k]
        top = [(predictor.class_names[i], float(smoothed[i])) for i in order]
        decisions.append({"time": t, "probs": dict(zip(predictor.class_names, map(float, smoothed), strict=True)),
                          "window": dict(zip(predictor.class_names, map(float, probs), strict=True))})
        if out is not None:
            print(f"{t:9.2f} s  {format_top(top, 0)}", file=out, flush=True)
    return StreamReport(decisions, total / rate, compute, hop_s)
