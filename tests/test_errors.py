"""Bad settings and dataset folders get a clear error naming the setting or file (bad audio files:
``test_bad_input.py``; a dataset's layout problems: ``test_dataset.py``)."""

import pytest

from asc.data.dataset import DatasetError, read_tau, safe_path


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        read_tau(tmp_path / "nope")


def test_missing_meta_csv(tmp_path):
    (tmp_path / "audio").mkdir()
    with pytest.raises(DatasetError, match=r"meta\.csv: file not found"):
        read_tau(tmp_path)


def test_file_names_cannot_escape_the_dataset_folder(tmp_path):
    for name in ("../secret.wav", "/etc/passwd", "audio/../../x.wav", "C:/x.wav"):
        with pytest.raises(DatasetError, match="outside the dataset folder"):
            safe_path(tmp_path, name)
    assert safe_path(tmp_path, "audio/x.wav") == tmp_path / "audio" / "x.wav"


@pytest.mark.parametrize("mask", ["1.0", "-0.1", "1.5"])
def test_mask_outside_0_1(compose, mask):
    from asc.runs.train import run

    with pytest.raises(ValueError, match=rf"mask={mask}"):
        run(compose(f"mask={mask}"))


def test_unknown_setting_in_a_group(compose):
    from asc.config import settings
    from asc.data.features import FeatureSpec

    cfg = compose("+features.nbins=3")
    with pytest.raises(ValueError, match=r"features: unknown setting\(s\) \['nbins'\]"):
        settings(FeatureSpec, cfg.features, "features")
