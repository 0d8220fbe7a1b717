"""Messy real-world audio formats: A-law, µ-law and unsigned 8-bit WAV, MP3 data in a ``.wav`` (inside a RIFF/WAVE
container with format tag 0x0055, with and without a Xing header, with chunks after the data, or as a bare MP3
stream), 8-48 kHz, mono and stereo, 0.2 s and 40 s. Each is generated here and either decodes to the source's
rate and length (compared with the known signal) or fails with an :class:`AudioError` naming the file and the
reason: never a library's exception, never a hang, nothing printed by the C decoders."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from asc.data.audio import AudioError, load_mono, mp3_frames

pytestmark = pytest.mark.timeout(120)


def source(sr: int, seconds: float, channels: int) -> np.ndarray:
    """Two tones well below every rate's MP3 low-pass, with a slow envelope: ``[samples, channels]`` float32."""
    t = np.arange(round(sr * seconds)) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 710 * t + 1.0)
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))
    cols = [y, 0.5 * y + 0.1 * np.sin(2 * np.pi * 330 * t)][:channels]
    return np.stack(cols, 1).astype(np.float32)


def best_correlation(ref: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Largest Pearson correlation of ``y`` delayed by 0..max_lag samples against ``ref``, and that lag."""
    best = (-1.0, 0)
    for lag in range(0, max_lag + 1):
        n = min(len(ref), len(y) - lag)
        if n > 100:
            best = max(best, (float(np.corrcoef(ref[:n], y[lag : lag + n])[0, 1]), lag))
    return best


def mp3_bytes(data: np.ndarray, sr: int, vbr: bool = False) -> bytes:
    """An MP3 stream (LAME through libsndfile; its first frame is a Xing/Info header with the exact length)."""
    buf = io.BytesIO()
    kwargs = dict(bitrate_mode="VARIABLE", compression_level=0.6) if vbr else {}
    sf.write(buf, data, sr, format="MP3", subtype="MPEG_LAYER_III", **kwargs)
    return buf.getvalue()


def riff_mp3(stream: bytes, sr: int, channels: int, after: bytes = b"", keep_header: bool = False) -> bytes:
    """A RIFF/WAVE file wrapping MP3 frames as old Windows tools wrote them: ``fmt`` (MPEGLAYER3WAVEFORMAT, tag
    0x0055), ``fact``, ``data`` and optional chunks after it; without the stream's Xing header unless ``keep_header``."""
    frames = mp3_frames(stream)
    if not keep_header:
        frames = frames[1:]  # drop the Xing/Info frame: the length is then unknown to the decoder
    data = b"".join(stream[o : o + n] for o, n in frames)
    fmt = struct.pack("<HHIIHHHHIHHH", 0x0055, channels, sr, len(data) * sr // max(1, 576 * len(frames)), 1, 0,
                      12, 1, 2, frames[0][1], 1, 1393)
    chunks = [(b"fmt ", fmt), (b"fact", struct.pack("<I", 576 * len(frames))), (b"data", data)]
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(c)) + c + b"\0" * (len(c) & 1) for cid, c in chunks) + after
    return b"RIFF" + struct.pack("<I", len(body)) + body


LIST = b"LIST" + struct.pack("<I", 16) + b"INFOISFT" + struct.pack("<I", 4) + b"asc\0"


# -- PCM, A-law, µ-law, unsigned 8 bit -------------------------------------------------------------------------
#: RMS error bound of each encoding relative to the signal's RMS (quantisation: 8-bit companding ~ 1-2 %).
ENCODINGS = {"PCM_16": 3e-4, "PCM_U8": 0.03, "ULAW": 0.03, "ALAW": 0.03, "PCM_24": 1e-5, "FLOAT": 1e-6}


@pytest.mark.parametrize("subtype", sorted(ENCODINGS))
@pytest.mark.parametrize(("sr", "channels", "seconds"), [(8000, 1, 0.2), (11025, 2, 0.2), (22050, 1, 3.0), (48000, 2, 1.0)])
def test_wav_encodings_decode_to_the_source(tmp_path, capfd, subtype, sr, channels, seconds):
    x = source(sr, seconds, channels)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, x, sr, subtype=subtype, format="WAV")
    y, rate = load_mono(path)
    ref = x.mean(1)
    assert rate == sr and len(y) == len(ref) and y.dtype == np.float32
    assert np.sqrt(np.mean((y - ref) ** 2)) < ENCODINGS[subtype] * np.sqrt(np.mean(ref**2))
    assert capfd.readouterr().err == ""


