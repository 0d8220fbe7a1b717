"""The recipes beyond the paper are options: the faithful configs keep the identity they had before them.

The hashes and parameters below were computed on the code before the ``optim`` and ``augment`` groups existed
(commit 580cfcc). A finished run or sweep is found again by its ``config_hash`` tag, and its MLflow params are
compared by eye across runs: if one of these changes, every earlier run stops resuming and stops matching.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from omegaconf import OmegaConf

from asc.config import CONFIG_DIR
from asc.runs.identity import config_hash, leaves

#: overrides -> (config_hash, settings_hash (the grid cell), digest of the logged MLflow params)
PINNED = {
    (): ("d9a2d077c8942b86", "1d25d30322026855", "10c33facef0bc6b7"),
    ("experiment=demo",): ("669a02a7ee42b1d3", "56c208fc5f293ca0", "b26c5b9304dfde6c"),
    ("experiment=demo_small_cnn",): ("8d3d2ca22b0cdd48", "4c32737dbfbe8e84", "19e83991d0dd1ddc"),
    ("experiment=real_audio",): ("10419d91426eb339", "b33d2d602daf3a15", "3815f69df221f012"),
    ("experiment=paper_grid", "window=3", "mask=0.2"): ("a91ec5dd892af5f7", "59b1bb13c98a90c7", "03b0cbc061bc2fc6"),
}

#: The MLflow params of `python train.py` (the paper's setup), as asc.runs.train.run logs them.
DEFAULT_PARAMS = {
    'window': 5.0, 'mask': 0.0, 'seed': 0, 'paths.data': 'data', 'paths.cache': 'cache', 'paths.outputs': 'outputs',
    'progress': True, 'resume': True, 'sweep_id': None, 'sweep_gpus': None, 'data.kind': 'tau',
    'data.root': 'data/TAU-urban-acoustic-scenes-2019-development', 'data.split': 'paper', 'data.split_seed': 42,
    'data.fractions': [0.6, 0.2, 0.2], 'data.batch_size': 32, 'data.num_workers': 0, 'data.extract_workers': None,
    'data.on_error': 'raise', 'data.on_device': False, 'data.cache_dir': 'cache', 'data.clip_seconds': 10.0,
    'data.pad': 'none', 'data.synthetic': None, 'features.kind': 'cqt', 'features.sample_rate': 48000,
    'features.resample': True, 'features.channels': None, 'features.emphasis_alpha': 1484.536082474227,
    'features.hop_length': 1024, 'features.pad_mode': 'reflect', 'features.fmin': 10.0, 'features.n_bins': 256,
    'features.bins_per_octave': 24, 'features.res_type': 'kaiser_fast_resampy0.2', 'features.bandwidth': 'librosa0.7',
    'features.magnitude': True, 'features.amin': 1e-10, 'features.top_db': 80.0, 'features.backend': 'librosa',
    'model.backbone': 'vgg16', 'model.pretrained': True, 'model.freeze': True, 'model.hidden': [512],
    'model.dropout': 0.5, 'model.image_size': 224, 'model.lr': 0.001, 'model.eval_windows': 'centre',
    'model.crop': 'reference', 'model.band': 'reference', 'model.channels_last': False, 'model.compile': False,
    'model.embedding_cache.enabled': False, 'model.embedding_cache.positions': 4, 'model.embedding_cache.masks': 2,
    'model.embedding_cache.batch_size': 256, 'model.embedding_cache.dtype': 'float16',
    'model.embedding_cache.steps_per_call': 16, 'trainer.max_epochs': 200, 'trainer.patience': 10,
    'trainer.accelerator': 'auto', 'trainer.devices': 1, 'trainer.precision': '32-true', 'trainer.log_every_n_steps': 10,
    'trainer.strategy': 'auto', 'trainer.num_nodes': 1, 'trainer.deterministic': False, 'logger.experiment': 'asc',
    'logger.tracking_uri': 'sqlite:///mlflow.db', 'logger.artifacts': 'mlartifacts', 'logger.log_model': True,
}

local_paths = pytest.mark.skipif((CONFIG_DIR / "local" / "default.yaml").exists(),
                                 reason="conf/local/default.yaml changes the logged paths on this machine")


def params(cfg) -> dict:
    """What asc.runs.train.run logs as the run's MLflow params."""
    return leaves(OmegaConf.to_container(cfg, resolve=True))


def digest(p: dict) -> str:
    return hashlib.sha256(json.dumps(p, sort_keys=True, default=str).encode()).hexdigest()[:16]


@local_paths
@pytest.mark.parametrize("overrides", list(PINNED), ids=lambda o: " ".join(o) or "default")
def test_faithful_identity_is_unchanged(compose, overrides):
    cfg = compose(*overrides)
    want_hash, want_cell, want_params = PINNED[overrides]
    assert config_hash(cfg) == want_hash
    assert config_hash(cfg, drop=("seed",)) == want_cell
    assert digest(params(cfg)) == want_params


@local_paths
def test_default_params_are_unchanged(compose):
    assert params(compose()) == DEFAULT_PARAMS
