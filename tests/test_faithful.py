"""The faithful preset against independent implementations of the reference's steps (``paper.md`` facts).

Each golden test writes the reference's pipeline out with the libraries the reference used -- librosa, scikit-learn,
matplotlib, PIL -- without the package's feature or augmentation code, and compares grey levels. Where a library
changed a default since 2019 (librosa 0.7's ``cqt``: reflect padding, resampy <= 0.2's ``kaiser_fast`` filter,
filter lengths ``Q = 1 / (2^(1/b) - 1)``), the test restores the 2019 behaviour from its documented parameters.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

SR = 48_000
A = 0.97  # the reference's emphasis coefficient at 48 kHz


def tau_clip(path, seed: int = 0, seconds: float = 10.0) -> None:
    """A clip in TAU's format (48 kHz, 24 bit, stereo): pink-ish noise, tones, clicks, a quiet second."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
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


def reference_png(wav, png, monkeypatch) -> np.ndarray:
    """The reference's image of ``wav``, written as it did (pyplot.imsave) and read back as training did (PIL, RGB)."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import resampy.filters
    import scipy.signal
    from PIL import Image
    from sklearn.preprocessing import MinMaxScaler

    # librosa 0.7's cqt ran resampy <= 0.2, whose kaiser_fast was 16 zero crossings, 2^9 table entries per crossing,
    # a Kaiser window with beta 8.555504641634386, roll-off 0.85 (resampy >= 0.3 ships another filter by that name)
    old = resampy.filters.sinc_window(
        num_zeros=16, precision=9, rolloff=0.85, window=lambda n: scipy.signal.windows.kaiser(n, 8.555504641634386))
    monkeypatch.setitem(resampy.filters.FILTER_CACHE, "kaiser_fast", old)
    # and its filters were Q sr / f long with Q = 1 / (2^(1/24) - 1); librosa >= 0.10 makes them filter_scale / alpha
    r = 2.0 ** (2 / 24)
    filter_scale = (r - 1) / (r + 1) / (2.0 ** (1 / 24) - 1)

    y, sr = librosa.load(wav, sr=None)  # native rate, mono mix-down, float32
    prev = np.concatenate([np.array([2 * y[0] - y[1]], dtype=y.dtype), y[:-1]])  # x[-1] = 2 x[0] - x[1]
    y = (y - A * prev) / (1 - A)  # float32, as numpy computes the formula on float32 samples
    C = librosa.cqt(y, sr=sr, hop_length=1024, fmin=10.0, n_bins=256, bins_per_octave=24, pad_mode="reflect",
                    res_type="kaiser_fast", filter_scale=filter_scale)  # librosa 0.7: auto res_type = kaiser_fast here
    S = librosa.power_to_db(np.abs(C).astype(np.float64), ref=1.0, amin=1e-10, top_db=80)  # 0.7's cqt was complex128
    X = MinMaxScaler(feature_range=(0, 255)).fit_transform(S)  # per column: per time frame
    plt.imsave(png, np.flip(X, axis=0), cmap="gray")
    rgb = np.asarray(Image.open(png).convert("RGB"))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()
    return rgb[..., 0]


def test_image_matches_the_references_png(tmp_path, monkeypatch):
    from asc.data.features import FeatureSpec, image_from_file

    wav = tmp_path / "airport-lyon-1-0-a.wav"
    tau_clip(wav)
    ref = reference_png(wav, tmp_path / "ref.png", monkeypatch).astype(int)
    monkeypatch.undo()  # the package rebuilds the old filter itself
    ours = image_from_file(wav, FeatureSpec()).astype(int)
    assert ours.shape == ref.shape == (256, 469)
    diff = np.abs(ours - ref)
    print(f"image: mean |reference - ours| {diff.mean():.6f}, max {diff.max()} grey levels, {np.count_nonzero(diff)} pixels")
    assert diff.mean() <= 0.05 and diff.max() <= 1, (diff.mean(), diff.max())


# -- training input --------------------------------------------------------------------------------------------
def reference_input(image: np.ndarray, window: float, mask: float, u: tuple[float, float, float]) -> np.ndarray:
    """The reference's training input (grey levels, ``[224, 224]``) from its 8-bit image and three random numbers:
    the crop position and, with ``mask > 0``, the band's height and position."""
    from PIL import Image, ImageOps

    sample_size = window / 10.0
    rgb = Image.fromarray(image).convert("RGB")
    wide = rgb.resize((int(224 / sample_size), rgb.height), Image.BICUBIC)
    out = np.array(ImageOps.fit(wide, (224, 224), Image.BICUBIC, centering=(u[0], 0.5)))
    if mask > 0:
        H = out.shape[0]
        h = H * mask * u[1]
        ymin = math.floor((H - h) * u[2])
        ymax = math.floor(h + ymin)
        out[ymin : ymax + 1] = (127, 127, 127)
    return out[..., 0].astype(np.float64)


