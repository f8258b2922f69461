"""Torch modules for a genome. Every number comes from :func:`space.blocks.resolve_blocks`,
the same description the analytic cost reads, so the two cannot disagree.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BlockSpec, resolve_blocks
from .genome import Genome
from .units import Unit

__all__ = ["build", "MBConv", "SqueezeExcitation", "EfficientNetLike", "unit_module"]

_ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU}


def _conv_bn_act(in_channels: int, out_channels: int, *, kernel_size: int, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] | None) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                  padding=(kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gating: pool, 1x1 reduce, activation, 1x1 expand, sigmoid, scale."""

    def __init__(self, channels: int, squeeze_channels: int,
                 activation: type[nn.Module]) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.activation = activation(inplace=True)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.expand(self.activation(self.reduce(scale)))
        return x * torch.sigmoid(scale)


def _drop_connect(x: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (Huang et al. 2016), as EfficientNet trains."""
    if not training or probability == 0.0:
        return x
    keep = 1.0 - probability
    mask = x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(keep)
    return x * mask / keep


class MBConv(nn.Module):
    """Inverted residual block of MobileNetV2 with optional SE (MnasNet, EfficientNet), or
    its fused form (EfficientNetV2's Fused-MBConv, timm's EdgeResidual) where one regular
    kxk convolution replaces the 1x1 expansion and the depthwise convolution."""

    def __init__(self, spec: BlockSpec, activation: type[nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        if spec.conv_op == "fused":
            layers.append(_conv_bn_act(spec.in_channels, spec.expanded_channels,
                                       kernel_size=spec.kernel_size, stride=spec.stride,
                                       activation=activation))
        else:
            if spec.has_expansion:
                layers.append(_conv_bn_act(spec.in_channels, spec.expanded_channels,
                                           kernel_size=1, activation=activation))
            layers.append(_conv_bn_act(spec.expanded_channels, spec.expanded_channels,
                                       kernel_size=spec.kernel_size, stride=spec.stride,
                                       groups=spec.expanded_channels, activation=activation))
        if spec.se_channels:
            layers.append(SqueezeExcitation(spec.expanded_channels, spec.se_channels, activation))
        layers.append(_conv_bn_act(spec.expanded_channels, spec.out_channels, kernel_size=1,
                                   activation=None))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.spec.residual:
            out = _drop_connect(out, self.spec.drop_connect, self.training) + x
        return out


class EfficientNetLike(nn.Module):
    """Stem, MBConv stages, head, pooling, dropout, classifier."""

    def __init__(self, genome: Genome, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        activation = _ACTIVATIONS[genome.activation]
        self.stem = _conv_bn_act(in_channels, genome.stem_channels, kernel_size=3, stride=2,
                                 activation=activation)
        self.blocks = nn.Sequential(*(MBConv(spec, activation)
                                      for spec in resolve_blocks(genome)))
        self.head = _conv_bn_act(genome.stages[-1].out_channels, genome.head_channels,
                                 kernel_size=1, activation=activation)
        self.dropout = nn.Dropout(genome.dropout)
        self.classifier = nn.Linear(genome.head_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's EfficientNet initialisation: fan-out He for convs, uniform linear.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / module.out_features ** 0.5
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map before pooling (class activation maps read it)."""
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean((2, 3))
        return self.classifier(self.dropout(pooled))


def build(genome: Genome, num_classes: int = 1000, in_channels: int = 3) -> EfficientNetLike:
    """The torch network of ``genome`` (ImageNet defaults: 1000 classes, RGB input)."""
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"num_classes and in_channels must be positive, got "
                         f"{num_classes} and {in_channels}")
    return EfficientNetLike(genome, num_classes=num_classes, in_channels=in_channels)


class _HeadUnit(nn.Module):
    """The head of :class:`EfficientNetLike` alone: 1x1 convolution, pooling, dropout,
    classifier (what a latency table times as the ``head`` unit)."""

    def __init__(self, unit: Unit, activation: type[nn.Module]) -> None:
        super().__init__()
        self.head = _conv_bn_act(unit.in_channels, unit.out_channels, kernel_size=1,
                                 activation=activation)
        self.dropout = nn.Dropout(0.0)
        self.classifier = nn.Linear(unit.out_channels, unit.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.head(x).mean((2, 3))))


def unit_module(unit: Unit) -> nn.Module:
    """The torch module of one :class:`~space.units.Unit`, built as :func:`build` builds
    it inside a network, in eval mode."""
    activation = _ACTIVATIONS[unit.activation]
    if unit.kind == "stem":
        module: nn.Module = _conv_bn_act(unit.in_channels, unit.out_channels, kernel_size=3,
                                         stride=2, activation=activation)
    elif unit.kind == "block":
        module = MBConv(unit.block_spec(), activation)
    else:
        module = _HeadUnit(unit, activation)
    return module.eval()
