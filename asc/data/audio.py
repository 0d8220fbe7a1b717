"""Reading audio files into mono float32 signals, with errors that name the file.

Real collections hold more than TAU's PCM: A-law, µ-law and unsigned 8-bit WAV (libsndfile reads them), and MP3
data in a ``.wav`` file, either inside a RIFF/WAVE container (format tag 0x0055) or as a bare MP3 stream. libsndfile
decodes MP3 too, but takes the length of a stream without a Xing/Info header (variable bit rate written by old tools)
from its first frame's bit rate and silently stops there (a sixth of the audio lost in real files), and feeds
mpg123 whatever follows the ``data`` chunk. So MPEG audio is read here: its frames are cut out (and counted), a Xing
header stating their number is put in front when the stream has none, and libsndfile decodes that from memory.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf


#: Extensions treated as audio in a folder (anything libsndfile reads, plus MP3 through libsndfile >= 1.1).
#: Sample types of a raw PCM stream (``asc predict -``, little-endian).
PCM_DTYPES = ("int16", "int32", "float32", "float64")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".rf64")


class AudioError(ValueError):
    """A file that cannot be used as audio: unreadable, empty, non-finite, or at a refused sample rate."""


#: Formats libsndfile decodes itself: a file of these kinds that it cannot open is broken, not exotic.
_SNDFILE_SUFFIXES = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".w64", ".rf64")


def wav_truncation(path: str | Path) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF/WAVE file's ``data`` chunk when the file is shorter than its
    header says (an interrupted download or unzip), else ``None``. libsndfile silently reads such a file's
    remainder, so this is checked separately. Reads only the chunk headers."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, length = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                present = size - pos - 8
                # 0 and 0xFFFFFFFF mark streamed / RF64-style files whose length is not in this header
                return (length, present) if 0 < length < 0xFFFFFFFF and present < length else None
            pos += 8 + length + (length & 1)
    return None


# -- MPEG audio (MP3) ---------------------------------------------------------------------------------------
#: kbit/s by bit-rate index: MPEG-1 layer III, and MPEG-2 / 2.5 layer III.
_MP3_KBPS = {1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
#: Hz by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5) and rate index.
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
#: WAVE format tags of MPEG audio (layer III; layers I/II).
WAVE_FORMAT_MPEGLAYER3, WAVE_FORMAT_MPEG = 0x0055, 0x0050


def _mp3_frame(buf: bytes, i: int) -> tuple[int, int] | None:
    """``(bytes, samples)`` of the MPEG layer III frame whose header starts at ``buf[i]``, or None."""
    if i + 4 > len(buf):
        return None
    h = struct.unpack_from(">I", buf, i)[0]
    version, layer, rate_i, kbps_i = (h >> 19) & 3, (h >> 17) & 3, (h >> 10) & 3, (h >> 12) & 15
    if h >> 21 != 0x7FF or version == 1 or layer != 1 or rate_i == 3 or kbps_i in (0, 15):
        return None
    bits = _MP3_KBPS[1 if version == 3 else 2][kbps_i] * 1000
    per = 144 if version == 3 else 72  # bytes per (bit/s / Hz): 1152 or 576 samples per frame, / 8
    return per * bits // _MP3_RATES[version][rate_i] + ((h >> 9) & 1), 8 * per


def mp3_frames(buf: bytes) -> list[tuple[int, int]]:
    """``(offset, bytes)`` of the MPEG layer III frames in ``buf``: the first header followed by another
    (or ending the buffer), then frame after frame, skipping junk between them (resynchronising as decoders do)."""
    frames: list[tuple[int, int]] = []
    i = 0
    while i + 4 <= len(buf):
        f = _mp3_frame(buf, i)
        if f is None or i + f[0] > len(buf):
            i += 1
            continue
        follows = i + f[0] + 4 > len(buf) or _mp3_frame(buf, i + f[0]) is not None
        if not frames and not follows:  # a lone sync pattern in junk, not the first frame
            i += 1
            continue
        frames.append((i, f[0]))
        i += f[0]
    return frames


def _has_vbr_header(buf: bytes, offset: int) -> bool:
    """Whether the frame at ``offset`` is a Xing/Info/VBRI header frame (which states the frame count)."""
    head = buf[offset : offset + 64]
    return any(tag in head for tag in (b"Xing", b"Info", b"VBRI"))


def _xing_frame(header: int, n_frames: int, n_bytes: int) -> bytes:
    """A Xing header frame (no audio) with ``n_frames`` and ``n_bytes``, in the format of the frame ``header``."""
    version, rate_i, mono = (header >> 19) & 3, (header >> 10) & 3, (header >> 6) & 3 == 3
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)  # side information bytes
    per = 144 if version == 3 else 72
    for kbps_i in range(1, 15):  # the lowest bit rate whose frame holds the header
        size = per * _MP3_KBPS[1 if version == 3 else 2][kbps_i] * 1000 // _MP3_RATES[version][rate_i]
        if size >= 4 + side + 16:
            break
    h = (header & ~((0xF << 12) | (1 << 9))) | (kbps_i << 12) | (1 << 16)  # that bit rate, no padding, no CRC
    body = struct.pack(">I", h) + bytes(side) + b"Xing" + struct.pack(">III", 3, n_frames, n_bytes + size)
    return body + bytes(size - len(body))


def mpeg_payload(path: Path) -> tuple[bytes, str] | None:
    """The MPEG audio bytes of ``path`` and where they were found, if it holds MP3 data: the ``data`` chunk of a
    RIFF/WAVE file with format tag 0x0055, or a bare MP3 stream (an ID3v2 tag or a frame header at the start)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            tag, data = None, None
            while (chunk := f.read(8)) and len(chunk) == 8:
                cid, length = struct.unpack("<4sI", chunk)
                if cid == b"fmt ":
                    body = f.read(length)
                    tag = struct.unpack_from("<H", body)[0] if len(body) >= 2 else None
                    if tag != WAVE_FORMAT_MPEGLAYER3:
                        return None
                elif cid == b"data":
                    data = f.read(length)
                    break
                else:
                    f.seek(length, 1)
                if length & 1:
                    f.seek(1, 1)
            return (data, "RIFF/WAVE MP3 (format 0x0055)") if tag == WAVE_FORMAT_MPEGLAYER3 and data is not None else None
        if head[:3] == b"ID3" or _mp3_frame(head, 0) is not None:
            f.seek(0)
            return f.read(), "MP3 stream"
    return None


