"""The paper's figures for any clip: what the features look like at each step of the pipeline.

For one audio file, PNGs of

1. ``mel``: the mel power spectrogram (dB);
2. ``cqt``: the constant-Q power spectrogram without the emphasis filter (dB);
3. ``cqt-emphasis``: the same after the emphasis filter (dB) -- the low-frequency rumble drops, the highs rise;
4. ``image``: the 8-bit network input (per-frame min-max to 0..255);
5. ``augmented``: one training sample: a random time window resized to the network's square input and a masked
   frequency band (mid-grey), drawn with :mod:`asc.data.augment` exactly as training does;

and optionally ``emphasis.wav``, the emphasised audio (peak-normalised), to listen to. Time axes are in seconds,
frequency axes in Hz on the transform's own scale (log for constant-Q, mel for mel), colour bars in dB (or 8-bit
levels). Every spectrogram comes from :func:`asc.data.features.spectrogram_db`, the function training uses.

    asc figures recording.wav --out figures/ --wav
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import librosa
import librosa.display
import numpy as np
import soundfile as sf
import torch
from matplotlib.figure import Figure  # drawn without pyplot: no GUI backend, no global figure state

from asc.data import augment
from asc.data.audio import AudioError, load_mono
from asc.data.augment import ViewSpec
from asc.data.features import FeatureSpec, emphasis, frame_minmax_uint8, spectrogram_db

FIGURES = ("mel", "cqt", "cqt-emphasis", "image", "augmented")


def _axes(spec: FeatureSpec) -> dict:
    """specshow arguments for the frequency axis of ``spec``'s images."""
    if spec.kind == "cqt":
        return dict(y_axis="cqt_hz", fmin=spec.fmin, bins_per_octave=spec.bins_per_octave)
    return dict(y_axis="mel", fmax=spec.sample_rate / 2)


def _frequencies(spec: FeatureSpec) -> np.ndarray:
    """Centre frequency (Hz) of each image row, lowest first, ``[height]``."""
    if spec.kind == "cqt":
        return librosa.cqt_frequencies(spec.n_bins, fmin=spec.fmin, bins_per_octave=spec.bins_per_octave)
    return librosa.mel_frequencies(spec.n_mels, fmin=0.0, fmax=spec.sample_rate / 2)


#: Resolution of the PNGs (dots per inch; the figures are 8 x 3.6 in and 5.6 x 4.6 in).
DPI = 90


def _save(fig, path: Path, dpi: int = DPI) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _spectrogram_png(
    S: np.ndarray, spec: FeatureSpec, title: str, path: Path, cmap: str = "magma", label: str = "dB", dpi: int = DPI
) -> Path:
    """``S`` ``[bins, frames]``, row 0 lowest, on seconds x Hz axes with a colour bar."""
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    mesh = librosa.display.specshow(
        S, sr=spec.sample_rate, hop_length=spec.hop_length, x_axis="time", ax=ax, cmap=cmap, **_axes(spec)
    )
    fig.colorbar(mesh, ax=ax, format="%+2.0f dB" if label == "dB" else "%.0f", label=label if label != "dB" else None)
    ax.set(title=title, xlabel="time (s)", ylabel="frequency (Hz)")
    return _save(fig, path, dpi)


def augmented_sample(image: np.ndarray, window: float, hop_seconds: float, size: int, mask: float,
                     seed: int = 0) -> tuple[np.ndarray, float, float]:
    """One training input before normalisation, drawn as training does with the paper's rules (the reference crop
    and band, :class:`asc.data.augment.ViewSpec`), the image being one clip: ``uint8 [H, W]`` -> float
    ``[size, size]`` (0..255), and the start and width (frames) of the part of the clip it shows.

    The crop position and the band come from a generator seeded by ``seed``. Among the first 20 draws, the first
    whose band covers at least half of ``mask`` is kept, so the figure shows a visible mask.
    """
    H, W = image.shape
    views = ViewSpec.for_clip(W, window, hop_seconds, crop="reference", band="reference", mask=mask, size=size)
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0)
    best = None
    for _ in range(20):
        u = torch.rand(3, 1, generator=g, dtype=torch.float64)
        square = augment.reference_views(x, u[0], views.resized, size)
        sample = augment.band_mask(square, mask, rule=views.band, u=u[1:])[0]
        left, _, side, _ = augment.fit_boxes(views.resized, H, u[0])
        scale = W / views.resized  # resized pixels -> frames
        best = (sample.numpy(), float(left[0]) * scale, min(side, views.resized) * scale)
        masked = int((sample == augment.MASK_FILL).all(dim=1).sum())
        if mask == 0 or masked >= mask * size / 2:
            break
    return best


