"""Prediction with a trained model: audio files of any length and rate, folders, or a live PCM stream.

The model is self-contained: its checkpoint holds the class names, the full :class:`~asc.features.FeatureSpec`
(``hparams.features``), the time window and the clip length it was trained on, so no dataset and no training
config is needed. Model sources (``--model``):

- a Lightning checkpoint file (loaded with ``weights_only=True``), or an MLflow model folder;
- an MLflow run: ``runs:/<run_id>`` or the bare 32-hex run id (its ``checkpoints/best.ckpt`` artifact),
  or ``runs:/<run_id>/<artifact path>``;
- a registered model: ``models:/<name>/<version>``, ``models:/<name>/latest`` or ``models:/<name>@<alias>``.

Windows. A file about as long as the training clips (at most one hop longer) gets the evaluation windows of
the model (``eval_windows``: the centre window, or windows covering the clip). A longer recording gets
sliding windows every ``hop`` seconds, the last one aligned with the end of the file: ``1 + ceil((W - w) / h)``
windows for an image of ``W`` frames, window ``w`` and hop ``h`` frames. Each window gets its class
probabilities; the file gets their mean.

Stream (``-``): raw PCM on standard input at ``--rate``/``--channels``/``--dtype``. Every hop the last window
of audio is turned into an image (a rolling buffer of one window) and classified; the printed decision is
the mean of the last ``--smooth`` windows' probabilities.

    asc predict --model runs:/0123abcd... recording.flac --plot bars.png
    asc predict --model models:/asc-demo/1 recordings/ --csv out.csv
    arecord -f S16_LE -r 48000 -c 2 | asc predict --model best.ckpt - --rate 48000 --channels 2
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from asc.audio import AudioError
from asc.features import FeatureSpec

#: Extensions picked up in a folder (anything libsndfile reads, plus MP3 through libsndfile >= 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".rf64")
#: The artifact of a training run that holds its best checkpoint (see asc.train.run).
RUN_CHECKPOINT = "checkpoints/best.ckpt"
#: Where the packaged MLflow model keeps its checkpoint (see asc.packaging).
MODEL_CHECKPOINT = "model.ckpt"
PCM_DTYPES = ("int16", "int32", "float32", "float64")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class ModelError(ValueError):
    """A model that cannot be used: missing, unreadable, unknown run, or trained on other features."""


# --------------------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------------------
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that name the file."""
    import torch

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
    """A trained :class:`~asc.model.SceneNet` with everything needed to turn audio into class probabilities.

    Attributes:
        spec: the feature settings the model was trained on.
        window: window length in seconds; ``window_frames`` its width in image frames.
        clip_seconds: length of the training clips (None for checkpoints that do not say).
    """

    def __init__(self, module, spec: FeatureSpec, source: str = "", device: str = "cpu", batch_size: int = 64) -> None:
        import torch

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
        """Load a checkpoint written by training (or by :mod:`asc.packaging`).

        ``expect``: the feature settings the caller will feed; a model trained on others is refused. For a
        checkpoint from before the settings travelled with the model, ``expect`` supplies them.
        """
        from asc.module import SceneClassifier

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
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(module, spec, source=name, device=device)

    # -- windows -------------------------------------------------------------------------------------------
    def slide_starts(self, frames: int, hop_frames: int) -> np.ndarray:
        """Sliding window starts ``[n]``: every ``hop_frames``, the last aligned with the end."""
        return slide_starts(frames, self.window_frames, hop_frames)

    def eval_starts(self, frames: int) -> np.ndarray:
        """The evaluation windows of the model (those of :func:`asc.augment.eval_batch`)."""
        from asc import augment

        return augment.eval_starts(frames, self.window_frames, self.eval_windows).numpy()

    def hop_frames(self, hop: float | None) -> int:
        hop = self.window / 2 if hop is None else hop
        if hop <= 0:
            raise ValueError(f"hop={hop}: must be a positive number of seconds")
        return max(1, round(hop * self.spec.sample_rate / self.spec.hop_length))

    # -- inference -----------------------------------------------------------------------------------------
    def window_probs(self, image: np.ndarray, starts: Sequence[int]) -> np.ndarray:
        """Class probabilities ``[n, C]`` of the windows of ``image`` ``[H, W]`` uint8 starting at ``starts``."""
        import torch

        from asc import augment

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
        from asc.audio import load_mono

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
    """:func:`asc.features.image_from_audio` in chunks of ``chunk`` seconds, to bound memory on long recordings.

    Each chunk is computed with ``margin`` seconds of audio on both sides (longer than the constant-Q transform's
    longest filter) and only its own frames are kept. Recordings up to ``chunk`` seconds are one chunk, i.e.
    exactly the training pipeline. The dB floor (``top_db``) is relative to each chunk's maximum.
    """
    from asc.features import image_from_audio

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


