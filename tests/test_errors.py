"""Bad input gets a clear error naming the file or setting -- never a traceback from deep inside a library."""

import shutil

import numpy as np
import pytest

from asc.audio import AudioError, load_mono
from asc.dataset import DatasetError, read_tau, safe_path


def test_corrupt_audio_names_the_file(tmp_path):
    bad = tmp_path / "bus-lyon-1-1-a.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioError, match="bus-lyon-1-1-a.wav"):
        load_mono(bad)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        read_tau(tmp_path / "nope")


def test_missing_meta_csv(tmp_path):
    (tmp_path / "audio").mkdir()
    with pytest.raises(DatasetError, match=r"meta\.csv: file not found"):
        read_tau(tmp_path)


def test_missing_audio_files_are_listed(tiny_tau, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_tau, root)
    gone = sorted((root / "audio").glob("park-*.wav"))[0]
    gone.unlink()
    with pytest.raises(DatasetError, match=f"1 audio file.*missing:\n  audio/{gone.name}"):
        read_tau(root)


def test_file_names_cannot_escape_the_dataset_folder(tmp_path):
    for name in ("../secret.wav", "/etc/passwd", "audio/../../x.wav", "C:/x.wav"):
        with pytest.raises(DatasetError, match="outside the dataset folder"):
            safe_path(tmp_path, name)
    assert safe_path(tmp_path, "audio/x.wav") == tmp_path / "audio" / "x.wav"


def test_window_longer_than_the_clip(compose, tiny_tau, tmp_path):
    from asc.datamodule import DataConfig, SceneDataModule
    from asc.features import FeatureSpec

    dm = SceneDataModule(DataConfig(root=str(tiny_tau), cache_dir=str(tmp_path)), FeatureSpec(), window=6.0, progress=False)
    dm.prepare_data()
    with pytest.raises(ValueError, match=r"shorter than window=6 s"):
        dm.setup()


@pytest.mark.parametrize("mask", ["1.0", "-0.1", "1.5"])
def test_mask_outside_0_1(compose, mask):
    from asc.train import run

    with pytest.raises(ValueError, match=rf"mask={mask}"):
        run(compose(f"mask={mask}"))


def test_unknown_setting_in_a_group(compose):
    from asc.config import settings
    from asc.features import FeatureSpec

    cfg = compose("+features.nbins=3")
    with pytest.raises(ValueError, match=r"features: unknown setting\(s\) \['nbins'\]"):
        settings(FeatureSpec, cfg.features, "features")


def test_nan_samples_are_rejected(tmp_path):
    import soundfile as sf

    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: the audio holds NaN"):
        load_mono(path)
