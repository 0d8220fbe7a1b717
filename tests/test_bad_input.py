"""Defined behaviour for each kind of bad input: a clear error naming the file, or (data.on_error=skip) a counted,
logged skip; the cache never holds an image made from non-finite values."""

from __future__ import annotations

import logging

import numpy as np
import torch
import pytest
import soundfile as sf

from asc.data.audio import AudioError, load_mono
from asc.data.cache import FeatureCache
from asc.data.features import FeatureSpec, image_from_audio, image_from_file

SR = 8000
#: The paper's pipeline at 8 kHz (CQT bins up to 2.5 kHz), small hops: fast on tiny clips.
SPEC = FeatureSpec(sample_rate=SR, n_bins=168, hop_length=256)


def tone(seconds: float = 1.0, sr: int = SR, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return np.repeat(y[:, None], channels, axis=1).astype(np.float32)


def wav(path, data: np.ndarray, sr: int = SR, subtype: str = "PCM_24"):
    sf.write(path, data, sr, subtype=subtype)
    return path


@pytest.fixture
def bad_files(tmp_path):
    """One file per kind of unusable input, named after it."""
    good = wav(tmp_path / "good.wav", tone())
    whole = good.read_bytes()
    (tmp_path / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    (tmp_path / "zero.wav").write_bytes(b"")
    wav(tmp_path / "no-samples.wav", np.zeros((0, 2), np.float32))
    wav(tmp_path / "tiny.wav", tone(0.01))  # 80 samples: less than one hop
    nan = tone()
    nan[100, 0] = np.nan
    wav(tmp_path / "nan.wav", nan, subtype="FLOAT")
    inf = tone()
    inf[200, 1] = np.inf
    wav(tmp_path / "inf.wav", inf, subtype="FLOAT")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.wav", "truncated WAV: the header declares"),
        ("corrupt.wav", "the file is damaged or not a .wav file"),
        ("zero.wav", r"empty file \(0 bytes\)"),
        ("no-samples.wav", "the file holds no samples"),
        ("tiny.wav", "only 80 samples, shorter than one hop"),
        ("nan.wav", "NaN or infinite samples"),
        ("inf.wav", "NaN or infinite samples"),
    ],
)
def test_bad_file_raises_naming_it(bad_files, name, message):
    with pytest.raises(AudioError, match=message) as err:
        image_from_file(bad_files / name, SPEC)
    assert str(bad_files / name) in str(err.value)


def test_skip_counts_and_logs_and_keeps_the_cache_clean(bad_files, tmp_path_factory, caplog):
    files = sorted(p for p in bad_files.glob("*.wav"))
    cache = FeatureCache(tmp_path_factory.mktemp("cache"), SPEC)
    with pytest.raises(AudioError):  # on_error=raise: the first bad file stops it, naming it
        cache.build(files, [f.name for f in files], workers=1, on_error="raise", progress=False)
    with caplog.at_level(logging.WARNING, logger="asc.data.cache"):
        report = cache.build(files, [f.name for f in files], workers=1, on_error="skip", progress=False)
    assert len(report.skipped) == 7 and report.computed + report.cached == 1
    assert {name for name, _ in report.skipped} == {str(f) for f in files if f.name != "good.wav"}
    assert "7 file(s) skipped" in caplog.text and "truncated.wav" in caplog.text
    entries = list(cache.dir.glob("*.npy"))
    assert len(entries) == 1 and entries[0].name.startswith("good.")


