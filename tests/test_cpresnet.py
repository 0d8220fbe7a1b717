"""CP-ResNet (asc/model/cpresnet.py): its receptive field is what its formula says and grows with rho; it is a
backbone like the others, reached through a ``_target_`` mapping; experiment=cpresnet composes, is tagged
faithful=false and trains."""

from __future__ import annotations

import dataclasses
import json

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from asc.data.augment import ViewSpec
from asc.model.blocks import backbone_blocks
from asc.model.cpresnet import CPResNet, ResidualBlock, kernel_sizes, receptive_field
from asc.model.module import SceneClassifier
from asc.model.networks import BackboneError, SceneNet, backbone_id, make_backbone
from asc.runs.identity import config_hash, leaves, paper_differences
from asc.runs.train import RunSettings

TARGET = "asc.model.cpresnet.CPResNet"


def measured_receptive_field(net: CPResNet, size: int) -> tuple[int, int, bool]:
    """Rows and columns of a ``size`` x ``size`` input with a nonzero gradient of the centre position of the last
    feature map, and whether that extent stays clear of the input's border (else the measure is clipped).

    All weights positive, BatchNorm in eval mode with its initial statistics (a positive scale), an all-ones input:
    every pre-activation is positive, so no ReLU cuts a path and no gradient vanishes. A max pool passes the gradient
    to one element of its window only; the pools are measured as average pools of the same geometry."""
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, child_name, nn.AvgPool2d(child.kernel_size, child.stride))
    net = net.double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
    x = torch.ones(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    out = net.features(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    hit = x.grad[0].abs().sum(0) > 0
    rows, cols = hit.any(1).nonzero().flatten(), hit.any(0).nonzero().flatten()
    clear = bool(rows[0] > 0 and cols[0] > 0 and rows[-1] < size - 1 and cols[-1] < size - 1)
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1), clear


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0, 3, 6, 9])
def test_receptive_field_is_the_measured_one(rho):
    net = CPResNet(rho=rho, width=2, blocks=(2, 2, 2))
    *extent, clear = measured_receptive_field(net, size=256)
    assert clear, "the receptive field reaches the input's border: measure on a larger input"
    assert tuple(extent) == receptive_field(rho, (2, 2, 2)) == net.receptive_field


def test_receptive_field_grows_with_rho_and_rho_sets_the_3x3_convolutions():
    sizes = [receptive_field(rho, (2, 2, 2))[0] for rho in range(13)]
    assert all(a < b for a, b in zip(sizes, sizes[1:])), sizes
    assert sizes[6] == 83 and sizes[0] == 1 + 4 + 2 + 4 + 8  # stem 5x5/2, and the four 2x2/2 max pools
    net = CPResNet(rho=5, width=4, blocks=(1, 2, 1))
    block_convs = [m for stage in net.stages for block in stage if isinstance(block, ResidualBlock)
                   for m in block.body if isinstance(m, nn.Conv2d)]  # input first, the 1x1 shortcuts left out
    assert [m.kernel_size[0] for m in block_convs] == kernel_sizes(5, (1, 2, 1)) == [3] * 5 + [1] * 3
    with pytest.raises(ValueError, match="rho=9"):
        CPResNet(rho=9, blocks=(1, 2, 1))


def test_output_is_pooled_features_of_out_dim_and_it_has_blocks():
    net = CPResNet(rho=4, width=8, blocks=(1, 1, 1))
    assert net.out_dim == 32
    y = net(torch.rand(2, 3, 64, 80))
    assert y.shape == (2, 32)
    assert len(net.norm) == 2 and all(len(v) == 3 for v in net.norm)
    blocks = backbone_blocks(net)
    assert len(blocks) == 4 and blocks[0] == [net.stem]
    last_stage = SceneNet(3, backbone={"_target_": TARGET, "rho": 4, "width": 8, "blocks": [1, 1, 1]},
                         pretrained=False, freeze=False, hidden=(), unfreeze=1)
    trainable = {id(p) for p in last_stage.parameters() if p.requires_grad}
    assert all(id(p) in trainable for p in last_stage.backbone.stages[-1].parameters())
    assert not any(id(p) in trainable for p in last_stage.backbone.stem.parameters())