def grey_levels(x: torch.Tensor) -> np.ndarray:
    """Network input ``[B, 3, S, S]`` back to grey levels (channel 0), undoing the ImageNet normalisation."""
    from asc.data.augment import IMAGENET_MEAN, IMAGENET_STD

    return ((x[:, 0].double() * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255).numpy()


def spectrogram_like(batch: int, seed: int = 0) -> np.ndarray:
    """8-bit images ``[B, 256, 469]`` with the structure of the paper's: smooth bands, edges, noise."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, 256)[:, None]
    cols = np.linspace(0, 1, 469)[None, :]
    out = []
    for _ in range(batch):
        img = 128 + 90 * np.sin(2 * np.pi * (rng.uniform(1, 6) * rows + rng.uniform(0, 3) * cols))
        img += rng.normal(0, 25, (256, 469))
        img[:, rng.integers(0, 469, 5)] = 255
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.mark.parametrize("window", [3.0, 5.0, 7.0, 9.0])  # 9 s: narrower than high, the square is cut from the middle rows
@pytest.mark.parametrize("mask", [0.0, 0.2])
def test_training_input_matches_pil(window, mask):
    from asc.data import augment

    images = spectrogram_like(6, seed=int(window))
    u = np.random.default_rng(1).random((3, len(images)))
    u[0, :3] = (0.0, 0.5, 1.0)  # both edges and the centre
    resized = augment.reference_width(images.shape[2], window, 1024 / SR)
    assert resized == int(224 / (window / 10))  # 746, 448, 320 px (and 248 for 9 s)
    ours = grey_levels(augment.train_batch(
        torch.from_numpy(images), 0, 224, mask, crop="reference", resized=resized, band="reference",
        u=torch.from_numpy(u)))
    ref = np.stack([reference_input(img, window, mask, tuple(u[:, i])) for i, img in enumerate(images)])
    diff = np.abs(ours - ref)
    print(f"window {window:g} s, mask {mask:g}: mean |PIL - ours| {diff.mean():.6f}, max {diff.max():.6f} grey levels")
    assert diff.mean() <= 0.5
    assert diff.max() <= 1e-3  # PIL's pixels exactly (to float rounding of the normalisation)


@pytest.mark.parametrize("window", [3.0, 5.0, 7.0])
def test_evaluation_input_is_pils_centre(window):
    from asc.data import augment

    images = spectrogram_like(3, seed=10)
    resized = augment.reference_width(images.shape[2], window, 1024 / SR)
    ours = augment.eval_batch(torch.from_numpy(images), 0, 224, crop="reference", resized=resized)
    assert ours.shape == (3, 1, 3, 224, 224)
    ref = np.stack([reference_input(img, window, 0.0, (0.5, 0.5, 0.5)) for img in images])
    assert np.abs(grey_levels(ours[:, 0]) - ref).max() <= 1e-3


def test_reference_band_has_one_to_floor_fh_plus_one_rows():
    from asc.data import augment

    H, mask = 224, 0.1
    u = torch.rand(2, 20_000, generator=torch.Generator().manual_seed(0))
    start, stop = augment.band_rows(H, mask, u)
    rows = stop - start
    assert rows.min() == 1 and rows.max() == math.floor(mask * H) + 1  # the reference never masks 0 rows
    assert start.min() >= 0 and stop.max() <= H
    x = torch.zeros(3, H, 4)
    assert torch.equal(augment.band_mask(x, 0.0, rule="reference"), x)  # no band at all when mask = 0


def test_views_take_the_reference_crop_from_the_windows_seconds():
    """The views resize by the window in seconds (3 s -> 746 px on a 10 s clip, not by its 141 frames)."""
    from asc.data.augment import ViewSpec

    hop = 1024 / 48_000
    views = ViewSpec.for_clip(469, 3.0, hop, crop="reference", band="reference")
    assert views.resized == 746 and views.window_frames == 141
    assert ViewSpec.for_clip(469, 3.0, hop).resized is None  # the exact crop needs no resized width
    with pytest.raises(ValueError, match="longer than the clips"):
        ViewSpec.for_clip(469, 11.0, hop)


# -- split -----------------------------------------------------------------------------------------------------
def test_paper_split_counts_are_the_references():
    """TAU's airport clips per city (128/149/144/145/144/144/156/144/158/128): 859 train, 290 test, 291 validation."""
    import pandas as pd

    from asc.data.scenes import CITIES, SCENES
    from asc.data.splits import make_split

    airport = dict(zip(CITIES, [128, 149, 144, 145, 144, 144, 156, 144, 158, 128], strict=True))
    rows = []
    for scene in SCENES:
        for city in CITIES:
            n = airport[city] if scene == "airport" else 144
            for i in range(n):
                location = f"{city}-{i % 9}"
                rows.append((f"audio/{scene}-{location}-{i}-a.wav", scene, city, location))
    df = pd.DataFrame(rows, columns=["filename", "label", "city", "location"])
    part = make_split(df, "paper", seed=42)
    counts = part[df["label"] == "airport"].value_counts().to_dict()
    assert counts == {"train": 859, "test": 290, "val": 291}
    assert part[df["label"] == "bus"].value_counts().to_dict() == {"train": 860, "test": 290, "val": 290}


# -- frozen backbone -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", ["as constructed", "all set to training"])
def test_frozen_backbone_is_unchanged_by_an_epoch(tmp_path, flags):
    """Lightning 2.6 never calls ``train()`` on the module: it trains it in the mode it finds, and around evaluation
    it restores each submodule's ``.training`` flag directly. The frozen backbone's BatchNorm must still not move:
    parameters and buffers bit-identical after ``Trainer.fit``, whether the module comes as constructed or with
    every flag set to training (what such a restore does to a module captured in training mode)."""
    import lightning as L

    from asc.data.datamodule import TensorBatches, as_batch
    from asc.model.module import SceneClassifier

    torch.manual_seed(0)
    module = SceneClassifier(["a", "b"], dict(backbone="small_cnn", pretrained=False, freeze=True, hidden=[8],
                                              channels=[4, 8]), views=dict(window_frames=20, size=32),
                             clip=dict(frames=40, seconds=0.85, pad="none"))
    if flags == "all set to training":
        for m in module.modules():
            m.training = True
    before = {k: v.clone() for k, v in module.net.backbone.state_dict().items()}
    assert any("running_mean" in k for k in before)
    data = TensorBatches(torch.randint(0, 256, (16, 64, 40), dtype=torch.uint8), torch.randint(0, 2, (16,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8, collate_fn=as_batch)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(module, loader)
    assert trainer.global_step == 2
    after = module.net.backbone.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{k} changed during training"
    assert not any(m.training for m in module.net.backbone.modules())
    assert module.net.head.training  # the head itself trains as usual


# -- cache key -------------------------------------------------------------------------------------------------
def test_feature_key_names_the_library_versions(monkeypatch):
    import importlib.metadata

    from asc.data import features
    from asc.data.features import FeatureSpec

    spec = FeatureSpec()
    assert spec.libraries()["librosa"] == importlib.metadata.version("librosa") and "resampy" in spec.libraries()
    key = spec.key()
    real = importlib.metadata.version
    monkeypatch.setattr(features, "version", lambda name: "0.7.2" if name == "librosa" else real(name))
    assert spec.key() != key
