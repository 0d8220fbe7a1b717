"""Prediction: windows and their aggregation, formats and rates, stream mode, model sources, bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import pytest
import soundfile as sf

from asc.data.audio import AudioError
from asc.data.features import FEATURE_VERSION, FeatureSpec, image_from_audio
from asc.cli.predict import main
from asc.inference.predictor import ModelError, Predictor, image_from_long_audio, slide_starts
from asc.inference.sources import load_predictor
from asc.inference.stream import pcm_to_float, stream

CLASSES = ["bus", "metro", "park"]
WINDOW = 1.0  # s: 47 frames at 48 kHz, hop 1024
CLIP = 2.0  # s: the "training" clip length


def tone_noise(seconds: float, sr: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A test recording ``[samples, channels]``: noise, a hum and a switching tone."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = 0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * 60 * t) + 0.1 * np.sin(2 * np.pi * 880 * t) * (t % 1 < 0.5)
    return np.repeat(y[:, None], channels, axis=1).astype(np.float32) * 0.8


def write_checkpoint(path: Path, features: dict | None) -> Path:
    """A real Lightning checkpoint of a tiny small-CNN SceneClassifier, fitted for one step."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from asc.model.module import SceneClassifier

    torch.manual_seed(0)
    spec = FeatureSpec()
    module = SceneClassifier(
        class_names=CLASSES, model=dict(backbone="small_cnn", pretrained=False, freeze=False, channels=[4, 8], hidden=[8]),
        views=dict(window_frames=spec.window_frames(WINDOW), size=32), features=features, window=WINDOW,
        clip=dict(frames=spec.frames(CLIP), seconds=CLIP, pad="none"),
    )
    x = torch.randint(0, 256, (4, spec.height, spec.frames(CLIP)), dtype=torch.uint8)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(TensorDataset(x, torch.tensor([0, 1, 2, 0])), batch_size=4))
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "best.ckpt", asdict(FeatureSpec()))