def test_silence_gives_a_zero_image_not_nan():
    image = image_from_audio(np.zeros(SR, np.float32), SPEC)
    assert image.dtype == np.uint8 and image.shape == (168, SR // 256 + 1) and image.max() == 0


def test_non_finite_spectrogram_is_refused(monkeypatch):
    import asc.data.features

    monkeypatch.setattr(asc.data.features, "spectrogram_db", lambda y, spec, **kw: np.full((4, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_from_audio(np.ones(SR, np.float32), SPEC)


def test_mono_where_stereo_expected(tmp_path):
    mono = wav(tmp_path / "mono.wav", tone(channels=1))
    stereo = wav(tmp_path / "stereo.wav", tone(channels=2))
    # default (features.channels=null): accepted; the mix-down of identical channels is the mono signal
    assert np.array_equal(image_from_file(mono, SPEC), image_from_file(stereo, SPEC))
    strict = FeatureSpec(sample_rate=SR, n_bins=168, hop_length=256, channels=2)
    with pytest.raises(AudioError, match=r"mono.wav: 1 channel\(s\), expected 2"):
        image_from_file(mono, strict)
    image_from_file(stereo, strict)


def test_other_sample_rate_is_resampled_or_refused(tmp_path):
    native = wav(tmp_path / "native.wav", tone(sr=SR))
    other = wav(tmp_path / "other.wav", tone(sr=16000), sr=16000)
    y, sr = load_mono(other, sr=SR)
    assert sr == SR and y.size == SR  # 1 s at the wanted rate
    a, b = image_from_file(native, SPEC), image_from_file(other, SPEC)
    assert a.shape == b.shape  # same frames: the image does not depend on the file's rate
    assert (a.argmax(0) == b.argmax(0)).mean() > 0.9  # the 440 Hz tone on the same row
    refuse = FeatureSpec(sample_rate=SR, n_bins=168, hop_length=256, resample=False)
    with pytest.raises(AudioError, match="other.wav: sample rate 16000 Hz, expected 8000 Hz"):
        image_from_file(other, refuse)


def _folder_with_a_short_clip(root):
    """12 one-second clips (2 labels, given split) and one 0.2 s clip."""
    root.mkdir()
    rows = ["filename,label,split"]
    for i in range(12):
        wav(root / f"{i}.wav", tone(1.0) * (0.5 + 0.04 * i))
        rows.append(f"{i}.wav,{'ab'[i % 2]},{['train', 'train', 'val', 'test'][(i // 2) % 4] if i < 8 else 'train'}")
    wav(root / "short.wav", tone(0.2))
    rows.append("short.wav,a,train")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_recording_shorter_than_a_clip_without_padding(tmp_path, on_error, caplog):
    from asc.data.datamodule import DataConfig, SceneDataModule

    root = _folder_with_a_short_clip(tmp_path / "rec")
    cfg = DataConfig(root=str(root), kind="folder", split="given", cache_dir=str(tmp_path / "cache"),
                     on_error=on_error, extract_workers=1, batch_size=4, clip_seconds=1.0, pad="none")
    dm = SceneDataModule(cfg, SPEC, window=0.5, progress=False)
    dm.prepare_data()  # the short clip has an image; only the clip length does not fit it
    if on_error == "raise":
        with pytest.raises(ValueError, match=r"1 recording\(s\) .* shorter than a clip, data.clip_seconds=1 s .*"
                                             r"short.wav \(0.19 s\).*data.pad=repeat"):
            dm.setup("fit")
        return
    with caplog.at_level(logging.WARNING, logger="asc.data.datamodule"):
        dm.setup("fit")
    assert dm.skipped == 1 and sum(dm.split_sizes.values()) == 12 and dm.counts["skipped"] == 1
    assert "short.wav" in caplog.text and "left out (data.on_error=skip)" in caplog.text


@pytest.mark.parametrize("pad", ["repeat", "silence"])
def test_recording_shorter_than_a_clip_is_padded_and_counted(tmp_path, pad, caplog):
    from asc.data.datamodule import DataConfig, SceneDataModule

    root = _folder_with_a_short_clip(tmp_path / "rec")
    cfg = DataConfig(root=str(root), kind="folder", split="given", cache_dir=str(tmp_path / "cache"),
                     extract_workers=1, batch_size=4, clip_seconds=1.0, pad=pad)
    dm = SceneDataModule(cfg, SPEC, window=0.5, progress=False)
    dm.prepare_data()
    with caplog.at_level(logging.INFO, logger="asc.data.datamodule"):
        dm.setup("fit")
    assert dm.counts == {"padded": 1, "cropped": 0, "skipped": 0, "copies": 0, "repaired": 0} and dm.split_sizes["train"] == 9
    assert (f"1 recording(s) padded (data.pad={pad}), 0 longer ones cut at random in training and covered by several "
            "clips in evaluation, 0 skipped, 0 byte-identical copies of another file") in caplog.text  # the console line says it all
    bank = dm.bank("train")
    short = len(bank) - 1  # recordings are in file-name order: short.wav comes last
    image = bank.clips(torch.tensor([short]), torch.tensor([0]))[0].numpy()
    own = image_from_file(root / "short.wav", SPEC)
    n = own.shape[1]
    assert np.array_equal(image[:, :n], own)  # the recording itself, then the padding
    rest = image[:, n:2 * n] if pad == "repeat" else image[:, n:]
    assert np.array_equal(rest, own[:, : rest.shape[1]]) if pad == "repeat" else not rest.any()
