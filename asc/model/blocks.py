"""A backbone as its blocks, input to output, for fine-tuning the last ``model.unfreeze`` of them.

A block is a list of modules that run one after another (a VGG16 stage ending in its max-pool, an EfficientNet
stage, a ResNet layer). :func:`backbone_blocks` knows the backbones of :mod:`asc.model.networks`; a new network
that wants partial fine-tuning gives itself a ``blocks()`` method returning the same.
"""

from __future__ import annotations

from torch import nn

Block = list[nn.Module]


def _split_at_pools(seq: nn.Sequential) -> list[Block]:
    """A plain conv stack cut after each max-pool (VGG16's five stages, the small CNN's four)."""
    blocks: list[Block] = [[]]
    for layer in seq:
        blocks[-1].append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append([])
    return [b for b in blocks if b]


def backbone_blocks(backbone: nn.Module) -> list[Block]:
    """The blocks of ``backbone`` (an :func:`asc.model.networks.make_backbone` result), input first."""
    own = getattr(backbone, "blocks", None)
    if callable(own):
        return own()
    name = type(backbone).__name__
    if name in ("VGG16Features", "SmallCNN"):
        return _split_at_pools(backbone.features)
    net = getattr(backbone, "net", None)
    if name == "EfficientNetLite0Features":  # timm: stem, 7 stages, head conv
        return [[net.conv_stem, net.bn1], *([stage] for stage in net.blocks), [net.conv_head, net.bn2]]
    if name == "TorchvisionFeatures":
        if hasattr(net, "layer4"):  # resnet
            return [[net.conv1, net.bn1], [net.layer1], [net.layer2], [net.layer3], [net.layer4]]
        if hasattr(net, "trunk_output"):  # regnet
            return [[net.stem], *([stage] for stage in net.trunk_output)]
        if isinstance(getattr(net, "features", None), nn.Sequential):  # efficientnet, mobilenet, convnext
            return [[stage] for stage in net.features]
    raise ValueError(f"model.unfreeze: no known blocks for the {name} backbone; unfreeze it whole "
                     "(model.unfreeze=null) or give the backbone a blocks() method (asc/model/blocks.py)")
