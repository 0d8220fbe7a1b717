"""The paper's figures: each one written, and each one showing something (not a blank plot)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from asc.cli.figures import main
from asc.data.figures import FIGURES, augmented_sample, make_figures


def clip(path, seconds: float = 3.0, sr: int = 44_100):
    """Noise, a hum and a tone switching on and off (stereo, 44.1 kHz: resampled to 48 kHz)."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * 60 * t) + 0.1 * np.sin(2 * np.pi * 1500 * t) * (t % 1 < 0.5)
    sf.write(path, np.stack([y, y], 1).astype(np.float32) * 0.8, sr)
    return path


def plot_area_std(png) -> float:
    """Pixel std of the central part of the figure, where the spectrogram is drawn (axes and colour bar excluded)."""
    import matplotlib.image

    img = matplotlib.image.imread(png)[..., :3].mean(-1)
    h, w = img.shape
    return float(img[int(0.3 * h) : int(0.7 * h), int(0.25 * w) : int(0.6 * w)].std())


@pytest.mark.slow
def test_every_figure_is_written_and_not_blank(tmp_path):
    audio = clip(tmp_path / "scene.wav")
    files = make_figures(audio, tmp_path / "fig", window=1.0, mask=0.2, size=64, wav=True)
    assert set(files) == {*FIGURES, "emphasis.wav"}
    for name in FIGURES:
        assert files[name].name == f"scene-{name}.png"
        assert plot_area_std(files[name]) > 0.03, name
    y, sr = sf.read(files["emphasis.wav"])
    assert sr == 48_000 and y.ndim == 1 and 0.9 < np.abs(y).max() <= 1.0
    assert y.size == pytest.approx(3.0 * 48_000, abs=2)


def test_a_blank_plot_would_be_caught(tmp_path):
    """The check above fails on silence: the spectrogram figures of digital silence are uniform."""
    sf.write(tmp_path / "silence.wav", np.zeros(48_000 * 2, dtype=np.float32), 48_000)
    files = make_figures(tmp_path / "silence.wav", tmp_path / "fig", window=1.0, size=64)
    assert plot_area_std(files["cqt"]) < 0.01


def test_augmented_sample_is_the_references_crop_with_a_visible_band():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (256, 200), dtype=np.uint8)
    hop = 10 / 199  # s per frame: 200 centred frames are a 10 s clip (the length is read from the frame count)
    sample, start, width = augmented_sample(image, window=5.0, hop_seconds=hop, size=64, mask=0.2, seed=3)
    assert sample.shape == (64, 64) and 0 <= start <= 200 - width
    assert width == pytest.approx(256 / 448 * 200)  # a "5 s" window shows 256 of 448 px: 5.71 s of the clip
    masked_rows = int((sample == 127).all(axis=1).sum())
    assert 0.1 * 64 / 2 <= masked_rows <= int(0.2 * 64) + 1  # the reference's rule: 1 to floor(fH) + 1 rows
    again = augmented_sample(image, window=5.0, hop_seconds=hop, size=64, mask=0.2, seed=3)
    assert again[1:] == (start, width) and np.array_equal(again[0], sample)  # seeded


def test_cli_and_bad_input(tmp_path, capsys):
    audio = clip(tmp_path / "scene.flac", seconds=2.0)
    main([str(audio), "--out", str(tmp_path / "out"), "--window", "1", "--size", "32", "--features", "mel"])
    assert len(list((tmp_path / "out").glob("scene-*.png"))) == len(FIGURES)
    sf.write(tmp_path / "short.wav", np.zeros(4800, dtype=np.float32), 48_000)
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "short.wav"), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "short.wav: 0.10 s of audio" in capsys.readouterr().err
    (tmp_path / "bad.ogg").write_bytes(b"OggS not really")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "bad.ogg"), "--out", str(tmp_path / "out")])
    assert "bad.ogg: cannot read audio" in capsys.readouterr().err
