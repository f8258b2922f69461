"""The layer graph of a genome and its analytic cost, without building torch modules.

Units (ARCHITECTURE.md): ``flops`` are multiply-adds, as in the MnasNet and EfficientNet
papers; ``activations`` are the elements in the outputs of conv and linear layers
(Dollar et al. 2021); ``params`` are trainable parameters. All three are per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import networkx as nx

from .blocks import BlockSpec, conv_output_size, resolve_blocks
from .genome import Genome

__all__ = ["Cost", "graph", "cost"]


@dataclass(frozen=True)
class Cost:
    """Per-image cost of a network.

    ``flops`` counts multiply-adds of convolutions and linear layers only: the
    element-wise work (batch norm, activations, SE gating, residual adds, pooling and
    bias additions) is not counted, exactly as ``torch.utils.flop_counter`` leaves it
    out, so ``flops == FlopCounterMode total / 2``.
    """

    flops: int
    params: int
    activations: int


class _LayerWriter:
    """Records layers in data-flow order, tracking the current tensor shape.

    The records are the single description: :func:`graph` turns them into a networkx
    graph and :func:`cost` sums them directly (skipping networkx keeps cost() cheap
    enough to call thousands of times per search).
    """

    def __init__(self, in_shape: tuple[int, int, int]) -> None:
        self.layers: dict[str, dict] = {
            "input": dict(op="input", in_shape=in_shape, out_shape=in_shape, flops=0,
                          params=0, activations=0, block=None, inputs=())}
        self.last = "input"

    def add(self, name: str, op: str, out_shape: tuple[int, ...], *, flops: int = 0,
            params: int = 0, activations: int = 0, inputs: Optional[list[str]] = None,
            block: Optional[int] = None, **attrs) -> str:
        sources = tuple(inputs or [self.last])
        self.layers[name] = dict(op=op, in_shape=self.layers[sources[0]]["out_shape"],
                                 out_shape=out_shape, flops=flops, params=params,
                                 activations=activations, block=block, inputs=sources, **attrs)
        self.last = name
        return name

    def conv(self, name: str, *, in_channels: int, out_channels: int, kernel_size: int,
             stride: int = 1, groups: int = 1, bias: bool = False, block=None,
             main: bool = False) -> str:
        channels, height, width = self.layers[self.last]["out_shape"]
        assert channels == in_channels, f"{name}: {channels} != {in_channels}"
        out_h = conv_output_size(height, kernel_size, stride)
        out_w = conv_output_size(width, kernel_size, stride)
        weights = out_channels * (in_channels // groups) * kernel_size * kernel_size
        outputs = out_channels * out_h * out_w
        return self.add(name, "conv", (out_channels, out_h, out_w),
                        flops=weights * out_h * out_w,
                        params=weights + (out_channels if bias else 0),
                        activations=outputs, block=block, kernel_size=kernel_size,
                        stride=stride, groups=groups, **({"main": True} if main else {}))

    def norm(self, name: str, block=None) -> str:
        shape = self.layers[self.last]["out_shape"]
        return self.add(name, "batchnorm", shape, params=2 * shape[0], block=block)

    def elementwise(self, name: str, op: str, inputs: Optional[list[str]] = None,
                    block=None) -> str:
        source = (inputs or [self.last])[0]
        return self.add(name, op, self.layers[source]["out_shape"], inputs=inputs,
                        block=block)


def _add_block(writer: _LayerWriter, spec: BlockSpec, activation: str) -> None:
    prefix = f"blocks.{spec.block_index}"
    block_input = writer.last
    if spec.conv_op == "fused":
        main, main_in, groups = "fused", spec.in_channels, 1
    else:
        main, main_in, groups = "depthwise", spec.expanded_channels, spec.expanded_channels
        if spec.has_expansion:
            writer.conv(f"{prefix}.expand", in_channels=spec.in_channels,
                        out_channels=spec.expanded_channels, kernel_size=1,
                        block=spec.block_index)
            writer.norm(f"{prefix}.expand_bn", block=spec.block_index)
            writer.elementwise(f"{prefix}.expand_act", activation, block=spec.block_index)
    # The block's kxk convolution: depthwise on the expanded width, or (fused) a regular
    # one from the block's input to the expanded width.
    writer.conv(f"{prefix}.{main}", in_channels=main_in,
                out_channels=spec.expanded_channels, kernel_size=spec.kernel_size,
                stride=spec.stride, groups=groups, block=spec.block_index, main=True)
    writer.norm(f"{prefix}.{main}_bn", block=spec.block_index)
    features = writer.elementwise(f"{prefix}.{main}_act", activation, block=spec.block_index)
    if spec.se_channels:
        channels, _, _ = writer.layers[features]["out_shape"]
        writer.add(f"{prefix}.se_pool", "avgpool", (channels, 1, 1), block=spec.block_index)
        writer.conv(f"{prefix}.se_reduce", in_channels=channels, out_channels=spec.se_channels,
                    kernel_size=1, bias=True, block=spec.block_index)
        writer.elementwise(f"{prefix}.se_act", activation, block=spec.block_index)
        writer.conv(f"{prefix}.se_expand", in_channels=spec.se_channels, out_channels=channels,
                    kernel_size=1, bias=True, block=spec.block_index)
        gate = writer.elementwise(f"{prefix}.se_gate", "sigmoid", block=spec.block_index)
        writer.elementwise(f"{prefix}.se_scale", "mul", inputs=[features, gate],
                           block=spec.block_index)
    writer.conv(f"{prefix}.project", in_channels=spec.expanded_channels,
                out_channels=spec.out_channels, kernel_size=1, block=spec.block_index)
    writer.norm(f"{prefix}.project_bn", block=spec.block_index)
    if spec.residual:
        writer.elementwise(f"{prefix}.add", "add", inputs=[writer.last, block_input],
                           block=spec.block_index)


def _layers(genome: Genome, resolution: Optional[int], num_classes: int,
            in_channels: int) -> dict[str, dict]:
    size = genome.resolution if resolution is None else resolution
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"resolution must be a positive integer, got {size!r}")
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"num_classes and in_channels must be positive, got "
                         f"{num_classes} and {in_channels}")
    activation = genome.activation
    writer = _LayerWriter((in_channels, size, size))
    writer.conv("stem", in_channels=in_channels, out_channels=genome.stem_channels,
                kernel_size=3, stride=2)
    writer.norm("stem_bn")
    writer.elementwise("stem_act", activation)
    for spec in resolve_blocks(genome):
        _add_block(writer, spec, activation)
    last_channels = genome.stages[-1].out_channels
    writer.conv("head", in_channels=last_channels, out_channels=genome.head_channels,
                kernel_size=1)
    writer.norm("head_bn")
    writer.elementwise("head_act", activation)
    writer.add("pool", "avgpool", (genome.head_channels,))
    writer.add("dropout", "dropout", (genome.head_channels,))
    weights = genome.head_channels * num_classes
    writer.add("classifier", "linear", (num_classes,), flops=weights,
               params=weights + num_classes, activations=num_classes)
    return writer.layers


def graph(genome: Genome, resolution: Optional[int] = None, num_classes: int = 1000,
          in_channels: int = 3) -> nx.DiGraph:
    """One node per layer, in data-flow order, with ``op``, ``in_shape``/``out_shape``
    (C, H, W), the stage ``block`` index and the node's ``flops`` (multiply-adds),
    ``params`` and ``activations``; a block's kxk convolution (``.depthwise``, or
    ``.fused`` for a Fused-MBConv block) has ``main=True``. Edges follow the data,
    residual paths included.

    ``resolution`` defaults to the genome's deployment resolution.
    """
    result = nx.DiGraph()
    for name, layer in _layers(genome, resolution, num_classes, in_channels).items():
        attrs = {key: value for key, value in layer.items() if key != "inputs"}
        result.add_node(name, **attrs)
        result.add_edges_from((source, name) for source in layer["inputs"])
    return result


def cost(genome: Genome, resolution: Optional[int] = None, num_classes: int = 1000,
         in_channels: int = 3) -> Cost:
    """Multiply-adds, parameters and activations per image: the sums over the layers of
    :func:`graph` (read from the same records, without the networkx overhead)."""
    layers = _layers(genome, resolution, num_classes, in_channels).values()
    return Cost(flops=sum(layer["flops"] for layer in layers),
                params=sum(layer["params"] for layer in layers),
                activations=sum(layer["activations"] for layer in layers))