def test_forty_seconds_of_ulaw_stereo_at_44k1(tmp_path):
    x = source(44100, 40.0, 2)
    sf.write(tmp_path / "long.wav", x, 44100, subtype="ULAW")
    y, rate = load_mono(tmp_path / "long.wav", sr=16000)  # and resampled on the way
    assert rate == 16000 and len(y) == 40 * 16000
    ref = load_mono(tmp_path / "long.wav")[0][::441][:1600]  # 100 Hz decimation of the unresampled signal
    assert best_correlation(ref, y[::160][:1600], 0)[0] > 0.9


# -- MP3 in a .wav ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sr", "channels", "seconds"), [(8000, 1, 0.2), (11025, 2, 2.0), (24000, 1, 1.0), (44100, 2, 1.0)])
def test_bare_mp3_stream_named_wav(tmp_path, capfd, sr, channels, seconds):
    x = source(sr, seconds, channels)
    path = tmp_path / "bare.wav"
    path.write_bytes(mp3_bytes(x, sr))
    y, rate = load_mono(path)
    ref = x.mean(1)
    assert rate == sr and len(y) == len(ref)  # the stream's LAME header gives the exact length
    corr, lag = best_correlation(ref, y, 0)
    assert corr > 0.97
    assert capfd.readouterr().err == ""


@pytest.mark.slow
@pytest.mark.parametrize("vbr", [False, True])
@pytest.mark.parametrize(("sr", "channels", "seconds"), [(8000, 1, 0.2), (16000, 1, 3.0), (22050, 2, 1.5), (48000, 2, 1.0)])
def test_mp3_inside_riff_wave(tmp_path, capfd, sr, channels, seconds, vbr):
    """Frames without a Xing header (variable bit rate too, where libsndfile alone stops early) and a LIST
    chunk after the data (which libsndfile alone hands to the MP3 decoder)."""
    x = source(sr, seconds, channels)
    path = tmp_path / "riff-mp3.wav"
    path.write_bytes(riff_mp3(mp3_bytes(x, sr, vbr), sr, channels, after=LIST))
    assert sf.info(str(path)).format == "WAV" and sf.info(str(path)).subtype == "MPEG_LAYER_III"
    y, rate = load_mono(path)
    ref = x.mean(1)
    spf = 1152 if sr >= 32000 else 576
    # every frame decoded: the encoder's delay and padding come along (no LAME header to remove them)
    assert rate == sr and len(ref) <= len(y) <= len(ref) + 3 * spf, (len(y), len(ref))
    corr, lag = best_correlation(ref, y, 3 * spf)
    assert corr > 0.97 and lag < 2 * spf
    assert capfd.readouterr().err == ""


def test_mp3_inside_riff_wave_with_its_xing_header(tmp_path):
    x = source(16000, 1.0, 1)
    path = tmp_path / "riff-xing.wav"
    path.write_bytes(riff_mp3(mp3_bytes(x, 16000), 16000, 1, keep_header=True))
    y, rate = load_mono(path)
    assert rate == 16000 and len(y) == len(x)  # the header's LAME delays are honoured
    assert best_correlation(x[:, 0], y, 0)[0] > 0.97


# -- what cannot be decoded -------------------------------------------------------------------------------------
def _riff(tag: int, data: bytes, channels: int = 1, sr: int = 8000) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, sr, sr, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


NOISE = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")

BROKEN = {
    "mp3-tag-no-frames.wav": (_riff(0x0055, NOISE), "RIFF/WAVE MP3 (format 0x0055), but it holds no MPEG audio frames"),
    "id3-no-frames.wav": (b"ID3\x03\x00\x00\x00\x00\x00\x10" + bytes(16) + NOISE, "MP3 stream, but it holds no MPEG audio frames"),
    "unknown-encoding.wav": (_riff(0x1234, NOISE), "WAV format tag 0x1234"),
    "not-audio.wav": (b"<html><body>404 Not Found</body></html>" * 20, "the file is damaged or not a .wav file"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_undecodable_files_fail_with_the_file_and_the_reason(tmp_path, capfd, name):
    data, reason = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AudioError) as err:
        load_mono(path)
    assert str(err.value).startswith(f"{path}: ") and reason in str(err.value), str(err.value)
    assert capfd.readouterr().err == ""


def test_mp3_cut_short_decodes_what_is_there(tmp_path):
    """An interrupted copy of a bare MP3 stream: the complete frames, no error, no hang."""
    x = source(22050, 2.0, 1)
    whole = mp3_bytes(x, 22050)
    path = tmp_path / "cut.wav"
    path.write_bytes(whole[: len(whole) // 2 + 37])
    y, rate = load_mono(path)
    assert rate == 22050 and 0.3 * len(x) < len(y) < 0.7 * len(x)
