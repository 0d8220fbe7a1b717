"""A receptive-field-regularised ResNet of the CP-ResNet family, trained from scratch (beyond the paper).

After Koutini, Eghbal-zadeh, Dorfer and Widmer, "The receptive field as a regularizer in deep convolutional neural
networks for acoustic scene classification" (DCASE 2019): a ResNet whose receptive field, not its depth or width,
is the knob. Deep CNNs whose receptive field covers the whole spectrogram overfit on scene classification; a
receptive field that spans only part of it generalises better. Here ``rho`` is the number of the residual blocks'
convolutions, counted from the input, that are 3x3; every later one is 1x1, so those layers mix channels without
seeing further. The depth, width and parameter count stay of the same order, and the receptive field grows with
``rho`` (:func:`receptive_field`, exact, in input pixels).

Layout (``[B, 3, S, S] -> [B, out_dim]``):

- stem: ``stem``x``stem`` convolution, stride 2, ``width`` channels, BatchNorm, ReLU, 2x2 max pool;
- stage ``s`` (of ``len(blocks)``): ``blocks[s]`` residual blocks of ``width * 2**s`` channels (conv, BN, ReLU, conv,
  BN, plus the input -- through a 1x1 conv and BN where the channel count changes -- then ReLU), a 2x2 max pool
  after every stage but the last;
- global average pool: ``out_dim = width * 2**(len(blocks) - 1)``.

The paper's network ends in a 1x1 convolution to the classes before the global pool; the head of
:class:`asc.model.networks.SceneNet` with ``model.hidden=[]`` is one linear layer after the pool, the same map
(a linear layer commutes with the average).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from asc.data.augment import IMAGENET_MEAN, IMAGENET_STD, Norm


def kernel_sizes(rho: int, blocks: Sequence[int]) -> list[int]:
    """The kernel size of each residual-block convolution, input first (two per block): 3 for the first ``rho``,
    1 for the rest."""
    n = 2 * sum(blocks)
    if not 0 <= rho <= n:
        raise ValueError(f"rho={rho}: must be in [0, {n}], the number of block convolutions of blocks={list(blocks)}")
    return [3 if i < rho else 1 for i in range(n)]


def layers(rho: int, blocks: Sequence[int], stem: int = 5) -> list[tuple[int, int]]:
    """``(kernel, stride)`` of each layer on the network's widest path, input first (the shortcuts are 1x1)."""
    kernels = iter(kernel_sizes(rho, blocks))
    out = [(stem, 2), (2, 2)]  # stem conv, max pool
    for s, n in enumerate(blocks):
        out += [(next(kernels), 1) for _ in range(2 * n)]
        if s < len(blocks) - 1:
            out.append((2, 2))
    return out


def receptive_field(rho: int, blocks: Sequence[int] = (2, 2, 2), stem: int = 5) -> tuple[int, int]:
    """The receptive field of one output position of the last feature map, in input pixels ``(height, width)``.

    A layer of kernel ``k`` adds ``(k - 1)`` times the product of the strides before it (``r = 1 + sum (k_i - 1)
    j_i``). The kernels are square, so both axes are the same; on a spectrogram image the height is frequency and
    the width time.
    """
    r, jump = 1, 1
    for k, stride in layers(rho, blocks, stem):
        r += (k - 1) * jump
        jump *= stride
    return r, r


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(c_out)]


class ResidualBlock(nn.Module):
    """``relu(bn(conv_k2(relu(bn(conv_k1(x))))) + shortcut(x))``; the shortcut is a 1x1 conv + BN when the channel
    count changes."""

    def __init__(self, c_in: int, c_out: int, k1: int, k2: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out, k1), nn.ReLU(inplace=True), *_conv_bn(c_out, c_out, k2))
        self.shortcut = nn.Sequential(*_conv_bn(c_in, c_out, 1)) if c_in != c_out else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class CPResNet(nn.Module):
    """The backbone (``model.backbone: {_target_: asc.model.cpresnet.CPResNet, rho: ..., ...}``).

    Args:
        rho: how many of the block convolutions, from the input, are 3x3 (the rest 1x1): the receptive field.
        width: channels of the stem and the first stage; each later stage doubles them.
        blocks: residual blocks per stage.
        stem: kernel size of the stride-2 input convolution.
    """

    def __init__(self, rho: int = 6, width: int = 32, blocks: Sequence[int] = (2, 2, 2), stem: int = 5) -> None:
        super().__init__()
        if width < 1 or not blocks or any(n < 1 for n in blocks) or stem < 1 or stem % 2 == 0:
            raise ValueError(f"CPResNet: width={width} >= 1, blocks={list(blocks)} (at least one stage, each of at least "
                             f"one block) and an odd stem={stem} expected")
        self.rho, self.width, self.blocks_per_stage, self.stem_kernel = rho, width, tuple(blocks), stem
        kernels = iter(kernel_sizes(rho, blocks))
        self.stem = nn.Sequential(*_conv_bn(3, width, stem, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        stages: list[nn.Module] = []
        c_in = width
        for s, n in enumerate(blocks):
            c = width * 2 ** s
            layer: list[nn.Module] = []
            for _ in range(n):
                layer.append(ResidualBlock(c_in, c, next(kernels), next(kernels)))
                c_in = c
            if s < len(blocks) - 1:
                layer.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layer))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c_in
        self.norm: Norm = (IMAGENET_MEAN, IMAGENET_STD)  # trained from scratch: any fixed normalisation does
        #: ``(height, width)`` in input pixels (:func:`receptive_field`)
        self.receptive_field = receptive_field(rho, blocks, stem)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map ``[B, out_dim, h, w]``, before the global pool."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)

    def blocks(self) -> list[list[nn.Module]]:
        """The stem, then one block per stage (:mod:`asc.model.blocks`, for ``model.unfreeze``)."""
        return [[self.stem], *([stage] for stage in self.stages)]
