"""The suite's own data, small enough for 2 shared cores: recordings, a TAU-layout set, archives, run settings.

Everything runs at 8 kHz with the paper's constant-Q transform scaled to it (168 bins from 10 Hz, hop 256: images
168 x 63 for 2 s), as ``tests/test_cache.py`` does; training uses the demo's small CNN on 32-pixel views.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

#: Feature settings of every command of the suite, as ``asc extract --set`` arguments and as training overrides.
FEATURES = ["sample_rate=8000", "n_bins=168", "hop_length=256"]
EXTRACT_SET = ["--set", *FEATURES]


def recordings(root: Path, n: int, seconds: float = 2.0, sr: int = 8000, seed: int = 0) -> Path:
    """``n`` stereo 24-bit WAV files of noise and a tone, and ``labels.csv`` (a folder dataset of two classes)."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    rows = ["filename,label"]
    t = np.arange(int(sr * seconds)) / sr
    for i in range(n):
        rng = np.random.default_rng(seed * 100_003 + i)
        y = 0.1 * rng.standard_normal((len(t), 2)) + 0.2 * np.sin(2 * np.pi * (200 + 40 * i) * t)[:, None]
        sf.write(root / f"clip{i:03d}.wav", y.astype(np.float32), sr, subtype="PCM_24")
        rows.append(f"clip{i:03d}.wav,{'ab'[i % 2]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def tau(root: Path, segments: int = 5, seconds: float = 2.0, sr: int = 8000) -> Path:
    """A synthetic set in TAU's layout: 10 scenes x 1 city x 1 location x ``segments`` clips (50 by default)."""
    from asc.data.synth import SynthConfig, generate

    return generate(root, SynthConfig(cities=("lyon",), locations_per_city=1, segments_per_location=segments,
                                      duration=seconds, sample_rate=sr), workers=1, progress=False)


def archives(src: Path, seconds: float = 3.0, sr: int = 16000) -> dict[str, bytes]:
    """Zenodo's archives in miniature (two audio archives of about 1.4 MB, meta, doc), members under DEV_DIRNAME/."""
    import zipfile

    from asc.data.download import DEV_DIRNAME
    from zenodo import zip_bytes

    root = src / DEV_DIRNAME
    if not (root / "meta.csv").exists():
        from asc.data.synth import SynthConfig, generate

        generate(root, SynthConfig(cities=("lyon",), locations_per_city=1, segments_per_location=1, duration=seconds,
                                   sample_rate=sr), workers=1, progress=False)
    rel = lambda p: f"{DEV_DIRNAME}/{p.relative_to(root).as_posix()}"  # noqa: E731
    wavs = sorted((root / "audio").glob("*.wav"))
    meta = [root / "meta.csv", *sorted((root / "evaluation_setup").glob("*.csv"))]
    stored = zipfile.ZIP_STORED  # noise does not compress: the archives' sizes are the audio's
    return {
        f"{DEV_DIRNAME}.audio.1.zip": zip_bytes({rel(p): p.read_bytes() for p in wavs[:5]}, stored),
        f"{DEV_DIRNAME}.audio.2.zip": zip_bytes({rel(p): p.read_bytes() for p in wavs[5:]}, stored),
        f"{DEV_DIRNAME}.meta.zip": zip_bytes({rel(p): p.read_bytes() for p in meta}),
        f"{DEV_DIRNAME}.doc.zip": zip_bytes({f"{DEV_DIRNAME}/README.md": b"synthetic\n"}),
    }


def unpacked(archives: dict[str, bytes]) -> dict[str, bytes]:
    """``{member name: bytes}`` of every archive: what a download must leave in DEST."""
    import io
    import zipfile

    out = {}
    for data in archives.values():
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            out |= {m.filename: z.read(m) for m in z.infolist() if not m.is_dir()}
    return out


def run_overrides(work: Path, data_root: Path, cache: Path, *extra: str) -> list[str]:
    """Hydra overrides of a small deterministic run: the small-CNN demo on the 50-clip set, stores and outputs in ``work``."""
    return [
        "experiment=demo_small_cnn", f"data.root={data_root}", "data.synthetic.duration=2.0", "data.synthetic.sample_rate=8000",
        *[f"features.{f}" for f in FEATURES], "window=1.0", "mask=0.1", "model.image_size=32",
        "trainer.max_epochs=6", "trainer.patience=2", "trainer.deterministic=true", "progress=false",
        f"paths.cache={cache}", f"paths.outputs={work / 'outputs'}", f"paths.data={work / 'data'}",
        f"logger.tracking_uri=sqlite:///{work / 'mlflow.db'}", f"logger.artifacts={work / 'mlartifacts'}", *extra,
    ]


def empty_store(path: Path) -> Path:
    """An MLflow SQLite store with its tables made (copied for each case: the schema takes seconds to create)."""
    if not path.exists():
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)
    return path


def fresh(folder: Path, store: Path | None = None, cache: Path | None = None) -> Path:
    """An empty case folder, with a copy of the empty store as ``mlflow.db`` and of a filled feature ``cache``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if store is not None:
        shutil.copy(store, folder / "mlflow.db")
    if cache is not None:
        # the feature entries only: an embedding-cache entry is what the embeddings stage must see computed
        shutil.copytree(cache, folder / "cache", ignore=shutil.ignore_patterns("embeddings-*", ".embeddings-*"))
    return folder
