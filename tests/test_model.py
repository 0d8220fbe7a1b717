from urllib.error import URLError

import pytest
import torch

from asc.model.networks import PretrainedWeightsError, SceneNet, load_vgg16, vgg16_weights_file


@pytest.mark.slow
def test_vgg16_backbone_is_frozen_and_head_is_the_papers():
    net = SceneNet(n_classes=10, backbone="vgg16", pretrained=False, hidden=(512,))
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(25088, 512), (512, 10)]
    net.train()
    assert not net.backbone.training and net.head.training  # the frozen part stays in eval mode
    assert net(torch.zeros(2, 3, 224, 224)).shape == (2, 10)


def test_reference_code_head_is_configurable():
    net = SceneNet(n_classes=10, backbone="small_cnn", pretrained=False, freeze=False, hidden=(512, 512))
    linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 10]
    assert all(p.requires_grad for p in net.parameters())


def _fake_weights(path):
    """A VGG16 state dict of the right shapes, stored tiny (stride-0 tensors): value k in tensor k."""
    from torchvision.models import vgg16

    state = {k: torch.full((1,), float(i)).expand(v.shape) for i, (k, v) in enumerate(vgg16(weights=None).state_dict().items())}
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


@pytest.mark.slow
def test_pretrained_weights_load_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = vgg16_weights_file()
    assert path == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    state = _fake_weights(path)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    net = load_vgg16(pretrained=True)
    for i, (key, value) in enumerate(net.state_dict().items()):
        assert torch.all(value == i), key
    assert len(state) == len(net.state_dict())


def test_missing_weights_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsError) as err:
        load_vgg16(pretrained=True)
    assert "vgg16-397923af.pth" in str(err.value) and str(tmp_path / "hub" / "checkpoints") in str(err.value)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="model.backbone"):
        SceneNet(n_classes=3, backbone="resnet")
