"""The supernet: every genome of a search space as a slice of one network.

The supernet *is* the largest genome of the space built by :func:`space.build`, so its
weights are those of a real network. A smaller genome runs on slices of them:

- **width** (``out_channels``) and **expansion ratio**: the leading channels of every
  convolution and batch-norm layer (once-for-all, BigNAS); a block without an expansion
  convolution (ratio 1) runs its depthwise convolution on the leading channels of the
  largest block's depthwise weights;
- **kernel size**: the centre of the largest kernel. Once-for-all learns a 25->9
  "kernel transform matrix" per layer instead; BigNAS trains the plain centre crop with
  the sandwich rule and in-place distillation as well, and the crop keeps the supernet
  a plain network whose every sub-network is exported by slicing alone (no learned
  parameters that exist only in the supernet);
- **layers per stage**: the first ``num_layers`` blocks of the stage;
- **squeeze-and-excitation**: the leading channels of the shared SE convolutions (a
  ratio of 0 skips the SE gate);
- **skip op**: a block adds its input when its stride is 1, its input and output widths
  agree and its stage's ``skip_op`` is "identity", exactly as
  :func:`space.resolve_blocks` decides for the genome (no weights involved);
- **conv op** (MBConv or Fused-MBConv): the two are different layers (a 1x1 expansion
  and a depthwise kxk, or one regular kxk convolution), so a stage offering both holds
  one candidate block per op at each layer, each elastic as above, and a sub-network
  runs the candidate of its op (the choice blocks of single-path one-shot NAS, Guo et
  al. 2020). Stem, head and classifier are shared by all.

Every number of a sub-network (expanded width, squeeze width, stride, residual,
drop-connect) comes from :func:`space.resolve_blocks` of its genome, the description
:func:`space.build` reads, so :meth:`Supernet.extract` can copy the slices into the
stand-alone network and both compute the same function.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from space import BlockSpec, Genome, NasError, SearchSpace, build, resolve_blocks
from space.model import MBConv, SqueezeExcitation, _drop_connect

__all__ = ["Supernet", "SupernetError", "check_shareable", "SHARED_CHOICES"]

# Stage fields whose choices the supernet shares weights over; a field of a space's
# StageChoices not named here and offering more than one value is refused up front.
SHARED_CHOICES = ("kernel_size", "expand_ratio", "se_ratio", "num_layers", "out_channels",
                  "stride", "conv_op", "skip_op")


class SupernetError(NasError):
    """A space the supernet cannot share weights over, or an unusable supernet artifact."""


def check_shareable(space: SearchSpace) -> None:
    """Refuse, in one line naming it, a choice the supernet cannot share weights over."""
    for index, choices in enumerate(space.stages):
        for name, values in choices.options.items():
            if name in SHARED_CHOICES or len(values) < 2:
                continue
            raise SupernetError(
                f"the supernet cannot share weights over stage {index + 1} {name} choices "
                f"{list(values)}: fix it to one value in the space file, or use another "
                "evaluator (proxy-train)")


def _parts(block: MBConv) -> dict[str, nn.Module]:
    """A block's layers by role: fused, or expand and depthwise; then se and project
    (those it has)."""
    layers = list(block.body)
    parts = {}
    if block.spec.conv_op == "fused":
        parts["fused"] = layers.pop(0)
    else:
        if block.spec.has_expansion:
            parts["expand"] = layers.pop(0)
        parts["depthwise"] = layers.pop(0)
    if block.spec.se_channels:
        parts["se"] = layers.pop(0)
    parts["project"] = layers.pop(0)
    return parts


def _shrink(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The leading ``shape`` of ``tensor`` in its channel dimensions and the centre in
    its kernel dimensions (dimensions 2 and 3 of a convolution weight)."""
    index = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape)):
        start = (have - want) // 2 if dim >= 2 else 0
        index.append(slice(start, start + want))
    return tensor[tuple(index)]


def _conv_bn(x: torch.Tensor, unit: nn.Sequential, *, out_channels: int, kernel_size: int,
             stride: int, depthwise: bool, training: bool) -> torch.Tensor:
    """``unit`` (convolution, batch norm, optional activation) on slices of its weights."""
    conv, norm = unit[0], unit[1]
    in_channels = 1 if depthwise else x.shape[1]
    weight = _shrink(conv.weight, (out_channels, in_channels, kernel_size, kernel_size))
    x = F.conv2d(x, weight, None, stride, (kernel_size - 1) // 2, 1,
                 out_channels if depthwise else 1)
    x = F.batch_norm(x, norm.running_mean[:out_channels], norm.running_var[:out_channels],
                     norm.weight[:out_channels], norm.bias[:out_channels], training,
                     norm.momentum, norm.eps)
    return unit[2](x) if len(unit) > 2 else x


def _squeeze_excite(x: torch.Tensor, gate: SqueezeExcitation, squeeze: int) -> torch.Tensor:
    channels = x.shape[1]
    scale = x.mean((2, 3), keepdim=True)
    scale = F.conv2d(scale, gate.reduce.weight[:squeeze, :channels], gate.reduce.bias[:squeeze])
    scale = F.conv2d(gate.activation(scale), gate.expand.weight[:channels, :squeeze],
                     gate.expand.bias[:channels])
    return x * torch.sigmoid(scale)