# --------------------------------------------------------------------------------------------------------------
# model sources
# --------------------------------------------------------------------------------------------------------------
def _check_store(uri: str) -> None:
    """A missing SQLite store would be created empty by MLflow: say that there is none instead."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise ModelError(
                f"no MLflow store at {db} (tracking URI {uri}): run training first, or point --tracking-uri / "
                "MLFLOW_TRACKING_URI at the store that holds the run"
            )


def fetch_model(source: str, dst: Path, tracking_uri: str | None = None) -> Path:
    """Resolve ``source`` to a local checkpoint file, downloading MLflow artifacts into ``dst``."""
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        return _model_dir_checkpoint(path, source)
    if not (source.startswith(("runs:/", "models:/")) or _RUN_ID.match(source)):
        raise ModelError(
            f"--model {source!r}: no such checkpoint file, and not an MLflow run id (runs:/<id>) "
            "or registered model (models:/<name>/<version>)"
        )
    import mlflow
    from mlflow.exceptions import MlflowException

    from asc.tracking import tracking_uri as resolve_uri

    uri = tracking_uri or resolve_uri(None)  # an explicit --tracking-uri wins over MLFLOW_TRACKING_URI
    _check_store(uri)
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    if source.startswith("models:/"):
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(dst), tracking_uri=uri, registry_uri=uri
            )
        except MlflowException as err:
            raise ModelError(f"--model {source}: no such registered model in {uri} ({err.message})") from err
        return _model_dir_checkpoint(Path(local), source)
    run_id, _, artifact = source.removeprefix("runs:/").partition("/")
    try:
        client.get_run(run_id)
    except MlflowException as err:
        raise ModelError(
            f"--model {source}: no MLflow run {run_id!r} in {uri}; check the id and the tracking URI "
            "(--tracking-uri or MLFLOW_TRACKING_URI)"
        ) from err
    artifact = artifact or RUN_CHECKPOINT
    try:
        local = Path(client.download_artifacts(run_id, artifact, str(dst)))
    except (MlflowException, OSError) as err:
        raise ModelError(f"--model {source}: run {run_id} has no artifact {artifact!r} ({err})") from err
    return _model_dir_checkpoint(local, source) if local.is_dir() else local


def _model_dir_checkpoint(folder: Path, source: str) -> Path:
    """The checkpoint inside an MLflow model folder written by :mod:`asc.packaging`."""
    ckpt = folder / "artifacts" / MODEL_CHECKPOINT
    if not ckpt.is_file():
        raise ModelError(f"--model {source}: {folder} is not an asc MLflow model (no artifacts/{MODEL_CHECKPOINT})")
    return ckpt


def load_predictor(
    source: str, tracking_uri: str | None = None, expect: FeatureSpec | None = None, device: str = "cpu"
) -> Predictor:
    """A :class:`Predictor` from a checkpoint path, an MLflow run or a registered model."""
    with tempfile.TemporaryDirectory(prefix="asc-model-") as tmp:
        path = fetch_model(source, Path(tmp), tracking_uri)
        return Predictor.from_checkpoint(path, expect=expect, source=source, device=device)


# --------------------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------------------
def format_top(top: Iterable[tuple[str, float]], width: int = 0) -> str:
    return "  ".join(f"{c:<{width}} {p:.2f}" if width else f"{c} {p:.2f}" for c, p in top)


def write_json(
    path: Path, predictor: Predictor, results: list[Prediction], errors: list[tuple[str, str]], k: int = 3
) -> None:
    doc = {
        "model": predictor.source, "classes": predictor.class_names, "features": asdict(predictor.spec),
        "window": predictor.window, "files": [r.to_dict(k) for r in results],
        "errors": [{"file": f, "error": e} for f, e in errors],
    }
    path.write_text(json.dumps(doc, indent=1))


def write_csv(path: Path, class_names: Sequence[str], results: list[Prediction]) -> None:
    """One row per window and one ``mean`` row per file: ``file,window,start,end,<classes>``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "window", "start", "end", *class_names])
        for r in results:
            for i, (s, e, p) in enumerate(zip(r.starts, r.ends, r.probs, strict=True)):
                w.writerow([r.file, i, f"{s:.3f}", f"{e:.3f}", *(f"{v:.6f}" for v in p)])
            w.writerow([r.file, "mean", f"{r.starts.min():.3f}", f"{r.ends.max():.3f}", *(f"{v:.6f}" for v in r.mean)])


