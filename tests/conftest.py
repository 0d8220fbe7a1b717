"""Shared fixtures: every test builds its own data (synthetic audio in temporary folders)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: A small, fast variant of TAU: 2 cities x 3 locations x 2 segments x 10 scenes = 120 clips of 4 s (48 kHz, stereo, 24 bit).
TINY = dict(cities=("lyon", "milan"), locations_per_city=3, segments_per_location=2, duration=4.0)
#: Hydra overrides that shrink the real config to the tiny set (used by end-to-end tests).
TINY_OVERRIDES = [
    "experiment=demo",
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


@pytest.fixture(scope="session")
def tiny_tau(tmp_path_factory) -> Path:
    """A 120-clip synthetic dataset in TAU's layout (stereo 24-bit WAV), shared by the session."""
    from asc.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("tau") / "TAU-urban-acoustic-scenes-2019-development"
    return generate(root, SynthConfig(**TINY), progress=False)


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
