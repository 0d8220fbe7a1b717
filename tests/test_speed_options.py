"""The speed options keep the numbers: matrix resize, fused normalise, channels-last, bf16, compile, and
end-to-end runs with the embedding cache and with bf16 + channels-last."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asc.data import augment
from asc.model.module import SceneClassifier


@pytest.mark.parametrize("shape", [(3, 256, 141), (3, 256, 328), (2, 40, 30)])
def test_resize_is_torch_bicubic(shape):
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    ref = F.interpolate(x.unsqueeze(1).float(), size=(64, 64), mode="bicubic", align_corners=False).squeeze(1).clamp(0, 255)
    assert torch.allclose(augment.resize(x, 64), ref, atol=0.02)


def test_to_network_layouts_agree():
    x = torch.rand(2, 16, 16) * 255
    plain, last = augment.to_network(x), augment.to_network(x, channels_last=True)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(plain, last)
    expected = (x / 255 - torch.tensor(augment.IMAGENET_MEAN)[1]) / torch.tensor(augment.IMAGENET_STD)[1]
    assert torch.allclose(plain[:, 1], expected, atol=1e-5)


def _pair(**kwargs):
    model = dict(backbone="small_cnn", pretrained=False, freeze=False, channels=(8, 16), hidden=(16,), dropout=0.0)
    torch.manual_seed(0)
    views = dict(window_frames=20, size=32)
    clip = dict(frames=50, seconds=1.05, pad="none")
    a = SceneClassifier(["a", "b", "c", "d"], model, views=views, clip=clip).eval()
    b = SceneClassifier(["a", "b", "c", "d"], model, views={**views, **kwargs.pop("views", {})}, clip=clip,
                        **kwargs).eval()
    b.load_state_dict(a.state_dict())
    return a, b


def test_channels_last_and_bf16_keep_the_logits():
    a, b = _pair(views=dict(channels_last=True))
    x = augment.train_batch(torch.randint(0, 256, (16, 24, 50), dtype=torch.uint8), 20, 32, 0.0)
    with torch.no_grad():
        ref = a(x)
        assert torch.allclose(b(x), ref, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = b(x)
    assert half.dtype == torch.bfloat16  # autocast ran the layers in bf16 ...
    assert (half.float() - ref).abs().max() < 0.05 * ref.abs().max() + 0.02  # ... to bf16's precision


def test_compile_switch_compiles_in_configure_model():
    _, b = _pair(compile=True)
    assert getattr(b.net, "_compiled_call_impl", None) is None  # nothing compiled before the trainer asks
    b.configure_model()
    assert b.net._compiled_call_impl is not None
    assert set(b.state_dict()) == set(_pair()[0].state_dict())  # checkpoints keep their names


def test_inputs_must_be_images_or_embeddings():
    with pytest.raises(ValueError, match="inputs"):
        _pair(inputs="spectra")


def _run(tmp_path, tiny_tau, monkeypatch, *overrides):
    from hydra import compose, initialize_config_dir

    from asc.runs.train import run
    from conftest import REPO, TINY_OVERRIDES

    paths = [
        f"data.root={tiny_tau}", f"paths.cache={tmp_path / 'cache'}", f"paths.outputs={tmp_path / 'out'}",
        f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"logger.artifacts={tmp_path / 'art'}",
        "trainer.max_epochs=1",
        "features.n_bins=240",  # top bin 9.9 kHz: valid at the tiny set's rate, whichever it is (32 or 48 kHz)
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*TINY_OVERRIDES, *paths, *overrides])
    # mlflow exports MLFLOW_TRACKING_URI, which asc.tracking.store prefers to the config: set it here, so that
    # monkeypatch takes it away again after the test (later runs, subprocesses too, would log into this store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return run(cfg)


@pytest.mark.slow
def test_run_trains_the_head_from_the_embedding_cache(tmp_path, tiny_tau, own_cache, monkeypatch):
    result = _run(tmp_path, tiny_tau, monkeypatch, "model.freeze=true", "model.embedding_cache.enabled=true", "mask=0.1")
    assert 0 <= result.test_acc <= 1
    entries = list((tmp_path / "cache").glob("embeddings-*/info.json"))
    assert len(entries) == 1
    with pytest.raises(ValueError, match="frozen"):
        _run(tmp_path, tiny_tau, monkeypatch, "model.freeze=false", "model.embedding_cache.enabled=true")


@pytest.mark.slow
def test_run_with_bf16_and_channels_last(tmp_path, tiny_tau, own_cache, monkeypatch):
    result = _run(tmp_path, tiny_tau, monkeypatch, "trainer.precision=bf16-mixed", "model.channels_last=true")
    assert 0 <= result.test_acc <= 1 and result.epochs >= 1
