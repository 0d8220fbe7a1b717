"""End to end: train the real config (shrunk), then predict with the run's model and the registered model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_then_predict_from_the_run_and_the_registry(tmp_path, monkeypatch, capsys):
    from hydra import compose, initialize_config_dir

    from asc.cli.register import main as register_main
    from asc.cli.predict import main as predict_main
    from asc.runs.train import run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        "experiment=demo_small_cnn", "data.synthetic.cities=[lyon]", "data.synthetic.locations_per_city=3",
        "data.synthetic.segments_per_location=2", "data.synthetic.duration=3.0", "window=1.0", "mask=0.1",
        "model.image_size=32", "model.channels=[8,16]", "model.hidden=[16]", "trainer.max_epochs=1", "progress=false",
        f"paths.data={tmp_path / 'data'}", f"paths.cache={tmp_path / 'cache'}", f"paths.outputs={tmp_path / 'out'}",
        f"logger.tracking_uri={uri}", f"logger.artifacts={tmp_path / 'art'}", "data.extract_workers=1",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    result = run(cfg)
    assert result.model_uri.startswith("models:/")

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "rec.ogg", 0.1 * rng.standard_normal((44_100 * 8, 2)).astype(np.float32), 44_100)
    predict_main([str(tmp_path / "rec.ogg"), "-m", f"runs:/{result.run_id}", "--tracking-uri", uri])
    out = capsys.readouterr().out
    assert "1 file(s) predicted, 0 failed" in out and "(slide)" in out  # 8 s > the 3 s training clips

    register_main(["--best", "asc-demo", "demo", "--tracking-uri", uri])
    assert "as models:/demo/1" in capsys.readouterr().out
    predict_main([str(tmp_path / "rec.ogg"), "-m", "models:/demo/1", "--tracking-uri", uri, "--windows", "eval"])
    assert "3 (eval)" in capsys.readouterr().out  # the fewest 3 s clips covering 8 s, as evaluation covers recordings
