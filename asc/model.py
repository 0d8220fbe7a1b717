"""Networks (plain ``nn.Module``s): a frozen ImageNet VGG16 or a small CNN, and the classifier head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn


class PretrainedWeightsError(RuntimeError):
    """The ImageNet weights are neither in the torch hub cache nor downloadable."""


def vgg16_weights_file() -> Path:
    """Where torchvision looks for (and downloads) the ImageNet VGG16 weights."""
    from torchvision.models import VGG16_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_Weights.IMAGENET1K_V1.url).name


def load_vgg16(pretrained: bool) -> nn.Module:
    """torchvision's VGG16; with ``pretrained``, its ImageNet weights through the weights API.

    Works offline when the weight file is already in the torch hub cache (``$TORCH_HOME/hub/checkpoints``).
    The file is loaded with ``weights_only=True``.
    """
    from torchvision.models import VGG16_Weights, vgg16

    net = vgg16(weights=None)
    if pretrained:
        weights = VGG16_Weights.IMAGENET1K_V1
        target = vgg16_weights_file()
        try:
            state = torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True, weights_only=True)
        except Exception as err:  # noqa: BLE001 - URLError offline, hash mismatch, corrupt file...
            raise PretrainedWeightsError(
                f"could not load the ImageNet VGG16 weights ({type(err).__name__}: {err}). "
                f"Put {weights.url} at {target} (or set TORCH_HOME), or train with model.pretrained=false."
            ) from err
        net.load_state_dict(state)
    return net


class VGG16Features(nn.Module):
    """VGG16's convolutional part and its 7x7 average pool: ``[B, 3, H, W] -> [B, 25088]``."""

    out_dim = 512 * 7 * 7

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        net = load_vgg16(pretrained)
        self.features = net.features
        self.pool = net.avgpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


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
        backbone: str = "vgg16",
        pretrained: bool = True,
        freeze: bool = True,
        hidden: Sequence[int] = (512,),
        dropout: float = 0.5,
        channels: Sequence[int] = (16, 32, 64, 128),
    ) -> None:
        super().__init__()
        if backbone == "vgg16":
            self.backbone: nn.Module = VGG16Features(pretrained)
        elif backbone == "small_cnn":
            self.backbone = SmallCNN(channels)
        else:
            raise ValueError(f"model.backbone: {backbone!r} is not one of 'vgg16', 'small_cnn'")
        self.freeze = freeze
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
            self.backbone.register_forward_pre_hook(_stay_in_eval)
        self.head = make_head(self.backbone.out_dim, hidden, n_classes, dropout)

    def train(self, mode: bool = True) -> SceneNet:
        super().train(mode)
        if self.freeze:
            self.backbone.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output ``[B, D]`` for ``[B, 3, H, W]`` (no autograd graph when frozen)."""
        if self.freeze:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