def make_figures(
    path: str | Path,
    out: str | Path,
    spec: FeatureSpec | None = None,
    window: float = 5.0,
    mask: float = 0.1,
    size: int = 224,
    seed: int = 0,
    wav: bool = False,
    offset: float = 0.0,
    duration: float | None = None,
    dpi: int = DPI,
) -> dict[str, Path]:
    """Write the figures of ``path`` into ``out`` as ``<stem>-<figure>.png``. Returns ``{figure: path}``.

    ``spec``: the features of the network input (default: the paper's); the mel and constant-Q figures use its
    sample rate and hop. ``window`` (s), ``mask`` (fraction) and ``size`` (px) shape the augmented sample.
    """
    spec = spec or FeatureSpec()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    y, sr = load_mono(path, sr=spec.sample_rate, resample=spec.resample)
    y = y[int(offset * sr) : None if duration is None else int((offset + duration) * sr)]
    width = spec.window_frames(window)
    if y.size < max(2, (width - 1) * spec.hop_length):
        raise AudioError(f"{path}: {y.size / sr:.2f} s of audio (after --offset/--duration) is shorter than the {window:g} s window")
    stem = Path(path).stem
    files: dict[str, Path] = {}

    mel = FeatureSpec(kind="mel", sample_rate=sr, hop_length=spec.hop_length, emphasis_alpha=None, magnitude=False,
                      n_mels=spec.n_mels, n_fft=spec.n_fft, amin=spec.amin, top_db=spec.top_db)
    files["mel"] = _spectrogram_png(
        spectrogram_db(y, mel), mel, "mel power spectrogram", out / f"{stem}-mel.png", dpi=dpi
    )

    cqt = spec if spec.kind == "cqt" else FeatureSpec(sample_rate=sr, hop_length=spec.hop_length)
    alpha = cqt.emphasis_alpha or FeatureSpec.emphasis_alpha
    plain = replace(cqt, emphasis_alpha=None)
    emph = replace(cqt, emphasis_alpha=alpha)
    files["cqt"] = _spectrogram_png(
        spectrogram_db(y, plain), plain, "constant-Q power spectrogram", out / f"{stem}-cqt.png", dpi=dpi
    )
    S = spectrogram_db(y, emph)
    files["cqt-emphasis"] = _spectrogram_png(
        S, emph, f"constant-Q power spectrogram after the emphasis filter (alpha {alpha:g} Hz)",
        out / f"{stem}-cqt-emphasis.png", dpi=dpi,
    )

    db = S if spec == emph else spectrogram_db(y, spec)
    image = np.ascontiguousarray(frame_minmax_uint8(db)[::-1])  # = asc.data.features.image_from_audio(y, spec)
    files["image"] = _spectrogram_png(
        image[::-1].astype(np.float32), spec, f"8-bit network input ({image.shape[0]} x {image.shape[1]})",
        out / f"{stem}-image.png", cmap="gray", label="8-bit level", dpi=dpi,
    )

    sample, start, shown = augmented_sample(image, window, spec.hop_length / spec.sample_rate, size, mask, seed)
    files["augmented"] = _augmented_png(sample, start, shown, spec, mask, out / f"{stem}-augmented.png", dpi)

    if wav:
        e = emphasis(y, sr, alpha)
        e = e / max(float(np.abs(e).max()), 1e-9) * 0.99
        files["emphasis.wav"] = out / f"{stem}-emphasis.wav"
        sf.write(files["emphasis.wav"], e, sr, subtype="PCM_16")
    return files


def _augmented_png(
    sample: np.ndarray, start: float, width: float, spec: FeatureSpec, mask: float, path: Path, dpi: int = DPI
) -> Path:
    """The resized, masked window ``[size, size]`` (row 0 = top = highest frequency) on seconds x Hz axes."""
    size = sample.shape[0]
    t = spec.hop_length / spec.sample_rate
    x_coords = start * t + (np.arange(size) + 0.5) * width * t / size
    # row i of the resized image (bottom-up) samples the original row (i + 0.5) * H / size - 0.5 (bicubic resize)
    rows = (np.arange(size) + 0.5) * spec.height / size - 0.5
    freqs = _frequencies(spec)
    y_coords = np.interp(rows, np.arange(spec.height), freqs)
    fig = Figure(figsize=(5.6, 4.6))
    ax = fig.subplots()
    mesh = librosa.display.specshow(
        sample[::-1], x_coords=x_coords, y_coords=y_coords, x_axis="time",
        y_axis="cqt_hz" if spec.kind == "cqt" else "mel", ax=ax, cmap="gray", vmin=0, vmax=255,
    )
    fig.colorbar(mesh, ax=ax, label="8-bit level")
    ax.set(title=f"training sample: {width * t:.2f} s of the clip, band mask up to {mask:.0%}\n"
                 f"(the reference's crop, resized to {size} x {size})", xlabel="time (s)", ylabel="frequency (Hz)")
    return _save(fig, path, dpi)
