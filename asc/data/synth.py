"""Synthetic acoustic scenes written in the exact TAU 2019 development layout.

The generator is the project's embedded dataset: the demo and the tests run on it, and the real loader
reads it unchanged. Each clip is a procedural mixture of the ingredients that make real scenes differ --
coloured background noise, engine/machinery harmonics, transient events, speech-like babble, passing
vehicles, bird chirps, chimes and music -- with per-scene recipes that overlap, per-location signatures
(so a location can leak between splits exactly as in TAU) and per-clip randomisation of levels, timing
and pitch. The task is learnable but not trivial.

Everything is deterministic from ``seed``: clip *i* of location *l* always sounds the same.

Layout written (as Zenodo's archives unpack)::

    root/
      audio/<scene>-<city>-<location>-<segment>-a.wav
      meta.csv                         # tab-separated: filename scene_label identifier source_label
      evaluation_setup/fold1_train.csv # filename scene_label   (location-disjoint from evaluate)
      evaluation_setup/fold1_evaluate.csv
      evaluation_setup/fold1_test.csv  # filename
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from joblib import Parallel, cpu_count, delayed
from tqdm.auto import tqdm

from asc.data.scenes import CITIES, SCENES

# Mean recipe per scene: level in dB of each ingredient (-inf = absent) and its main parameters.
# Recipes overlap on purpose (bus/tram/metro share engines, squares/streets share babble and traffic).
_RECIPES: dict[str, dict[str, float]] = {
    #                 noise  slope  engine  f0   events rate  babble vehicles birds chime music
    "airport": dict(noise=-30, slope=1.0, engine=-38, f0=110, events=-34, rate=0.8, babble=-24, vehicles=-99, birds=-99, chime=-30, music=-99),
    "bus": dict(noise=-24, slope=1.6, engine=-22, f0=45, events=-36, rate=0.5, babble=-32, vehicles=-99, birds=-99, chime=-99, music=-99),
    "metro": dict(noise=-20, slope=1.3, engine=-24, f0=95, events=-30, rate=1.5, babble=-36, vehicles=-99, birds=-99, chime=-40, music=-99),
    "metro_station": dict(noise=-28, slope=1.2, engine=-40, f0=80, events=-32, rate=0.8, babble=-28, vehicles=-30, birds=-99, chime=-32, music=-99),
    "park": dict(noise=-36, slope=1.1, engine=-99, f0=60, events=-40, rate=0.3, babble=-42, vehicles=-40, birds=-28, chime=-99, music=-99),
    "public_square": dict(noise=-32, slope=1.0, engine=-99, f0=60, events=-34, rate=0.8, babble=-28, vehicles=-34, birds=-38, chime=-99, music=-99),
    "shopping_mall": dict(noise=-32, slope=0.9, engine=-42, f0=120, events=-36, rate=0.8, babble=-25, vehicles=-99, birds=-99, chime=-40, music=-30),
    "street_pedestrian": dict(noise=-30, slope=1.1, engine=-99, f0=60, events=-30, rate=1.6, babble=-27, vehicles=-33, birds=-44, chime=-99, music=-42),
    "street_traffic": dict(noise=-26, slope=1.4, engine=-32, f0=70, events=-38, rate=0.4, babble=-40, vehicles=-22, birds=-99, chime=-99, music=-99),
    "tram": dict(noise=-24, slope=1.4, engine=-28, f0=65, events=-28, rate=1.2, babble=-34, vehicles=-99, birds=-99, chime=-36, music=-99),
}


@dataclass
class SynthConfig:
    """What to generate. Defaults give TAU's format (48 kHz, 2 channels, 24 bit, 10 s clips)."""

    cities: tuple[str, ...] = CITIES[:4]
    locations_per_city: int = 3
    segments_per_location: int = 3
    duration: float = 10.0
    sample_rate: int = 48_000
    channels: int = 2
    subtype: str = "PCM_24"
    seed: int = 0
    scenes: tuple[str, ...] = field(default=SCENES)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scenes) - set(_RECIPES))
        if unknown:
            raise ValueError(f"synthetic scenes: unknown scene(s) {unknown}; known: {sorted(_RECIPES)}")
        if self.locations_per_city < 1 or self.segments_per_location < 1:
            raise ValueError("synthetic scenes: locations_per_city and segments_per_location must be >= 1")
        if self.duration <= 0 or self.sample_rate <= 0 or self.channels < 1:
            raise ValueError("synthetic scenes: duration, sample_rate and channels must be positive")
        if self.subtype not in sf.available_subtypes("WAV"):
            raise ValueError(f"synthetic scenes: subtype {self.subtype!r} is not a WAV subtype")

    @property
    def n_clips(self) -> int:
        return len(self.scenes) * len(self.cities) * self.locations_per_city * self.segments_per_location