def test_a_target_mapping_builds_the_backbone():
    spec = {"_target_": TARGET, "rho": 3, "width": 4, "blocks": [1, 1]}
    for given in (spec, OmegaConf.create(spec)):  # a plain dict (checkpoints) or the Hydra node
        net = make_backbone(given, pretrained=False)
        assert isinstance(net, CPResNet) and net.rho == 3 and net.blocks_per_stage == (1, 1)
    scene = SceneNet(10, backbone=spec, pretrained=False, freeze=False, hidden=[])
    assert [type(m) for m in scene.head] == [nn.Linear] and scene.head[0].in_features == scene.backbone.out_dim == 8
    assert scene(torch.rand(2, 3, 48, 48)).shape == (2, 10)
    assert backbone_id(spec) == json.dumps(spec, sort_keys=True) and backbone_id("vgg16") == "vgg16"
    with pytest.raises(BackboneError, match="model.pretrained=false"):
        SceneNet(10, backbone=spec)  # pretrained defaults to true: refused, not silently random
    with pytest.raises(BackboneError, match="needs a _target_"):
        make_backbone({"rho": 3}, pretrained=False)
    with pytest.raises(BackboneError, match="not an nn.Module class"):
        make_backbone({"_target_": "os.system"}, pretrained=False)
    with pytest.raises(BackboneError, match="_args_"):
        make_backbone({"_target_": TARGET, "_args_": [3]}, pretrained=False)
    with pytest.raises(BackboneError, match="nested _target_"):
        make_backbone({"_target_": TARGET, "rho": {"_target_": "os.getpid"}}, pretrained=False)
    with pytest.raises(BackboneError, match="no out_dim"):
        make_backbone({"_target_": "torch.nn.Identity"}, pretrained=False)
    with pytest.raises(BackboneError, match="rho=30"):
        make_backbone({"_target_": TARGET, "rho": 30}, pretrained=False)


def test_the_experiment_composes_hashes_by_its_leaves_and_is_not_faithful(compose):
    cfg = compose("experiment=cpresnet", "data.root=/nowhere")
    s = RunSettings.from_config(cfg)
    assert s.network["backbone"] == {"_target_": TARGET, "rho": 6, "width": 64, "blocks": [2, 2, 2], "stem": 5}
    assert (s.network["pretrained"], s.network["freeze"], s.network["hidden"]) == (False, False, [])
    assert not s.cache.enabled and s.views["size"] == 128 and s.data.clip_seconds == 5.0 and s.data.split == "grouped"
    assert s.optim["_target_"].endswith("AdamWCosine") and "mixup" in s.augment and s.features.kind == "cqt"
    logged = leaves(OmegaConf.to_container(cfg, resolve=True))  # the MLflow params
    assert logged["model.backbone._target_"] == TARGET and logged["model.backbone.rho"] == 6
    assert config_hash(compose("experiment=cpresnet", "data.root=/nowhere", "model.backbone.rho=4")) != config_hash(cfg)
    assert config_hash(compose("experiment=cpresnet", "data.root=/elsewhere")) == config_hash(cfg)
    why = paper_differences(cfg)
    assert "model.backbone: CPResNet(rho=6, width=64, blocks=[2, 2, 2], stem=5) (paper: 'vgg16')" in why, why
    assert any(w.startswith("model.pretrained") for w in why) and any(w.startswith("optim: ") for w in why)
    assert compose("experiment=cpresnet", "features=mel").features.kind == "mel"


@pytest.mark.slow
def test_one_training_step_of_the_experiment(compose, tmp_path):
    s = RunSettings.from_config(compose("experiment=cpresnet", "data.root=/nowhere"))
    frames = 235  # 5 s of CQT frames at hop 1024 / 48 kHz
    views = ViewSpec.for_clip(frames, s.window, 1024 / 48_000, mask=s.mask, **s.views)
    torch.manual_seed(0)
    module = SceneClassifier(["a", "b", "c"], s.network, dataclasses.asdict(views), features=dataclasses.asdict(s.features),
                             clip=dict(frames=frames, seconds=5.0, pad="repeat"), augment=s.augment, optim=s.optim,
                             **s.training)
    stem = module.net.backbone.stem[0].weight.detach().clone()
    data = TensorDataset(torch.randint(0, 256, (4, 256, frames), dtype=torch.uint8), torch.randint(0, 3, (4,)))
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, DataLoader(data, batch_size=4))
    assert trainer.global_step == 1 and not torch.equal(module.net.backbone.stem[0].weight, stem)
    # the checkpoint carries the mapping: a predictor rebuilds the network from it (weights-only load)
    from asc.inference.predictor import Predictor

    trainer.save_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    predictor = Predictor.from_checkpoint(tmp_path / "m.ckpt")
    assert isinstance(predictor.module.net.backbone, CPResNet)
    assert torch.equal(predictor.module.net.backbone.stem[0].weight, module.net.backbone.stem[0].weight)


def test_experiment_best_is_the_measured_recipe_under_its_own_name(compose):
    # the recipe measured best in experiments/beyond-the-paper/README.md, exactly as its sweep was run
    measured = ("experiment=cpresnet", "augment=all", "model.eval_windows=cover", "data.root=/nowhere")
    best, cp = compose("experiment=best", "data.root=/nowhere"), compose(*measured)
    assert best.logger.experiment == "best" and cp.logger.experiment == "cpresnet"
    best.logger.experiment = cp.logger.experiment
    assert OmegaConf.to_container(best, resolve=True) == OmegaConf.to_container(cp, resolve=True)
    assert any(w.startswith("model.backbone") for w in paper_differences(best))
    tau = compose("experiment=best", "data=tau")  # the same recipe on TAU: the leakage-free split, not the paper's
    assert tau.data.kind == "tau" and tau.data.split == "grouped" and tau.model.backbone._target_.endswith("CPResNet")
