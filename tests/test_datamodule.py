"""The data module: whole split in memory once, batches cut from tensors (on the GPU with data.on_device),
and bring-your-own recordings (data.kind=folder) through features, splits, training and tracking."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch

from asc.data.datamodule import DataConfig, SceneDataModule, TensorBatches
from asc.data.features import FeatureSpec

SR = 16_000
SPEC = FeatureSpec(sample_rate=SR, n_bins=216)  # top CQT bin 5 kHz < 8 kHz Nyquist
SCENES3 = ("bus", "park", "street_traffic")


def recordings(root: Path, seconds: float = 2.0) -> Path:
    """Your own recordings: 3 labels x 4 groups x 2 clips of synthetic scenes, in mixed formats (stereo WAV,
    mono FLAC, some at 22.05 kHz), with ``filename,label,group`` in ``labels.csv``."""
    from asc.data.synth import SynthConfig, render_clip

    cfg = SynthConfig(duration=seconds, sample_rate=SR, channels=2)
    root.mkdir(parents=True)
    rows = ["filename,label,group"]
    for s, scene in enumerate(SCENES3):
        for g in range(4):
            for k in range(2):
                audio = render_clip(cfg, scene, "lyon", 100 * s + g, k)
                name = f"rec/{scene}_{g}_{k}"
                (root / "rec").mkdir(exist_ok=True)
                if k == 0:
                    sf.write(root / f"{name}.wav", audio, SR, subtype="PCM_16")
                    rows.append(f"{name}.wav,{scene},session{s}{g}")
                else:
                    import librosa

                    mono = librosa.resample(audio.mean(1), orig_sr=SR, target_sr=22_050) if g % 2 else audio.mean(1)
                    sf.write(root / f"{name}.flac", mono, 22_050 if g % 2 else SR)
                    rows.append(f"{name}.flac,{scene},session{s}{g}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    return recordings(tmp_path_factory.mktemp("own") / "my-recordings")


def test_tensor_batches_cut_whole_batches():
    x, y = torch.arange(10 * 2 * 3).view(10, 2, 3).to(torch.uint8), torch.arange(10)
    ds = TensorBatches(x, y)
    xb, yb = ds[[7, 2, 5]]
    assert torch.equal(yb, torch.tensor([7, 2, 5])) and torch.equal(xb, x[[7, 2, 5]])
    with pytest.raises(ValueError):
        TensorBatches(x, y[:3])

    class Counting(TensorBatches):
        calls: list = []

        def __getitem__(self, index):
            self.calls.append(index)
            return super().__getitem__(index)

    from torch.utils.data import DataLoader

    from asc.data.datamodule import as_batch

    ds = Counting(x, y)
    got = [b[1].tolist() for b in DataLoader(ds, batch_size=4, shuffle=False, collate_fn=as_batch)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(ds.calls) == 3 and all(isinstance(i, list) for i in ds.calls)  # one gather per batch


def test_folder_split_loaders_in_memory(own, tmp_path):
    cfg = DataConfig(root=str(own), kind="folder", split="grouped", cache_dir=str(tmp_path / "cache"),
                     extract_workers=1, batch_size=5, on_device=True, clip_seconds=2.0)
    dm = SceneDataModule(cfg, SPEC, window=1.0, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.class_names == sorted(SCENES3) and dm.leakage == 0.0
    assert dm.split_sizes == {"train": 12, "val": 6, "test": 6}  # 4 sessions per label: 2/1/1
    assert dm.clip_frames == int(2.0 * SR) // 1024 + 1  # the 22.05 kHz files were resampled to 16 kHz
    assert dm.counts == {"padded": 0, "cropped": 0, "skipped": 0, "copies": 0, "repaired": 0}
    batches = list(dm.train_dataloader())  # no trainer: on_device has no device to go to, stays on the CPU
    assert [len(b[1]) for b in batches] == [5, 5, 2]  # ordinary DataLoader batching, no drop_last
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape[1:] == (216, dm.clip_frames) and y.dtype == torch.long
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == sorted(dm.bank("train").labels.tolist())  # each clip once per epoch
    torch.manual_seed(0)
    first = [b[1].tolist() for b in dm.train_dataloader()]
    torch.manual_seed(0)
    assert [b[1].tolist() for b in dm.train_dataloader()] == first  # shuffling follows the seed
    val = list(dm.val_dataloader())
    assert torch.equal(torch.cat([b[1] for b in val]), dm.bank("val").labels)  # evaluation in order
    clips, _, real = val[0]
    assert clips.shape[1:] == (1, 216, dm.clip_frames) and real.all()  # one clip per recording of a clip's length


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_device_holds_the_split_on_the_gpu(own, tmp_path):
    class FakeTrainer:
        class strategy:  # noqa: N801
            root_device = torch.device("cuda", 0)

    cfg = DataConfig(root=str(own), kind="folder", split="grouped", cache_dir=str(tmp_path / "cache"),
                     extract_workers=1, batch_size=5, on_device=True, num_workers=2, clip_seconds=2.0)
    dm = SceneDataModule(cfg, SPEC, window=1.0, progress=False)
    dm.trainer = FakeTrainer()
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.num_workers == 0 and not loader.pin_memory
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and dm.bank("train").images.is_cuda


@pytest.mark.slow
def test_folder_dataset_trains_end_to_end(own, tmp_path, monkeypatch):
    """`python train.py data=folder ...` on your own recordings: features, split, training, MLflow."""
    import mlflow
    from hydra import compose, initialize_config_dir

    from asc.runs.train import run

    overrides = [
        f"data.root={own}", "data.split=grouped", f"paths.cache={tmp_path / 'cache'}", "data.on_device=true",
        "data.extract_workers=1", "model=small_cnn", "model.image_size=64", "trainer.max_epochs=1",
        "features.sample_rate=16000", "features.n_bins=216", "window=1.0", "progress=false", "data.clip_seconds=2.0",
        f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"logger.artifacts={tmp_path / 'art'}",
        "logger.experiment=own",
    ]
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("config", overrides=["data=folder", *overrides])
    # mlflow.set_tracking_uri (called by Lightning) exports MLFLOW_TRACKING_URI, which asc.tracking.store prefers to the
    # config: an earlier run in this process would otherwise redirect this one to its store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run(cfg)
    assert 0.0 <= result.test_acc <= 1.0
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    metrics = client.get_run(result.run_id).data.metrics
    assert metrics["split/train"] == 12 and metrics["split/test"] == 6 and metrics["split/leakage"] == 0.0
    assert {f"test/acc_{s}" for s in SCENES3} <= set(metrics)
    params = client.get_run(result.run_id).data.params
    assert params["data.kind"] == "folder"
