"""Shared fixtures: every test builds its own data (synthetic audio in temporary folders)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: A small, fast variant of TAU: 2 cities x 3 locations x 2 segments x 10 scenes = 120 clips of 4 s (48 kHz, stereo, 24 bit).
TINY = dict(cities=("lyon", "milan"), locations_per_city=3, segments_per_location=2, duration=4.0)
#: Hydra overrides that shrink the real config to the tiny set (used by end-to-end tests).
TINY_OVERRIDES = [
    "experiment=demo_small_cnn",
    "data.synthetic.cities=[lyon,milan]",
    "data.synthetic.locations_per_city=3",
    "data.synthetic.segments_per_location=2",
    "data.synthetic.duration=4.0",
    "window=2.0",
    "mask=0.1",
    "model.image_size=64",
    "trainer.max_epochs=2",
    "progress=false",
]


#: On top of TINY_OVERRIDES for sweeps: one short epoch on small images; 240 CQT bins, since 256 bins from 10 Hz reach
#: 15.8 kHz and librosa's filters then cross the tiny set's 16 kHz Nyquist frequency.
SHRINK = ["features.n_bins=240", "model.image_size=32", "trainer.max_epochs=1"]


def experiment_file(conf: Path, data_root: Path, *extra: str, name: str = "tiny_sweep") -> Path:
    """TINY_OVERRIDES (+ SHRINK, + ``extra`` dotlist overrides) as ``experiment=<name>`` in ``conf/experiment/``, so
    sweep folders are named by the swept settings only; ``data.root`` is the session's tiny set (not generated again)."""
    from omegaconf import OmegaConf

    dotlist = [o for o in TINY_OVERRIDES + SHRINK if not o.startswith(("experiment=", "progress=", "window=", "mask="))]
    settings = OmegaConf.merge(OmegaConf.from_dotlist(dotlist), OmegaConf.from_dotlist(list(extra)))
    settings.data.root = str(data_root)
    path = conf / "experiment" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    base = next(o.split("=", 1)[1] for o in TINY_OVERRIDES if o.startswith("experiment="))
    path.write_text(f"# @package _global_\ndefaults:\n  - {base}\n\n" + OmegaConf.to_yaml(settings))
    return path


def pytest_configure(config):
    """Under pytest-xdist with N workers on a machine of N cores, each worker (and every process it starts) gets one
    core's worth of threads and of worker processes instead of all of them, so N workers do not fight over the cores.
    ``LOKY_MAX_CPU_COUNT`` is joblib's: with one core each, a run's feature extraction and synthesis (which default
    to one process per core) work in the run's own process instead of starting two that import librosa and torch
    again (about 9 s of CPU for each run that fills a cache). Tests that name their worker counts keep them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LOKY_MAX_CPU_COUNT"):
            os.environ.setdefault(name, share)


def _run_dir(tmp_path_factory, name: str) -> Path:
    """A folder shared by the whole run: under pytest-xdist the workers' temporary folders sit side by side in one
    parent, and the folder is made there, so every worker finds the same one."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / name
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_tau(tmp_path_factory) -> Path:
    """A 120-clip synthetic dataset in TAU's layout (stereo 24-bit WAV), made once per run (the first worker to need
    it writes it; the others wait on the lock and then read it)."""
    import fcntl

    from asc.data.synth import SynthConfig, generate

    shared = _run_dir(tmp_path_factory, "tiny-tau")
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return generate(shared / "TAU-urban-acoustic-scenes-2019-development", SynthConfig(**TINY), progress=False)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A spectrogram cache folder shared by the run's sweeps of ``tiny_tau`` (entries computed once; the cache is safe
    for processes that fill it together, as tests/test_cache.py checks)."""
    return _run_dir(tmp_path_factory, "tiny-cache")


@pytest.fixture
def own_cache(tmp_path, tiny_cache) -> Path:
    """``tmp_path / "cache"``: a cache folder of the test's own, holding hard links to the feature entries the session
    has computed so far (not its embedding caches, locks or temporary files). The test still fills and checks its own
    embedding cache, but reads the tiny set's images instead of computing them again (about 15 s of CPU for each
    feature setting); an entry the session has not made yet is computed here, as before. Entries are only replaced by
    renaming (asc.files), never rewritten in place, so a link cannot carry one test's writes into another's cache."""
    import shutil

    own = tmp_path / "cache"
    shutil.copytree(tiny_cache, own, copy_function=os.link, ignore=shutil.ignore_patterns("embeddings-*", ".*"))
    return own


@pytest.fixture
def tiny_data(tiny_tau, tiny_cache) -> list[str]:
    """Overrides that point a TINY_OVERRIDES run at the session's tiny set and feature cache: the set is synthesised and
    its images computed once per session, not once per end-to-end test (about 20 s each on 2 cores)."""
    return [f"data.root={tiny_tau}", f"paths.cache={tiny_cache}"]


@pytest.fixture
def compose():
    """Compose the real Hydra config (``conf/``) with overrides, as ``train.py`` would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture(autouse=True)
def _own_mlflow_store(monkeypatch):
    """Each test picks its own MLflow store: ``mlflow.set_tracking_uri`` (Lightning calls it) exports
    ``MLFLOW_TRACKING_URI`` for the rest of the process, and subprocesses would inherit a previous test's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