def _with_conv_op(genome: Genome, op: str, space: SearchSpace) -> Genome:
    """``genome`` with conv op ``op`` on every stage whose choices offer it."""
    stages = tuple(dataclasses.replace(stage, conv_op=op) if op in choices.options["conv_op"]
                   else stage for stage, choices in zip(genome.stages, space.stages))
    return dataclasses.replace(genome, stages=stages)


class Supernet(nn.Module):
    """The largest network of ``space``; ``forward(x, genome)`` runs any genome of it."""

    def __init__(self, space: SearchSpace, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        check_shareable(space)
        self.space = space
        self.num_classes = num_classes
        self.in_channels = in_channels
        largest = space.largest()
        self.net = build(largest, num_classes=num_classes, in_channels=in_channels)
        starts, first = [], 0
        for stage in largest.stages:
            starts.append(first)
            first += stage.num_layers
        self._stage_starts = tuple(starts)
        # The candidate blocks of the conv ops the largest genome does not use, by
        # "<block index>-<op>": the largest network of that op, one stage at a time.
        self.candidates = nn.ModuleDict()
        for op in sorted({op for c in space.stages for op in c.options["conv_op"]}):
            variant = build(_with_conv_op(largest, op, space), num_classes=num_classes,
                            in_channels=in_channels)
            for index, block in enumerate(variant.blocks):
                if block.spec.conv_op != self.net.blocks[index].spec.conv_op:
                    self.candidates[f"{index}-{op}"] = block
        # Module references only (they are registered above), by block index and op.
        self._parts = {(index, block.spec.conv_op): _parts(block)
                       for index, block in enumerate(self.net.blocks)}
        self._parts.update({(int(name.split("-")[0]), block.spec.conv_op): _parts(block)
                            for name, block in self.candidates.items()})

    def check(self, genome: Genome) -> None:
        why = self.space.why_not_contained(genome)
        if why:
            raise SupernetError(f"genome is not in the supernet's space ({self.space.source}): "
                                f"{why}")

    def _block_indices(self, genome: Genome) -> list[int]:
        """Which block of the largest network serves each block of ``genome``."""
        return [start + layer for start, stage in zip(self._stage_starts, genome.stages)
                for layer in range(stage.num_layers)]

    def _block(self, x: torch.Tensor, spec: BlockSpec, parts: dict[str, nn.Module]) -> torch.Tensor:
        inputs = x
        common = {"stride": 1, "depthwise": False, "training": self.training}
        if spec.conv_op == "fused":
            x = _conv_bn(x, parts["fused"], out_channels=spec.expanded_channels,
                         kernel_size=spec.kernel_size, **{**common, "stride": spec.stride})
        else:
            if spec.has_expansion:
                x = _conv_bn(x, parts["expand"], out_channels=spec.expanded_channels,
                             kernel_size=1, **common)
            x = _conv_bn(x, parts["depthwise"], out_channels=spec.expanded_channels,
                         kernel_size=spec.kernel_size,
                         **{**common, "stride": spec.stride, "depthwise": True})
        if spec.se_channels:
            x = _squeeze_excite(x, parts["se"], spec.se_channels)
        x = _conv_bn(x, parts["project"], out_channels=spec.out_channels, kernel_size=1,
                     **common)
        if spec.residual:
            x = _drop_connect(x, spec.drop_connect, self.training) + inputs
        return x

    def forward(self, x: torch.Tensor, genome: Genome) -> torch.Tensor:
        """Logits of the sub-network ``genome`` (which must lie in the space)."""
        self.check(genome)
        x = self.net.stem(x)
        for spec, index in zip(resolve_blocks(genome), self._block_indices(genome)):
            x = self._block(x, spec, self._parts[index, spec.conv_op])
        x = _conv_bn(x, self.net.head, out_channels=genome.head_channels, kernel_size=1,
                     stride=1, depthwise=False, training=self.training)
        pooled = F.dropout(x.mean((2, 3)), genome.dropout, self.training)
        return self.net.classifier(pooled)

    @torch.no_grad()
    def extract(self, genome: Genome) -> nn.Module:
        """The stand-alone ``space.build(genome)`` network with this supernet's weights
        (slices, copied): it computes what ``self(x, genome)`` computes."""
        self.check(genome)
        model = build(genome, num_classes=self.num_classes, in_channels=self.in_channels)
        pairs = [(model.stem, self.net.stem), (model.head, self.net.head),
                 (model.classifier, self.net.classifier)]
        for block, index in zip(model.blocks, self._block_indices(genome)):
            source = self._parts[index, block.spec.conv_op]
            pairs += [(unit, source[role]) for role, unit in _parts(block).items()]
        for target, source in pairs:
            shared = source.state_dict()
            for name, tensor in target.state_dict().items():
                tensor.copy_(_shrink(shared[name], tensor.shape))
        return model.to(next(self.net.parameters()).device)