def _rng(*keys: object) -> np.random.Generator:
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _db(level: float) -> float:
    return 0.0 if level <= -90 else 10.0 ** (level / 20.0)


def _coloured_noise(rng: np.random.Generator, n: int, slope: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**slope, unit RMS."""
    m = n // 2 + 1
    f = np.arange(m, dtype=float)
    f[0] = 1.0
    spec = (rng.standard_normal(m) + 1j * rng.standard_normal(m)) * f ** (-slope / 2.0)
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """Gaussian noise band-limited to [lo, hi] Hz, unit RMS (drawn directly in the frequency domain)."""
    f = np.fft.rfftfreq(n, 1.0 / sr)
    band = (f >= lo) & (f <= hi)
    spec = np.zeros(f.size, dtype=np.complex128)
    k = int(band.sum())
    spec[band] = rng.standard_normal(k) + 1j * rng.standard_normal(k)
    y = np.fft.irfft(spec, n)
    return y / (np.std(y) + 1e-12)


def _harmonics(rng: np.random.Generator, t: np.ndarray, sr: int, f0: float, n: int = 8) -> np.ndarray:
    """Engine/machinery: a slowly wandering f0 with decaying harmonics."""
    wander = 1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(f0 * wander) / sr
    out = sum(np.sin(k * phase + rng.uniform(0, 6.3)) / k ** rng.uniform(0.7, 1.5) for k in range(1, n + 1))
    return out / (np.std(out) + 1e-12)


def _events(rng: np.random.Generator, n: int, sr: int, rate: float) -> np.ndarray:
    """Transients (steps, doors, rail joints): decaying noise bursts at Poisson times."""
    out = np.zeros(n)
    count = rng.poisson(rate * n / sr)
    for start in rng.integers(0, n, size=count):
        length = int(sr * rng.uniform(0.01, 0.12))
        seg = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 5))
        out[start : start + length] += seg[: n - start] * rng.uniform(0.3, 1.0)
    return out / (np.std(out) + 1e-12) if count else out


def _babble(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """Speech-like babble: several talkers of band-limited noise with syllabic (3-6 Hz) modulation."""
    out = np.zeros(t.size)
    for _ in range(rng.integers(3, 8)):
        carrier = _band_noise(rng, t.size, sr, rng.uniform(150, 400), rng.uniform(2500, 4000))
        syll = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6.3)), 0, None) ** 2
        out += carrier * syll * rng.uniform(0.3, 1.0)
    return out / (np.std(out) + 1e-12)


def _vehicles(rng: np.random.Generator, t: np.ndarray, sr: int, count: float) -> np.ndarray:
    """Passing vehicles: low-passed noise plus a Doppler-swept tone under a Gaussian envelope."""
    out = np.zeros(t.size)
    base = _band_noise(rng, t.size, sr, 30, rng.uniform(1500, 4000))
    for _ in range(max(1, rng.poisson(count))):
        centre, width = rng.uniform(0, t[-1]), rng.uniform(0.8, 2.5)
        env = np.exp(-0.5 * ((t - centre) / width) ** 2)
        f = rng.uniform(80, 200) * (1 + 0.05 * np.tanh((centre - t) / width))
        tone = np.sin(2 * np.pi * np.cumsum(f) / sr)
        out += env * (base + 0.5 * tone) * rng.uniform(0.4, 1.0)
    return out / (np.std(out) + 1e-12)


def _birds(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """Chirps: short upward/downward sweeps between 2 and 7 kHz."""
    out = np.zeros(t.size)
    for start in rng.uniform(0, t[-1], size=rng.poisson(2.0 * t[-1]) + 1):
        i0, length = int(start * sr), int(sr * rng.uniform(0.05, 0.2))
        tt = np.arange(min(length, t.size - i0)) / sr
        f_start, f_end = rng.uniform(2000, 7000, size=2)
        phase = 2 * np.pi * (f_start * tt + (f_end - f_start) * tt**2 / (2 * max(tt[-1], 1e-3))) if tt.size else tt
        out[i0 : i0 + tt.size] += np.sin(phase) * np.hanning(tt.size)
    return out / (np.std(out) + 1e-12)


def _chime(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    """Announcement chime: two or three decaying tones."""
    out = np.zeros(t.size)
    start = rng.uniform(0, max(t[-1] - 2, 0.1))
    for k, f in enumerate(rng.choice([523.3, 659.3, 784.0, 880.0, 1046.5], size=rng.integers(2, 4))):
        i0 = int((start + 0.45 * k) * sr)
        tt = np.arange(t.size - i0) / sr if i0 < t.size else np.zeros(0)
        out[i0:] += np.sin(2 * np.pi * f * tt) * np.exp(-tt * 2.5)
    return out / (np.std(out) + 1e-12)


def _music(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Background music: a slow chord progression of soft harmonic tones."""
    out = np.zeros(t.size)
    chord_len = rng.uniform(1.5, 3.0)
    for i, t0 in enumerate(np.arange(0, t[-1] + chord_len, chord_len)):
        root = 220 * 2 ** (rng.integers(0, 12) / 12)
        mask = (t >= t0) & (t < t0 + chord_len)
        for ratio in (1, 1.26, 1.5):
            out[mask] += np.sin(2 * np.pi * root * ratio * t[mask]) * 0.5 + np.sin(4 * np.pi * root * ratio * t[mask]) * 0.2
    return out / (np.std(out) + 1e-12)


def render_clip(cfg: SynthConfig, scene: str, city: str, location: int, segment: int) -> np.ndarray:
    """One clip, ``[samples, channels]`` float32 in [-1, 1]."""
    sr, n = cfg.sample_rate, int(round(cfg.duration * cfg.sample_rate))
    t = np.arange(n) / sr
    recipe = dict(_RECIPES[scene])
    loc = _rng(cfg.seed, scene, city, location)  # the location's signature: shared by its segments
    for key in ("noise", "engine", "events", "babble", "vehicles", "birds", "chime", "music"):
        recipe[key] += loc.normal(0, 3)
    recipe["slope"] += loc.normal(0, 0.2)
    recipe["f0"] *= np.exp(loc.normal(0, 0.25))
    hum_f, hum_level = loc.choice([50.0, 60.0]), loc.uniform(-60, -40)

    rng = _rng(cfg.seed, scene, city, location, segment)
    level = lambda key: _db(recipe[key] + rng.normal(0, 4))  # noqa: E731 - per-clip level jitter
    mix = level("noise") * _coloured_noise(rng, n, recipe["slope"] + rng.normal(0, 0.15))
    mix += _db(hum_level) * np.sin(2 * np.pi * hum_f * t)
    if recipe["engine"] > -90:
        mix += level("engine") * _harmonics(rng, t, sr, recipe["f0"] * np.exp(rng.normal(0, 0.15)))
    if recipe["events"] > -90:
        mix += level("events") * _events(rng, n, sr, recipe["rate"] * np.exp(rng.normal(0, 0.4)))
    if recipe["babble"] > -90:
        mix += level("babble") * _babble(rng, t, sr)
    if recipe["vehicles"] > -90:
        mix += level("vehicles") * _vehicles(rng, t, sr, 2.0)
    if recipe["birds"] > -90 and rng.random() < 0.85:
        mix += level("birds") * _birds(rng, t, sr)
    if recipe["chime"] > -90 and rng.random() < 0.5:
        mix += level("chime") * _chime(rng, t, sr)
    if recipe["music"] > -90:
        mix += level("music") * _music(rng, t)

    # Binaural-ish stereo: a small inter-channel delay and independent sensor noise.
    chans = []
    for c in range(cfg.channels):
        delayed = np.roll(mix, int(rng.integers(0, 24)) * c)
        chans.append(delayed + 10 ** (-70 / 20) * rng.standard_normal(n))
    audio = np.stack(chans, axis=1)
    peak = np.abs(audio).max()
    target = 10 ** (rng.uniform(-12, -3) / 20)  # per-clip recording gain
    return (audio * (target / peak if peak > 0 else 1.0)).astype(np.float32)


def clip_names(cfg: SynthConfig) -> list[tuple[str, str, str, int, int]]:
    """``(filename, scene, city, location_id, segment_id)`` for every clip, in a fixed order.

    Location ids are globally unique numbers as in TAU (e.g. ``airport-lisbon-1000-40000-a.wav``).
    """
    rows = []
    for s, scene in enumerate(cfg.scenes):
        for c, city in enumerate(cfg.cities):
            for loc in range(cfg.locations_per_city):
                location_id = 1000 * (s + 1) + 100 * c + loc
                for seg in range(cfg.segments_per_location):
                    segment_id = 10_000 * (loc + 1) + 10 * seg
                    rows.append((f"audio/{scene}-{city}-{location_id}-{segment_id}-a.wav", scene, city, location_id, seg))
    return rows


def _is_evaluate(cfg: SynthConfig, scene: str, city: str, location_index: int) -> bool:
    """Official-fold-style assignment: whole locations, about a third of them, go to evaluate."""
    if cfg.locations_per_city == 1:
        return _rng(cfg.seed, "fold1", scene, city).random() < 1 / 3
    return location_index == cfg.locations_per_city - 1


def generate(root: str | Path, cfg: SynthConfig, workers: int | None = None, progress: bool = True) -> Path:
    """Write the dataset under ``root`` (atomically: a half-written dataset never appears there).

    Returns ``root``. If ``root/meta.csv`` already exists, nothing is done.
    """
    root = Path(root)
    if (root / "meta.csv").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        (tmp / "audio").mkdir()
        (tmp / "evaluation_setup").mkdir()
        rows = clip_names(cfg)
        n_jobs = workers or cpu_count()  # joblib's count: the cores this process may use (LOKY_MAX_CPU_COUNT)
        jobs = (delayed(_write_clip)(tmp, cfg, *row) for row in rows)
        runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=4)
        for _ in tqdm(runner(jobs), total=len(rows), desc="synthesising scenes", unit="clip", disable=not progress):
            pass
        meta, train, evaluate = [], [], []
        for filename, scene, city, location_id, _seg in rows:
            meta.append(f"{filename}\t{scene}\t{city}-{location_id}\ta")
            loc_index = location_id % 100
            (evaluate if _is_evaluate(cfg, scene, city, loc_index) else train).append(f"{filename}\t{scene}")
        (tmp / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n" + "\n".join(meta) + "\n")
        setup = tmp / "evaluation_setup"
        (setup / "fold1_train.csv").write_text("filename\tscene_label\n" + "\n".join(train) + "\n")
        (setup / "fold1_evaluate.csv").write_text("filename\tscene_label\n" + "\n".join(evaluate) + "\n")
        (setup / "fold1_test.csv").write_text("filename\n" + "\n".join(r.split("\t")[0] for r in evaluate) + "\n")
        try:
            os.replace(tmp, root)
        except OSError:
            if (root / "meta.csv").exists():  # another process finished the same dataset first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _write_clip(tmp: Path, cfg: SynthConfig, filename: str, scene: str, city: str, location_id: int, seg: int) -> None:
    audio = render_clip(cfg, scene, city, location_id, seg)
    sf.write(tmp / filename, audio, cfg.sample_rate, subtype=cfg.subtype)