def plot_bars(result: Prediction, path: str | Path, k: int = 3) -> Path:
    """Bar chart of the ``k`` most probable classes (the paper's "bus 0.71, metro 0.23, metro_station 0.05")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = result.top(k)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(top), 3.6))
    bars = ax.bar([c for c, _ in top], [p for _, p in top], color="#3b75af")
    ax.bar_label(bars, labels=[f"{p:.2f}" for _, p in top], padding=2)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("probability")
    n = len(result.starts)
    ax.set_title(f"{Path(result.file).name}\n(mean over {n} window{'s' * (n != 1)})" if n > 1 else Path(result.file).name,
                 fontsize=10)
    ax.tick_params(axis="x", labelrotation=20 if len(top) > 3 else 0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


# --------------------------------------------------------------------------------------------------------------
# stream
# --------------------------------------------------------------------------------------------------------------
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
    from asc.features import image_from_audio

    if dtype not in PCM_DTYPES:
        raise ValueError(f"--dtype {dtype!r}: not one of {PCM_DTYPES}")
    if rate <= 0 or channels <= 0 or smooth <= 0:
        raise ValueError("--rate, --channels and --smooth must be positive")
    spec = predictor.spec
    hop_frames = predictor.hop_frames(hop)
    hop_s = hop_frames * spec.hop_length / spec.sample_rate
    need = (predictor.window_frames - 1) * spec.hop_length + 1  # samples at the model's rate for one window
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
            import librosa

            y = librosa.resample(y, orig_sr=rate, target_sr=spec.sample_rate)
        image = image_from_audio(y[-need:], spec)
        probs = predictor.window_probs(image, [image.shape[1] - predictor.window_frames])[0]
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


# --------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asc predict",
        description="Predict acoustic scenes of audio files, folders, or a raw PCM stream on stdin (-).",
        epilog="Model sources: a checkpoint file, runs:/<run_id> (or the bare id), models:/<name>/<version>.",
    )
    p.add_argument("inputs", nargs="+", help="audio files (WAV/FLAC/OGG/MP3, any rate), folders, or - for stdin PCM")
    p.add_argument("-m", "--model", required=True, help="checkpoint path, runs:/<run_id>, or models:/<name>/<version>")
    p.add_argument("--tracking-uri", help="MLflow store for runs:/ and models:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--features", help="feature settings the model must have been trained on (conf/features NAME or YAML)")
    p.add_argument("-k", "--top-k", type=int, default=3, help="classes shown per file (default: 3)")
    p.add_argument("--hop", type=float, help="seconds between sliding windows / stream decisions (default: half the window)")
    p.add_argument("--windows", choices=("auto", "eval", "slide"), default="auto",
                   help="auto: evaluation windows for clips up to the training length, sliding windows beyond (default)")
    p.add_argument("--per-window", action="store_true", help="also print every window's top classes")
    p.add_argument("--json", type=Path, help="write all results (per window and per file) as JSON")
    p.add_argument("--csv", type=Path, help="write one row per window and a mean row per file as CSV")
    p.add_argument("--plot", type=Path, help="bar chart PNG of the top classes (a folder when several files are given)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (default: cpu)")
    s = p.add_argument_group("stream (input -)")
    s.add_argument("--rate", type=int, help="sample rate of the PCM stream in Hz (required for -)")
    s.add_argument("--channels", type=int, default=1, help="interleaved channels (default: 1)")
    s.add_argument("--dtype", choices=PCM_DTYPES, default="int16", help="little-endian sample type (default: int16)")
    s.add_argument("--smooth", type=int, default=4, help="decisions are the mean of the last N windows (default: 4)")
    return p


def _fail(msg: str, code: int = 2) -> None:
    print(f"asc predict: {msg}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    import warnings

    a = parser().parse_args(argv)
    warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)  # librosa's CQT, short clips
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if a.top_k < 1:
        _fail("--top-k must be at least 1")
    expect = None
    if a.features:
        from asc.config import group_file, settings

        try:
            expect = settings(FeatureSpec, group_file("features", a.features), "features")
        except ValueError as err:
            _fail(str(err))
    if "-" in a.inputs and len(a.inputs) > 1:
        _fail("- (stdin stream) cannot be combined with other inputs")
    if "-" in a.inputs and not a.rate:
        _fail("reading a PCM stream from stdin (-) needs --rate (and --channels, --dtype if not 1 x int16)")
    try:
        predictor = load_predictor(a.model, a.tracking_uri, expect, a.device)
    except ModelError as err:
        _fail(str(err))
    k = min(a.top_k, len(predictor.class_names))
    if a.inputs == ["-"]:
        _main_stream(a, predictor, k)
        return

    files: list[Path] = []
    errors: list[tuple[str, str]] = []
    for item in map(Path, a.inputs):
        if item.is_dir():
            found = audio_files(item)
            if not found:
                errors.append((str(item), "no audio files in this folder"))
            files += found
        else:
            files.append(item)
    results: list[Prediction] = []
    width = max([len(str(f)) for f in files] + [4])
    print(f"model {a.model}: {len(predictor.class_names)} classes, {predictor.spec.kind} features at "
          f"{predictor.spec.sample_rate} Hz, {predictor.window:g} s window")
    print(f"{'file':<{width}}  {'length':>8}  {'windows':>12}  top-{k}")
    for f in files:
        try:
            r = predictor.predict_file(f, a.hop, a.windows)
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the others; reported and counted
            msg = str(err) if str(f) in str(err) else f"{f}: {err}"
            errors.append((str(f), msg))
            print(f"asc predict: {msg}", file=sys.stderr)
            continue
        results.append(r)
        n = len(r.starts)
        print(f"{str(f):<{width}}  {r.seconds:>6.1f} s  {f'{n} ({r.mode})':>12}  {format_top(r.top(k))}", flush=True)
        if a.per_window:
            for s, e, p in zip(r.starts, r.ends, r.probs, strict=True):
                order = np.argsort(-p, kind="stable")[:k]
                print(f"  {s:8.2f}-{e:.2f} s  " + format_top((predictor.class_names[i], float(p[i])) for i in order))
    if a.json:
        write_json(a.json, predictor, results, errors, k)
    if a.csv:
        write_csv(a.csv, predictor.class_names, results)
    if a.plot and results:
        if len(files) == 1:
            plot_bars(results[0], a.plot, k)
        else:
            a.plot.mkdir(parents=True, exist_ok=True)
            root = Path(os.path.commonpath([Path(r.file).resolve().parent for r in results]))
            for r in results:  # recordings/a/x.wav -> <plot>/a__x.wav.png
                rel = Path(r.file).resolve().relative_to(root)
                plot_bars(r, a.plot / (re.sub(r"[^\w.-]+", "_", "__".join(rel.parts)) + ".png"), k)
    print(f"{len(results)} file(s) predicted, {len(errors)} failed")
    if errors:
        raise SystemExit(1)


def _main_stream(a: argparse.Namespace, predictor: Predictor, k: int) -> None:
    print(f"stream: {a.rate} Hz x {a.channels} {a.dtype}; a decision every {predictor.hop_frames(a.hop) * predictor.spec.hop_length / predictor.spec.sample_rate:.2f} s "
          f"over the last {a.smooth} window(s) of {predictor.window:g} s", file=sys.stderr)
    try:
        report = stream(predictor, sys.stdin.buffer, a.rate, a.channels, a.dtype, a.hop, a.smooth, k, out=sys.stdout)
    except ValueError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        return
    if a.json:
        a.json.write_text(json.dumps({"model": predictor.source, "classes": predictor.class_names, "decisions": report.decisions}, indent=1))
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time", *predictor.class_names])
            for d in report.decisions:
                w.writerow([f"{d['time']:.3f}", *(f"{d['probs'][c]:.6f}" for c in predictor.class_names)])
    print(f"stream: {report.seconds:.1f} s of audio, {len(report.decisions)} decisions, "
          f"real-time factor {report.real_time_factor:.3f} (compute per decision / hop)", file=sys.stderr)
    if not report.decisions:
        _fail(f"the stream ended after {report.seconds:.2f} s, before one {predictor.window:g} s window", 1)
