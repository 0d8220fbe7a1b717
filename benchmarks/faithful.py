"""How far each library default that changed since 2019 moves the network's input, in grey levels (issue #11).

On generated clips in TAU's format (10 s, 48 kHz, 24-bit stereo), the faithful image (``FeatureSpec()``) against
the same image with one step put back as the package computed it before (leave one out), and against the old
image as a whole: reflect vs zero padding, resampy 0.2's kaiser_fast vs soxr_hq per octave, librosa 0.7's vs 0.10's
filter lengths, a = 0.97 vs alpha = 1485 Hz, matplotlib's 8-bit mapping vs truncation. Then the training input:
the batched reference crop against PIL's resize + ``ImageOps.fit`` (same random numbers), for 3 / 5 / 7 s.

    python -m benchmarks.faithful [--clips 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from asc.data import augment
from asc.data.audio import load_mono
from asc.data.features import FeatureSpec, frame_minmax_uint8, spectrogram_db
from benchmarks.common import save, table

SR = 48_000


def clip(path: Path, seed: int) -> None:
    """10 s of pink-ish noise, tones, clicks and a quiet second, as 24-bit stereo at 48 kHz."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = 10 * SR
    t = np.arange(n) / SR
    spec = np.fft.rfft(rng.standard_normal((n, 2)), axis=0)
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f)[:, None], n=n, axis=0)
    x *= 0.2 / np.abs(x).max()
    for f0, a in [(50, 0.05), (440, 0.02), (3000, 0.01), (12000, 0.005)]:
        x += a * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6))[:, None]
    x[rng.integers(0, n, 30)] += 0.3
    x[4 * SR : 5 * SR] *= 0.01
    sf.write(path, np.clip(x, -1, 1), SR, subtype="PCM_24")


def truncated(S: np.ndarray) -> np.ndarray:
    """The package's 8-bit mapping before: per-frame min-max of float32 dB to 0..255, ``astype(uint8)``."""
    S = S.astype(np.float32).astype(np.float64)
    lo = S.min(axis=0, keepdims=True)
    rng = S.max(axis=0, keepdims=True) - lo
    rng[rng == 0] = 1.0
    return np.clip((S - lo) / rng * 255.0, 0, 255).astype(np.uint8)


def image(y: np.ndarray, spec: FeatureSpec, mapping: str = "matplotlib") -> np.ndarray:
    S = spectrogram_db(y, spec, dtype=None)
    return (frame_minmax_uint8(S) if mapping == "matplotlib" else truncated(S))[::-1].astype(np.int64)


OLD = dict(pad_mode="constant", res_type="soxr_hq", bandwidth="librosa", emphasis_alpha=1485.0)
STEPS = {  # step -> (setting put back as before, its label)
    "padding": ({"pad_mode": "constant"}, "reflect (librosa 0.7) vs constant (>= 0.9)"),
    "resampler": ({"res_type": "soxr_hq"}, "resampy 0.2 kaiser_fast vs soxr_hq"),
    "bandwidth": ({"bandwidth": "librosa"}, "filter lengths: librosa 0.7 vs >= 0.10"),
    "emphasis": ({"emphasis_alpha": 1485.0}, "a = 0.97 vs alpha = 1485 Hz (a = 0.96999)"),
}


def feature_differences(clips: list[Path]) -> dict[str, dict[str, float]]:
    out: dict[str, list[np.ndarray]] = {k: [] for k in [*STEPS, "mapping", "all"]}
    new = FeatureSpec()
    for path in clips:
        y, _ = load_mono(path, sr=SR)
        ref = image(y, new)
        for step, (settings, _) in STEPS.items():
            out[step].append(np.abs(image(y, replace(new, **settings)) - ref))
        out["mapping"].append(np.abs(image(y, new, "truncate") - ref))
        out["all"].append(np.abs(image(y, replace(new, **OLD), "truncate") - ref))
    return {k: {"mean": float(np.mean([d.mean() for d in v])), "max": float(max(d.max() for d in v)),
                "changed": float(np.mean([(d > 0).mean() for d in v]))} for k, v in out.items()}


def pil_differences(windows=(3.0, 5.0, 7.0), n: int = 32, seed: int = 0) -> dict[str, dict[str, float]]:
    """The batched reference crop against PIL on 8-bit spectrogram images, training (mask 0.2) and centre views."""
    from PIL import Image, ImageOps

    from asc.data.features import image_from_audio

    rng = np.random.default_rng(seed)
    y = rng.standard_normal(10 * SR).astype(np.float32) * 0.1
    base = image_from_audio(y, FeatureSpec())
    images = np.stack([np.roll(base, int(s), axis=1) for s in rng.integers(0, 469, n)])
    res = {}
    for w in windows:
        resized = augment.reference_width(469, w, 1024 / SR)
        u = rng.random((3, n))
        x = augment.train_batch(torch.from_numpy(images), 0, 224, 0.2, crop="reference", resized=resized,
                                band="reference", u=torch.from_numpy(u))
        ours = ((x[:, 0].double() * augment.IMAGENET_STD[0] + augment.IMAGENET_MEAN[0]) * 255).numpy()
        ev = augment.eval_batch(torch.from_numpy(images), 0, 224, crop="reference", resized=resized)[:, 0]
        ours_ev = ((ev[:, 0].double() * augment.IMAGENET_STD[0] + augment.IMAGENET_MEAN[0]) * 255).numpy()
        refs, refs_ev = [], []
        for i, img in enumerate(images):
            wide = Image.fromarray(img).convert("RGB").resize((int(224 / (w / 10)), 256), Image.BICUBIC)
            a = np.array(ImageOps.fit(wide, (224, 224), Image.BICUBIC, centering=(u[0, i], 0.5)))[..., 0]
            h = 224 * 0.2 * u[1, i]
            ymin = int(np.floor((224 - h) * u[2, i]))
            a = a.copy()
            a[ymin : int(np.floor(h + ymin)) + 1] = 127
            refs.append(a)
            refs_ev.append(np.array(ImageOps.fit(wide, (224, 224), Image.BICUBIC))[..., 0])
        d, de = np.abs(ours - np.stack(refs)), np.abs(ours_ev - np.stack(refs_ev))
        res[f"{w:g}s"] = {"resized": resized, "train_mean": float(d.mean()), "train_max": float(d.max()),
                          "eval_mean": float(de.mean()), "eval_max": float(de.max())}
    return res


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"clip{i}.wav" for i in range(args.clips)]
        for i, path in enumerate(paths):
            clip(path, i)
        features = feature_differences(paths)
    labels = {**{k: v[1] for k, v in STEPS.items()}, "mapping": "matplotlib imsave vs astype(uint8)",
              "all": "old image as a whole"}
    rows = [(f"{k}: {labels[k]}", f"mean {v['mean']:.3f}, max {v['max']:.0f}, {100 * v['changed']:.1f} % of pixels")
            for k, v in features.items()]
    table(f"feature image: faithful vs one step as before, {args.clips} generated clip(s), grey levels", rows)
    pil = pil_differences()
    rows = [(f"{k} window ({v['resized']} px)", f"training (mask 0.2) mean {v['train_mean']:.4f} max {v['train_max']:.4f}; "
                                               f"centre mean {v['eval_mean']:.4f} max {v['eval_max']:.4f}")
            for k, v in pil.items()]
    table("training input: batched crop=reference vs PIL resize + ImageOps.fit, grey levels", rows)
    res = {"features": features, "pil": pil}
    save({"faithful": res}, args.json)
    return res


if __name__ == "__main__":
    main()
