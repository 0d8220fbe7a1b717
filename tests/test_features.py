import numpy as np
import pytest
import soundfile as sf

from asc.data.features import FeatureSpec, emphasis, emphasis_coefficient, frame_minmax_uint8, image_from_audio, image_from_file


def test_emphasis_coefficient_is_the_references_097_at_48k():
    assert emphasis_coefficient(48_000, 1485.0) == pytest.approx(0.97, abs=1e-4)  # paper.md's rounded alpha
    assert emphasis_coefficient(48_000, FeatureSpec().emphasis_alpha) == pytest.approx(0.97, abs=1e-15)  # the default


def test_emphasis_gain_is_one_at_dc_and_36db_at_nyquist():
    sr, alpha = 48_000, 1485.0
    a = emphasis_coefficient(sr, alpha)
    dc = emphasis(np.full(1000, 0.25), sr, alpha)
    np.testing.assert_allclose(dc, 0.25, rtol=1e-5)  # including the first sample (x[-1] = 2 x[0] - x[1])
    nyquist = emphasis(np.tile([0.1, -0.1], 500), sr, alpha)
    gain = np.abs(nyquist[1:]).mean() / 0.1
    assert gain == pytest.approx((1 + a) / (1 - a), rel=1e-4)
    assert 20 * np.log10(gain) == pytest.approx(36.3, abs=0.1)


def test_emphasis_first_sample_rule():
    x = np.array([1.0, 3.0, 2.0])
    a = emphasis_coefficient(48_000, 1485.0)
    y = emphasis(x, 48_000, 1485.0)
    assert y[0] == pytest.approx((1.0 - a * (2 * 1.0 - 3.0)) / (1 - a), rel=1e-5)
    assert y[2] == pytest.approx((2.0 - a * 3.0) / (1 - a), rel=1e-5)


def test_frame_minmax_scales_each_frame_over_frequency():
    S = np.array([[0.0, -80.0, 5.0], [10.0, -40.0, 5.0], [20.0, 0.0, 5.0]])
    img = frame_minmax_uint8(S)
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img[:, 0], [0, 128, 255])  # as pyplot.imsave: 127.5 / 255 * 256 -> index 128
    np.testing.assert_array_equal(img[:, 1], [0, 128, 255])
    np.testing.assert_array_equal(img[:, 2], [0, 0, 0])  # a constant frame maps to 0, never NaN


def test_frame_minmax_maps_through_matplotlibs_gray_table():
    """Index ``floor(256 x / 255)``, then the gray table, which holds 32 at index 33 (its truncation quirk)."""
    levels = np.array([0.0, 33.5, 34.5, 127.6, 254.9, 256.0]) * 255 / 256  # indices 0, 33, 34, 127, 254, 255
    img = frame_minmax_uint8(np.column_stack([levels, levels]))[:, 0]
    np.testing.assert_array_equal(img, [0, 32, 34, 127, 254, 255])


def test_cqt_image_of_a_tau_format_clip(tmp_path):
    """10 s, 48 kHz, stereo, 24 bit -> the paper's 256 x 469 uint8 image, low frequencies at the bottom."""
    sr = 48_000
    t = np.arange(10 * sr) / sr
    left = 0.3 * np.sin(2 * np.pi * 100 * t)  # a low tone: energy in the lower bins
    stereo = np.stack([left, left], axis=1) + 1e-3 * np.random.default_rng(0).standard_normal((t.size, 2))
    path = tmp_path / "airport-lyon-1-2-a.wav"
    sf.write(path, stereo, sr, subtype="PCM_24")
    img = image_from_file(path, FeatureSpec())
    assert img.shape == (256, 469) and img.dtype == np.uint8
    # the 100 Hz tone is the brightest row: bin 24*log2(100/10) = 80 from the bottom, i.e. row 255 - 80
    rows = img[:, 50:400].astype(float).mean(axis=1)
    assert int(np.argmax(rows)) == 255 - 80
    assert rows[255 - 80] > 200


def test_mel_alternative_has_the_same_image_pipeline():
    sr = 48_000
    y = np.random.default_rng(1).standard_normal(2 * sr).astype(np.float32) * 0.1
    img = image_from_audio(y, FeatureSpec(kind="mel", emphasis_alpha=None, magnitude=False))
    assert img.shape == (256, FeatureSpec().frames(2.0)) and img.dtype == np.uint8
    assert img.max() == 255 and img.min() == 0


def test_spec_rejects_bins_above_nyquist():
    with pytest.raises(ValueError, match="reach Nyquist"):
        FeatureSpec(sample_rate=32_000)


def test_spec_key_changes_with_any_setting():
    assert FeatureSpec().key() != FeatureSpec(hop_length=512).key()
    assert FeatureSpec().key() == FeatureSpec().key()


@pytest.mark.slow
@pytest.mark.parametrize("path", ["2019 resampler", "librosa.cqt with kaiser_fast"])
def test_resampy_is_safe_from_threads_when_librosa_holds_it_lazily(path, monkeypatch):
    """librosa registers resampy as a lazy module; threads touching it at once saw it half-loaded ("module 'resampy'
    has no attribute 'resample'", in the extraction threads of a joblib-launched job). Five fresh lazy loads, four
    threads each, through both paths that reach resampy (without the lock the librosa path failed in 3 runs of 3)."""
    import sys
    import threading

    import lazy_loader
    import librosa.core.audio

    from asc.data import features

    spec = FeatureSpec(sample_rate=8000, n_bins=48, hop_length=256, res_type="kaiser_fast")  # 2 octaves: 3 resamplings
    noise = np.random.default_rng(0).standard_normal(4 * 8000).astype(np.float32)
    saved = {k: v for k, v in sys.modules.items() if k == "resampy" or k.startswith("resampy.")}
    errors: list[str] = []

    def work():
        try:
            if path == "2019 resampler":
                features._downsample_2019(noise[:4000], 2)
            else:
                features.constant_q(noise, spec)
        except Exception as err:  # noqa: BLE001 - collected, asserted below
            errors.append(repr(err))

    try:
        for _ in range(5):
            for k in saved:
                sys.modules.pop(k, None)
            monkeypatch.setattr(librosa.core.audio, "resampy", lazy_loader.load("resampy"))  # as `import librosa` does
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.modules.update(saved)
    assert not errors, errors[:2]
