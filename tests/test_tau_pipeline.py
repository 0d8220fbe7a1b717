"""The TAU workflow from the command line, on a generated set in TAU's exact layout and format (48 kHz, 24 bit,
stereo, TAU's names and locations; 1 s clips to stay fast): download from a local server, verify, the three
splits with their leakage, extraction, and a training run that finds the cache filled."""

from __future__ import annotations

from pathlib import Path

import pytest

from asc.data.scenes import DEV_DIRNAME


@pytest.mark.slow
def test_download_verify_extract_train(tmp_path, capsys, monkeypatch):
    import mlflow
    from hydra import compose, initialize_config_dir
    from test_download import Zenodo, _zip

    from asc.cli.extract import main as extract
    from asc.cli.verify import main as verify
    from asc.data.dataset import read_tau
    from asc.data.download import RECORD
    from asc.cli.download import main as download
    from asc.data.splits import leakage, make_split
    from asc.data.synth import SynthConfig, generate
    from asc.runs.train import run

    # Zenodo's archives, in miniature: 10 scenes x 1 city x 3 locations x 2 segments, 1 s each
    src = generate(tmp_path / "src" / DEV_DIRNAME,
                   SynthConfig(cities=("lyon",), locations_per_city=3, segments_per_location=2, duration=1.0),
                   progress=False)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    rel = lambda p: f"{DEV_DIRNAME}/{p.relative_to(src).as_posix()}"  # noqa: E731
    wavs = [p for p in files if p.suffix == ".wav"]
    server = Zenodo({
        f"{DEV_DIRNAME}.audio.1.zip": _zip({rel(p): p.read_bytes() for p in wavs[:30]}),
        f"{DEV_DIRNAME}.audio.2.zip": _zip({rel(p): p.read_bytes() for p in wavs[30:]}),
        f"{DEV_DIRNAME}.meta.zip": _zip({rel(p): p.read_bytes() for p in files if p.suffix == ".csv"}),
        f"{DEV_DIRNAME}.doc.zip": _zip({f"{DEV_DIRNAME}/README.md": b"doc\n"}),
    })
    try:
        download([str(tmp_path / "data"), "--record-url", f"{server.url}/api/records/{RECORD}", "--no-progress"])
    finally:
        server.server.shutdown()
        server.server.server_close()
    root = tmp_path / "data" / DEV_DIRNAME
    assert f"{root}: ready" in capsys.readouterr().out

    verify([str(root), "--no-progress"])
    out = capsys.readouterr().out
    assert "60 clips listed, 60 present" in out and "sample rates (Hz): 48000 60" in out
    assert "channels: 2 60" in out and "formats: PCM_24 60" in out

    df = read_tau(root)
    figures = {name: leakage(df, make_split(df, name)) for name in ("paper", "grouped", "fold1")}
    assert figures["paper"] > 0 and figures["grouped"] == 0 and figures["fold1"] == 0

    extract([str(root), "--cache", str(tmp_path / "cache"), "--workers", "2", "--no-progress"])
    assert "60 computed, 0 already cached, 0 skipped" in capsys.readouterr().out

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"paths.data={tmp_path / 'data'}", f"paths.cache={tmp_path / 'cache'}", "data.split=fold1",
            "model=small_cnn", "model.image_size=64", "trainer.max_epochs=1", "window=0.5", "progress=false",
            "data.clip_seconds=1.0",  # the generated clips are 1 s long, TAU's 10
            f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"logger.artifacts={tmp_path / 'art'}",
        ])
    # mlflow.set_tracking_uri (called by Lightning) exports MLFLOW_TRACKING_URI, which asc.tracking.store prefers to the
    # config: an earlier run in this process would otherwise redirect this one to its store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run(cfg)
    metrics = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(result.run_id).data.metrics
    assert metrics["split/leakage"] == 0.0 and metrics["split/test"] == 20 and metrics["data/skipped"] == 0
    assert metrics["split/train"] == 20 and metrics["split/val"] == 20
