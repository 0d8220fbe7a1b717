"""The trained model as ONNX: the views are the same pixels as training's, onnxruntime gives torch's probabilities,
and asc predict runs the file."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch

from asc.cli.export import main as export_main
from asc.cli.predict import main as predict_main
from asc.data.augment import ViewSpec
from asc.data.features import FeatureSpec
from asc.inference.export import ClipViews, OnnxPredictor, export
from asc.inference.predictor import ModelError, Predictor
from asc.model.module import SceneClassifier
from test_predict import CLASSES, tone_noise, write_checkpoint

HOP = 1024 / 48_000


@pytest.mark.slow
@pytest.mark.parametrize("crop", ["exact", "reference"])
@pytest.mark.parametrize("windows", ["centre", "cover"])
@pytest.mark.parametrize("window", [3.0, 9.0])
def test_the_exported_views_are_trainings_pixels(crop, windows, window):
    views = ViewSpec.for_clip(469, window, HOP, crop=crop, eval_windows=windows, size=96)
    clips = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 256, 469), dtype=np.uint8))
    with torch.no_grad():
        got = ClipViews(views, 256, 469)(clips)
    assert torch.equal(got, views.views_at(clips, views.eval_starts(256, 469)))  # bit for bit


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Predictor]:
    """A small CNN with the exact crop, and EfficientNet-Lite0 (ImageNet weights) with the reference crop."""
    folder = tmp_path_factory.mktemp("models")
    small = Predictor.from_checkpoint(write_checkpoint(folder / "small.ckpt", asdict(FeatureSpec())))
    torch.manual_seed(0)
    spec = FeatureSpec()
    views = ViewSpec.for_clip(spec.frames(2.0), 1.0, HOP, crop="reference", band="reference", size=64)
    module = SceneClassifier(CLASSES, dict(backbone="efficientnet_lite0", pretrained=True, freeze=True, hidden=[16]),
                             views=asdict(views), clip=dict(frames=spec.frames(2.0), seconds=2.0, pad="repeat"),
                             features=asdict(spec), window=1.0).eval()
    return {"small": small, "lite0": Predictor(module, spec, source="lite0")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small", "lite0"])
def test_onnxruntime_gives_torchs_probabilities(models, name, tmp_path):
    torch_predictor = models[name]
    checked = export(torch_predictor, tmp_path / "m.onnx")
    assert checked["max_abs_diff"] < 1e-4
    onnx_predictor = OnnxPredictor(tmp_path / "m.onnx")
    assert onnx_predictor.class_names == CLASSES and onnx_predictor.views == torch_predictor.views
    clips = np.random.default_rng(5).integers(0, 256, (7, 256, torch_predictor.clip_frames), dtype=np.uint8)
    np.testing.assert_allclose(onnx_predictor.classify(clips), torch_predictor.classify(clips), atol=1e-4)
    image = np.ascontiguousarray(np.random.default_rng(6).integers(0, 256, (256, 300), dtype=np.uint8))
    a, b = onnx_predictor.predict_image(image, hop=0.5), torch_predictor.predict_image(image, hop=0.5)
    assert a.mode == b.mode == "slide" and np.allclose(a.probs, b.probs, atol=1e-4)


@pytest.mark.slow
def test_asc_export_and_predict_with_the_file(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "best.ckpt", asdict(FeatureSpec()))
    export_main(["-m", str(ckpt), "--out", str(tmp_path / "scenes.onnx"), "--no-latency"])
    assert "onnxruntime vs torch: max |difference|" in capsys.readouterr().out
    sf.write(tmp_path / "rec.wav", tone_noise(5.0, 48_000), 48_000)
    for model in (ckpt, tmp_path / "scenes.onnx"):
        predict_main([str(tmp_path / "rec.wav"), "-m", str(model), "--json", str(tmp_path / f"{model.suffix}.json")])
    by_torch, by_onnx = (json.loads((tmp_path / f"{s}.json").read_text())["files"][0] for s in (".ckpt", ".onnx"))
    assert len(by_onnx["windows"]) == len(by_torch["windows"]) > 1
    for c in CLASSES:
        assert by_onnx["probs"][c] == pytest.approx(by_torch["probs"][c], abs=1e-4)


def test_a_foreign_onnx_file_is_refused(tmp_path):
    (tmp_path / "other.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match="not an ONNX model exported by asc export"):
        OnnxPredictor(tmp_path / "other.onnx")