def _read_mpeg(path: Path, payload: bytes, where: str) -> tuple[np.ndarray, int]:
    """Decode MPEG layer III bytes (see the module's docstring): ``([samples, channels] float32, rate)``."""
    start = 0
    if payload[:3] == b"ID3" and len(payload) >= 10:  # ID3v2 tag: 10-byte header + syncsafe size (+ footer)
        size = sum((b & 0x7F) << (7 * (3 - k)) for k, b in enumerate(payload[6:10]))
        start = 10 + size + (10 if payload[5] & 0x10 else 0)
    frames = mp3_frames(payload[start:])
    if not frames:
        raise AudioError(f"{path}: {where}, but it holds no MPEG audio frames; the file is damaged")
    first, (last, last_size) = frames[0][0], frames[-1]
    stream = payload[start + first : start + last + last_size]
    if not _has_vbr_header(stream, 0):  # libsndfile would guess the length from the first frame's bit rate
        stream = _xing_frame(struct.unpack_from(">I", stream)[0], len(frames), len(stream)) + stream
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, sr = sf.read(io.BytesIO(stream), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{path}: {where}, which cannot be decoded ({err}); the file is damaged") from err
    return data, int(sr)


#: WAVE format tags libsndfile decodes: PCM, MS ADPCM, float, A-law, µ-law, IMA ADPCM, GSM 6.10, G.721, MP3, extensible.
_SNDFILE_WAVE_TAGS = {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040, 0x0055, 0xFFFE}


def wav_format_tag(path: str | Path) -> int | None:
    """The format tag of a RIFF/WAVE file's ``fmt`` chunk (1: PCM, 6: A-law, 0x55: MP3, ...); None if not a WAV."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while (chunk := f.read(8)) and len(chunk) == 8:
            cid, length = struct.unpack("<4sI", chunk)
            if cid == b"fmt ":
                body = f.read(2)
                return struct.unpack("<H", body)[0] if len(body) == 2 else None
            f.seek(length + (length & 1), 1)
    return None


#: Lowest sample rate accepted (Hz): scenes are recorded at 8 kHz and above. A damaged WAV header that said 1 Hz made
#: 36 KB of samples a 3.3-hour recording, resampled and transformed for minutes (the reliability suite found it).
MIN_SAMPLE_RATE = 4000


def load_mono(
    path: str | Path, sr: int | None = None, resample: bool = True, channels: int | None = None
) -> tuple[np.ndarray, int]:
    """Read ``path`` and mix it down to mono (mean of channels).

    Args:
        path: WAV (PCM, float, A-law, µ-law, unsigned 8-bit, MP3 inside), FLAC, OGG, MP3 (anything libsndfile
            reads; other formats fall back to audioread).
        sr: wanted rate in Hz; ``None`` keeps the file's rate.
        resample: if False, a file at a rate other than ``sr`` raises :class:`AudioError`.
        channels: expected channel count (TAU: 2); a file with another count raises :class:`AudioError`.
            ``None`` accepts any count (a mono file then gives the same signal as a stereo file holding it
            twice).

    Returns:
        ``(y, sr)`` with ``y`` a float32 array ``[samples]`` in [-1, 1].

    Raises:
        AudioError: naming the file, for a missing, empty (0 bytes), truncated or undecodable file, one
        without samples, with NaN/inf samples, or with a refused sample rate or channel count.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes); download or copy it again")
    cut = wav_truncation(path)
    if cut is not None:
        raise AudioError(
            f"{path}: truncated WAV: the header declares {cut[0]} bytes of audio, the file holds {cut[1]} "
            "(an interrupted download or unzip?); replace the file"
        )
    mpeg = mpeg_payload(path)
    try:
        if mpeg is not None:
            data, file_sr = _read_mpeg(path, *mpeg)
        else:
            data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
        tag = wav_format_tag(path)
        if tag is not None and tag not in _SNDFILE_WAVE_TAGS:
            raise AudioError(
                f"{path}: cannot read audio: WAV format tag 0x{tag:04x} is an encoding libsndfile does not decode "
                "(it reads PCM, float, A-law, µ-law, ADPCM, GSM 6.10 and MP3); convert the file, e.g. to PCM WAV"
            ) from err
        if path.suffix.lower() in _SNDFILE_SUFFIXES:
            raise AudioError(f"{path}: cannot read audio, the file is damaged or not a {path.suffix} file ({err})") from err
        data, file_sr = _read_fallback(path, err)
    except (RuntimeError, OSError) as err:
        raise AudioError(f"{path}: cannot read audio ({err})") from err
    if data.size == 0:
        raise AudioError(f"{path}: the file holds no samples")
    if file_sr < MIN_SAMPLE_RATE:
        raise AudioError(
            f"{path}: its header says {file_sr} Hz, below the {MIN_SAMPLE_RATE} Hz of any recording this project "
            f"reads (a damaged header? {data.shape[0]} samples would last {data.shape[0] / max(file_sr, 1):.0f} s); "
            "replace the file"
        )
    if channels is not None and data.shape[1] != channels:
        raise AudioError(
            f"{path}: {data.shape[1]} channel(s), expected {channels} (set features.channels=null to accept "
            "any count; channels are mixed down to mono)"
        )
    y = data.mean(axis=1) if data.ndim == 2 else data
    if not np.isfinite(y).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    if sr is not None and file_sr != sr:
        if not resample:
            raise AudioError(
                f"{path}: sample rate {file_sr} Hz, expected {sr} Hz (set features.resample=true to resample)"
            )
        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr)
        file_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(file_sr)


def _read_fallback(path: Path, first_error: Exception) -> tuple[np.ndarray, int]:
    """Formats libsndfile does not read: try librosa/audioread before giving up."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, file_sr = librosa.load(path, sr=None, mono=False)
    except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable"
        raise AudioError(
            f"{path}: cannot read audio ({first_error}; fallback decoder: {str(err) or type(err).__name__})"
        ) from err
    y = np.atleast_2d(y).T  # [samples, channels]
    return y.astype(np.float32), int(file_sr)


def audio_files(folder: str | Path) -> list[Path]:
    """Every audio file under ``folder`` (recursively, by :data:`AUDIO_EXTENSIONS`), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