@pytest.fixture(scope="module")
def predictor(ckpt) -> Predictor:
    return Predictor.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Generated recordings: several lengths, rates, channel counts and formats."""
    d = tmp_path_factory.mktemp("clips")
    out = {
        "wav": (d / "clip.wav", CLIP, 48_000, 2, "WAV"),
        "flac": (d / "clip.flac", 2.3, 44_100, 1, "FLAC"),
        "ogg": (d / "long.ogg", 5.0, 22_050, 2, "OGG"),
    }
    if "MP3" in sf.available_formats():
        out["mp3"] = (d / "long.mp3", 6.0, 32_000, 1, "MP3")
    files = {}
    for key, (path, seconds, sr, ch, fmt) in out.items():
        sf.write(path, tone_noise(seconds, sr, channels=ch), sr, format=fmt)
        files[key] = path
    return files


# -- windows and aggregation ----------------------------------------------------------------------------------
def test_slide_starts_count_and_last_window_at_the_end():
    starts = slide_starts(100, 47, 10)
    assert len(starts) == 1 + int(np.ceil((100 - 47) / 10)) == 7
    assert list(starts) == [0, 10, 20, 30, 40, 50, 53]
    assert list(slide_starts(47, 47, 10)) == [0]
    assert list(slide_starts(67, 47, 10)) == [0, 10, 20]  # exact fit: no extra window
    with pytest.raises(ValueError, match="wider"):
        slide_starts(40, 47, 10)


def test_file_aggregate_is_the_mean_of_the_clips(predictor):
    y = tone_noise(4.0, 48_000)[:, 0]
    image = image_from_audio(y, predictor.spec)
    r = predictor.predict_image(image, hop=0.5, windows="slide")
    hop = predictor.hop_frames(0.5)
    assert hop == 23 and predictor.clip_frames == 94  # clips of 2 s
    assert len(r.starts) == 1 + int(np.ceil((image.shape[1] - predictor.clip_frames) / hop))
    np.testing.assert_allclose(r.probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(r.mean, r.probs.mean(0), atol=1e-7)
    # each clip's probabilities are those of that clip alone, through the model's evaluation views
    last = predictor.clip_probs(image, [image.shape[1] - predictor.clip_frames])[0]
    np.testing.assert_allclose(r.probs[-1], last, atol=1e-5)
    clip = torch.from_numpy(image[:, -predictor.clip_frames:])[None]
    with torch.no_grad():
        want = predictor.module.predict_proba(predictor.views.eval(clip, predictor.module.net.norm))[0]
    np.testing.assert_allclose(last, want.numpy(), atol=1e-5)
    assert r.ends[-1] == pytest.approx((image.shape[1] - 1) * 1024 / 48_000)


def test_training_length_recording_is_one_clip_as_in_evaluation(predictor):
    image = image_from_audio(tone_noise(CLIP, 48_000)[:, 0], predictor.spec)
    r = predictor.predict_image(image)
    assert r.mode == "eval" and len(r.starts) == 1 and r.starts[0] == 0 and not r.extra["padded"]
    assert predictor.predict_image(image, windows="slide").mode == "slide"
    short = predictor.predict_image(image[:, :30])  # shorter than a clip: padded, as in training
    assert len(short.starts) == 1 and short.extra["padded"]


def test_chunked_image_of_a_long_recording_matches_the_whole(predictor):
    y = tone_noise(9.0, 48_000)[:, 0]
    whole = image_from_audio(y, predictor.spec)
    chunked = image_from_long_audio(y, predictor.spec, chunk=3.0, margin=5.0)
    assert chunked.shape == whole.shape
    assert np.abs(whole.astype(int) - chunked.astype(int)).max() <= 2


# -- files: formats, rates, lengths ---------------------------------------------------------------------------
def test_formats_rates_and_lengths(predictor, clips):
    seen = {}
    for key, path in clips.items():
        r = predictor.predict_file(path, hop=0.5)
        seen[key] = r
        assert r.probs.shape[1] == 3
        assert r.mean.sum() == pytest.approx(1, abs=1e-5)
    assert seen["wav"].mode == "eval" and seen["flac"].mode == "eval"  # 2.3 s <= 2 s clip + one hop
    assert seen["ogg"].mode == "slide" and len(seen["ogg"].starts) > 5
    assert seen["ogg"].seconds == pytest.approx(5.0, abs=0.05)
    if "mp3" in seen:  # MP3 encoders pad: about 6 s
        assert seen["mp3"].mode == "slide" and seen["mp3"].seconds == pytest.approx(6.0, abs=0.2)


def test_cli_folder_with_a_bad_file_reports_counts_and_writes_outputs(ckpt, clips, tmp_path, capsys):
    folder = tmp_path / "recordings"
    folder.mkdir()
    for path in clips.values():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    sf.write(folder / "short.wav", tone_noise(0.4, 48_000), 48_000)  # shorter than a clip: padded, predicted
    sf.write(folder / "tiny.wav", tone_noise(0.01, 48_000), 48_000)  # under two hops: nothing to classify
    with pytest.raises(SystemExit) as exit_:
        main([str(folder), "-m", str(ckpt), "--json", str(tmp_path / "p.json"), "--csv", str(tmp_path / "p.csv"),
              "--plot", str(tmp_path / "bars"), "-k", "2"])
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    n_good = len(clips) + 1
    assert f"{n_good} file(s) predicted, 2 failed" in out
    assert "broken.wav: cannot read audio" in err
    assert "tiny.wav: 0.010 s of audio is too short to classify" in err
    doc = json.loads((tmp_path / "p.json").read_text())
    assert len(doc["files"]) == n_good and len(doc["errors"]) == 2
    assert doc["features"]["kind"] == "cqt" and doc["classes"] == CLASSES
    f0 = doc["files"][0]
    assert sum(f0["probs"].values()) == pytest.approx(1, abs=1e-4) and len(f0["top"]) == 2
    rows = (tmp_path / "p.csv").read_text().splitlines()
    n_windows = sum(len(f["windows"]) for f in doc["files"])
    assert len(rows) == 1 + n_windows + n_good  # header, windows, one mean row per file
    assert len(list((tmp_path / "bars").glob("*.png"))) == n_good


def test_cli_single_file_plot(ckpt, clips, tmp_path, capsys):
    import matplotlib.image

    main([str(clips["wav"]), "-m", str(ckpt), "--plot", str(tmp_path / "bars.png"), "--per-window"])
    out = capsys.readouterr().out
    assert "1 file(s) predicted, 0 failed" in out and "1 (eval)" in out
    png = matplotlib.image.imread(tmp_path / "bars.png")
    assert png.std() > 0.05


# -- stream ---------------------------------------------------------------------------------------------------
def test_pcm_conversion():
    raw = np.array([[16384, -16384], [32767, 32767]], dtype="<i2").tobytes()
    np.testing.assert_allclose(pcm_to_float(raw, "int16", 2), [0.0, 32767 / 32768], atol=1e-6)


def test_stream_smooths_over_the_last_n_clips(predictor):
    rate = 16_000
    pcm = (tone_noise(4.0, rate)[:, 0] * 32767).astype("<i2").tobytes()
    report = stream(predictor, io.BytesIO(pcm), rate, 1, "int16", hop=0.5, smooth=3)
    need = int(np.ceil(((predictor.clip_frames - 1) * 1024 + 1) * rate / 48_000)) + 1
    block = round(23 * 1024 / 48_000 * rate)
    assert len(report.decisions) == 1 + (4 * rate - need) // block
    raw = np.array([[d["window"][c] for c in CLASSES] for d in report.decisions])
    smoothed = np.array([[d["probs"][c] for c in CLASSES] for d in report.decisions])
    for i in range(len(raw)):
        np.testing.assert_allclose(smoothed[i], raw[max(0, i - 2) : i + 1].mean(0), atol=1e-6)
    assert report.real_time_factor > 0


@pytest.mark.slow
def test_stream_mode_from_a_subprocess_pipe(ckpt):
    rate, seconds = 16_000, 4.0
    pcm = (tone_noise(seconds, rate, channels=2) * 32767).astype("<i2").tobytes()
    proc = subprocess.run(
        [sys.executable, "-m", "asc", "predict", "-m", str(ckpt), "-", "--rate", str(rate), "--channels", "2",
         "--hop", "0.5", "--smooth", "2"],
        input=pcm, capture_output=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 5  # first at one clip (~2 s), then every 0.49 s up to 4 s
    times = [float(line.split()[0]) for line in lines]
    assert np.allclose(np.diff(times), 23 * 1024 / 48_000, atol=0.011)  # printed to 10 ms
    assert all(line.split()[2] in CLASSES for line in lines)
    assert "real-time factor" in proc.stderr.decode()


def test_stream_shorter_than_a_clip_is_an_error(ckpt, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(np.zeros(800, "<i2").tobytes())))
    with pytest.raises(SystemExit) as exit_:
        main(["-", "-m", str(ckpt), "--rate", "8000"])
    assert exit_.value.code == 1 and "ended after 0.10 s, before one 2 s clip" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["-", "-m", str(ckpt)])
    assert exit_.value.code == 2 and "needs --rate" in capsys.readouterr().err


# -- model sources --------------------------------------------------------------------------------------------
def test_checkpoint_carries_the_feature_settings(ckpt, predictor):
    import torch

    hp = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hp["features"] == asdict(FeatureSpec()) and hp["window"] == WINDOW and hp["clip"]["seconds"] == CLIP
    assert hp["feature_version"] == FEATURE_VERSION and hp["views"]["window_frames"] == FeatureSpec().window_frames(WINDOW)
    assert predictor.spec == FeatureSpec() and predictor.class_names == CLASSES and predictor.window == WINDOW


@pytest.mark.slow
def test_loading_from_an_mlflow_run(ckpt, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri()))
    client.log_artifact(run.info.run_id, str(ckpt), "checkpoints")
    for source in (f"runs:/{run.info.run_id}", run.info.run_id):
        p = load_predictor(source, uri)
        assert p.class_names == CLASSES and p.spec == FeatureSpec()
    with pytest.raises(ModelError, match="no MLflow run 'ffffffffffffffffffffffffffffffff'"):
        load_predictor("f" * 32, uri)
    with pytest.raises(ModelError, match="has no artifact 'nothing/here.ckpt'"):
        load_predictor(f"runs:/{run.info.run_id}/nothing/here.ckpt", uri)
    with pytest.raises(ModelError, match="no MLflow store"):
        load_predictor("f" * 32, f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.slow
def test_packaged_model_register_and_load(ckpt, tmp_path, monkeypatch):
    """The pyfunc (signature, input example) logs, registers under a name and loads as models:/name/version."""
    import mlflow

    from asc.cli.register import main as register_main
    from asc.tracking.packaging import MODEL_NAME
    from asc.tracking.packaging import log_model as log_pyfunc
    from asc.tracking.store import TrackingStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    client.log_metric(run_id, "best_val/acc", 0.5)
    client.set_terminated(run_id)
    image = image_from_audio(tone_noise(CLIP, 48_000)[:, 0], FeatureSpec())[None]
    store = TrackingStore(uri, explicit=True)
    model_uri = log_pyfunc(store, run_id, ckpt, image)
    with store.fluent():
        model = mlflow.pyfunc.load_model(model_uri)
    sig = model.metadata.signature
    assert sig.inputs.inputs[0].shape == (-1, 256, -1) and sig.outputs.input_names() == CLASSES
    probs = model.predict(np.concatenate([image, image]))
    assert list(probs.columns) == CLASSES and probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    expected = Predictor.from_checkpoint(ckpt).predict_image(image[0]).mean
    np.testing.assert_allclose(probs.iloc[0].to_numpy(), expected, atol=1e-5)

    assert store.best_run("t") == run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    register_main(["--best", "t", "scenes"])
    assert int(store.register(run_id, MODEL_NAME, "scenes").version) == 2
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    p = load_predictor("models:/scenes/1", uri)
    assert p.class_names == CLASSES and p.spec == FeatureSpec()
    with pytest.raises(ModelError, match="no such registered model"):
        load_predictor("models:/unknown/1", uri)
    with pytest.raises(SystemExit):
        register_main(["f" * 32, "scenes", "--tracking-uri", uri])
    import os

    assert "MLFLOW_TRACKING_URI" not in os.environ  # the fluent API's global URI did not leak


# -- bad input ------------------------------------------------------------------------------------------------
def test_model_from_another_feature_setup_is_refused(ckpt, clips, capsys):
    with pytest.raises(ModelError, match=r"trained on other features than expected: kind: 'cqt' != 'mel'"):
        Predictor.from_checkpoint(ckpt, expect=FeatureSpec(kind="mel", emphasis_alpha=None, magnitude=False))
    with pytest.raises(SystemExit) as exit_:
        main([str(clips["wav"]), "-m", str(ckpt), "--features", "mel"])
    assert exit_.value.code == 2 and "emphasis_alpha: 1484.536082474227 != None" in capsys.readouterr().err
    main([str(clips["wav"]), "-m", str(ckpt), "--features", "cqt"])  # the right expectation passes


def test_checkpoint_of_an_earlier_asc_is_refused(ckpt, tmp_path):
    """Images made by an earlier feature code differ (padding, resampler, 8-bit mapping): such a model is refused,
    not fed images it was not trained on."""
    old = torch.load(ckpt, weights_only=True)
    old["hyper_parameters"]["feature_version"] = FEATURE_VERSION - 1
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ModelError, match=f"computed by asc's feature code v{FEATURE_VERSION - 1}.*retrain"):
        Predictor.from_checkpoint(tmp_path / "old.ckpt")
    del old["hyper_parameters"]["features"]
    torch.save(old, tmp_path / "older.ckpt")
    with pytest.raises(ModelError, match="earlier version of asc"):
        Predictor.from_checkpoint(tmp_path / "older.ckpt")


def test_bad_model_sources(tmp_path, capsys):
    with pytest.raises(ModelError, match="no such checkpoint file"):
        load_predictor(str(tmp_path / "missing.ckpt"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_predictor(str(junk))
    with pytest.raises(ModelError, match="not an asc MLflow model"):
        load_predictor(str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        main(["x.wav", "-m", str(tmp_path / "missing.ckpt")])
    assert exit_.value.code == 2 and "--model " + str(tmp_path / "missing.ckpt") + ": no such file" in capsys.readouterr().err


def test_short_and_unreadable_files(predictor, tmp_path):
    sf.write(tmp_path / "short.flac", tone_noise(0.02, 44_100), 44_100)
    with pytest.raises(AudioError, match="short.flac: 0.020 s of audio is too short to classify"):
        predictor.predict_file(tmp_path / "short.flac")
    (tmp_path / "bad.mp3").write_bytes(b"\x00" * 64)
    with pytest.raises(AudioError, match="bad.mp3"):
        predictor.predict_file(tmp_path / "bad.mp3")
    with pytest.raises(AudioError, match="no such audio file"):
        predictor.predict_file(tmp_path / "absent.wav")
