"""``features.backend=torch``: the paper's constant-Q image as batched tensor ops, against the faithful librosa path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from asc.data.features import FeatureSpec, audio_from_file, emphasis, image_from_audio, image_from_file, torch_transform
from test_faithful import tau_clip

TORCH = FeatureSpec(backend="torch")


def grey_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, int, float]:
    """Mean and largest absolute grey-level difference, and the share of pixels that differ."""
    d = np.abs(a.astype(int) - b.astype(int))
    return float(d.mean()), int(d.max()), float((d > 0).mean())


def close_to_faithful(image: np.ndarray, faithful: np.ndarray) -> bool:
    """The issue's bound (mean <= 0.5 levels) and the one the implementation meets (rounding only: mean <= 0.01
    levels, at most 0.1 % of the pixels moved, by at most 3 levels -- a level next to one of the gray table's
    missing levels moves by 2)."""
    mean, largest, moved = grey_difference(image, faithful)
    return mean <= 0.5 and mean <= 0.01 and moved <= 1e-3 and largest <= 3


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    wav = tmp_path_factory.mktemp("tau") / "airport-lyon-1-0-a.wav"
    tau_clip(wav)  # 10 s, 48 kHz, 24-bit stereo, as TAU
    return wav, image_from_file(wav, FeatureSpec())


def test_torch_image_matches_the_faithful_image_of_a_tau_clip(clip):
    wav, faithful = clip
    image = image_from_file(wav, TORCH)
    assert image.shape == faithful.shape == (256, 469) and image.dtype == np.uint8
    mean, largest, moved = grey_difference(image, faithful)
    print(f"torch vs librosa: mean {mean:.5f} levels, max {largest}, {moved:.5%} of the pixels differ")
    assert close_to_faithful(image, faithful)


def test_the_bound_fails_for_a_wrong_transform(clip):
    """The check has teeth: zero padding (librosa >= 0.9's default) instead of reflect moves the image too far."""
    wav, faithful = clip
    wrong = image_from_file(wav, dataclasses.replace(TORCH, pad_mode="constant"))
    assert not close_to_faithful(wrong, faithful)
    assert grey_difference(wrong, faithful)[0] > 0.5


@pytest.mark.slow
def test_a_batch_gives_the_images_of_its_clips_one_by_one(clip):
    wav, _ = clip
    y = emphasis(audio_from_file(wav, TORCH), TORCH.sample_rate, TORCH.emphasis_alpha)
    ys = torch.from_numpy(np.stack([y, 0.5 * y[::-1].copy()]))
    batch, finite = torch_transform(TORCH, "cpu")(ys)
    assert finite.tolist() == [True, True]
    for i in range(2):
        assert np.array_equal(batch[i].numpy(), torch_transform(TORCH, "cpu")(ys[i : i + 1])[0][0].numpy())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:n_fft=.* is too large")  # librosa, on the lowest octaves of short clips
@pytest.mark.parametrize("pad_mode", ["reflect", "constant", "edge"])
@pytest.mark.parametrize("samples", [256, 3000, 20011])  # down to one hop: the padding mirrors more than the signal
def test_short_clips_and_other_settings_match_too(pad_mode, samples):
    spec = FeatureSpec(sample_rate=8000, n_bins=168, hop_length=256, pad_mode=pad_mode)
    y = (np.random.default_rng(samples).standard_normal(samples) * 0.1).astype(np.float32)
    faithful = image_from_audio(y, spec)
    image = image_from_audio(y, dataclasses.replace(spec, backend="torch"))
    assert image.shape == faithful.shape
    assert grey_difference(image, faithful)[0] <= 0.01


@pytest.mark.parametrize("settings, plan", [
    (dict(n_bins=120), [(32, 32), (2, 16), (2, 8), (2, 4), (2, 2)]),  # 5 octaves: librosa 0.7 first downsamples by 32
    (dict(sample_rate=36000), [(1, 1024), (1, 1024)] + [(2, 2**k) for k in range(9, 0, -1)]),  # top band past 0.85 Nyquist
])
@pytest.mark.slow
def test_librosa_07s_other_octave_plans_match_too(settings, plan):
    spec = FeatureSpec(**settings)
    torch_spec = dataclasses.replace(spec, backend="torch")
    assert [(f, hop) for f, _, hop, _ in torch_transform(torch_spec, "cpu").plan] == plan
    y = (np.cumsum(np.random.default_rng(1).standard_normal(3 * spec.sample_rate + 17)) * 1e-3).astype(np.float32)
    assert grey_difference(image_from_audio(y, torch_spec), image_from_audio(y, spec))[0] <= 0.01


def test_silence_is_black_and_non_finite_audio_is_refused():
    assert not image_from_audio(np.zeros(48_000, dtype=np.float32), TORCH).any()
    y = np.zeros(48_000, dtype=np.float32)
    y[100] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_from_audio(y, TORCH)


def test_backend_is_part_of_the_cache_key_and_checked():
    assert FeatureSpec().key() != TORCH.key()
    assert "torch" in TORCH.libraries() and "torch" not in FeatureSpec().libraries()
    with pytest.raises(ValueError, match="backend"):
        FeatureSpec(backend="cuda")
    with pytest.raises(ValueError, match="backend=librosa"):
        FeatureSpec(kind="mel", backend="torch")
    with pytest.raises(ValueError, match="backend=librosa"):
        FeatureSpec(backend="torch", pad_mode="symmetric")


@pytest.mark.filterwarnings("ignore:n_fft=.* is too large")
def test_batched_cache_build_matches_the_librosa_cache(tmp_path):
    """Decoding on 2 worker processes, clips of two lengths, a bad file skipped; then a rerun computes nothing."""
    from asc.data.cache import FeatureCache

    spec = FeatureSpec(sample_rate=8000, n_bins=168, hop_length=256)
    files = []
    for i in range(7):
        y = np.random.default_rng(i).standard_normal((8000 * (2 if i % 3 else 3), 2)).astype(np.float32) * 0.1
        sf.write(tmp_path / f"clip{i}.wav", y, 8000, subtype="PCM_24")
        files.append(tmp_path / f"clip{i}.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00")
    files.append(tmp_path / "bad.wav")
    names = [f.name for f in files]
    cache = FeatureCache(tmp_path / "cache", dataclasses.replace(spec, backend="torch"))
    report = cache.build(files, names, workers=2, on_error="skip", progress=False, device="cpu", batch_size=2)
    assert report.computed == 7 and [s[0] for s in report.skipped] == [str(tmp_path / "bad.wav")]
    reference = FeatureCache(tmp_path / "cache", spec)
    assert reference.dir != cache.dir
    reference.build(files[:7], names[:7], workers=1, progress=False)
    for f, n in zip(files[:7], names[:7], strict=True):
        assert cache.entry(f, n).name == reference.entry(f, n).name
        assert grey_difference(np.load(cache.entry(f, n)), np.load(reference.entry(f, n)))[0] <= 0.01
    again = cache.build(files[:7], names[:7], workers=2, progress=False, device="cpu")
    assert again.computed == 0 and again.cached == 7
    with pytest.raises(Exception, match="bad.wav"):
        FeatureCache(tmp_path / "cache2", cache.spec).build(files, names, workers=1, progress=False, device="cpu")

