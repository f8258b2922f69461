"""Architecture diagrams: a genome as a compact SVG, one box per block.

The picture is drawn from :func:`space.graph` (the same layer records the cost model sums),
so every shape and multiply-add count in it is the one the search scored. Boxes run top to
bottom in data-flow order: input, stem, the blocks (coloured by stage, with an arc for each
residual connection and a bar for the block's share of the multiply-adds), head, classifier.
The SVG is plain text with no scripts or external references, so optuna-dashboard, a browser
and the HTML report can all show it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from xml.sax.saxutils import escape

import networkx as nx

from space import Genome, graph
from space.stage_table import operator_text

from .common import format_count

__all__ = ["BlockBox", "block_boxes", "genome_svg"]

# One colour per stage (Okabe-Ito palette: distinguishable with colour blindness), cycled.
_STAGE_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
                  "#CC79A7", "#999999")
_FIXED_COLOUR = "#DDDDDD"
_BOX_WIDTH, _BOX_HEIGHT, _GAP = 300, 24, 6
_LEFT, _TOP = 70, 46


@dataclass(frozen=True)
class BlockBox:
    """One box of the diagram: a layer group and what it produces.

    ``stage`` is 1-based over the genome's stages (None for input, stem and head);
    ``out_shape`` is (channels, height, width) or (features,); ``flops`` are the group's
    multiply-adds per image; ``residual`` marks a block with an identity shortcut."""

    label: str
    out_shape: tuple[int, ...]
    flops: int
    stage: Optional[int] = None
    residual: bool = False


def _shape_text(shape: tuple[int, ...]) -> str:
    return "\u00d7".join(str(n) for n in shape)


def block_boxes(genome: Genome, layers: nx.DiGraph) -> list[BlockBox]:
    """Group the layer graph of ``genome`` into diagram boxes, in data-flow order."""
    stage_of_block = [index for index, stage in enumerate(genome.stages)
                      for _ in range(stage.num_layers)]
    grouped: dict[object, list[dict]] = {}
    for name, node in layers.nodes(data=True):
        block = node.get("block")
        if block is not None:
            key: object = ("block", block)
        elif name.startswith("stem"):
            key = "stem"
        elif name.startswith("head"):
            key = "head"
        elif name in ("pool", "dropout", "classifier"):
            key = "classifier"
        else:
            key = name
        grouped.setdefault(key, []).append(dict(node, name=name))
    boxes = []
    for key, nodes in grouped.items():
        flops = sum(node["flops"] for node in nodes)
        out_shape = tuple(nodes[-1]["out_shape"])
        if key == "input":
            boxes.append(BlockBox(label="input", out_shape=out_shape, flops=0))
        elif key == "stem":
            conv = nodes[0]
            boxes.append(BlockBox(label=f"Conv{conv['kernel_size']}x{conv['kernel_size']}, "
                                        f"stride {conv['stride']}",
                                  out_shape=out_shape, flops=flops))
        elif key == "head":
            boxes.append(BlockBox(label="Conv1x1", out_shape=out_shape, flops=flops))
        elif key == "classifier":
            boxes.append(BlockBox(label="pooling, FC", out_shape=out_shape, flops=flops))
        elif isinstance(key, tuple):
            stage_index = stage_of_block[key[1]]
            stage = genome.stages[stage_index]
            # the block's kxk convolution (depthwise, or the fused one) carries its stride
            main = next(n for n in nodes if n.get("main"))
            has_se = any(n["name"].endswith(".se_reduce") for n in nodes)
            se = f", SE{stage.se_ratio:g}" if has_se else ""
            stride = f", stride {main['stride']}" if main["stride"] != 1 else ""
            boxes.append(BlockBox(label=f"{operator_text(stage)}{se}{stride}",
                                  out_shape=out_shape, flops=flops, stage=stage_index + 1,
                                  residual=any(n["op"] == "add" for n in nodes)))
    return boxes


def _box_svg(box: BlockBox, y: float, *, first: bool, biggest: int) -> list[str]:
    """The SVG elements of one box at height ``y``: link from the box above, the box,
    its multiply-add bar, label, shape and count, and its residual arc."""
    colour = (_STAGE_COLOURS[(box.stage - 1) % len(_STAGE_COLOURS)] if box.stage
              else _FIXED_COLOUR)
    parts = []
    if not first:
        parts.append(f'<line x1="{_LEFT + _BOX_WIDTH / 2}" y1="{y - _GAP}" '
                     f'x2="{_LEFT + _BOX_WIDTH / 2}" y2="{y}" stroke="#555"/>')
    parts.append(f'<rect x="{_LEFT}" y="{y}" width="{_BOX_WIDTH}" height="{_BOX_HEIGHT}" '
                 f'rx="4" fill="{colour}" fill-opacity="0.55" stroke="#333"/>')
    bar = round((_BOX_WIDTH - 8) * box.flops / biggest, 1)
    if bar > 0:
        parts.append(f'<rect x="{_LEFT + 4}" y="{y + _BOX_HEIGHT - 5}" width="{bar}" '
                     f'height="3" fill="#222" fill-opacity="0.6"/>')
    parts.append(f'<text x="{_LEFT + 6}" y="{y + 15}">{escape(box.label)}</text>')
    parts.append(f'<text x="{_LEFT + _BOX_WIDTH - 6}" y="{y + 15}" text-anchor="end">'
                 f'{_shape_text(box.out_shape)}</text>')
    if box.flops:
        parts.append(f'<text x="{_LEFT + _BOX_WIDTH + 26}" y="{y + 15}" fill="#444">'
                     f'{format_count(box.flops)}</text>')
    if box.residual:
        # From just above the box (the block's input) round the right edge to its output.
        right = _LEFT + _BOX_WIDTH
        parts.append(f'<path d="M {right} {y - _GAP / 2} C {right + 20} {y - _GAP / 2}, '
                     f'{right + 20} {y + _BOX_HEIGHT}, {right} {y + _BOX_HEIGHT - 2}" '
                     'fill="none" stroke="#333" stroke-dasharray="3,2"/>')
    return parts


def genome_svg(genome: Genome, *, resolution: Optional[int] = None, num_classes: int = 1000,
               in_channels: int = 3, title: Optional[str] = None) -> str:
    """The SVG text of ``genome``'s diagram at ``resolution`` (default: its deployment
    resolution). The caption gives the totals of :func:`space.cost` (multiply-adds,
    parameters, activations), summed from the same graph."""
    layers = graph(genome, resolution, num_classes, in_channels)
    size = genome.resolution if resolution is None else resolution
    boxes = block_boxes(genome, layers)
    flops = sum(n["flops"] for _, n in layers.nodes(data=True))
    params = sum(n["params"] for _, n in layers.nodes(data=True))
    activations = sum(n["activations"] for _, n in layers.nodes(data=True))
    biggest = max(box.flops for box in boxes) or 1
    height = _TOP + len(boxes) * (_BOX_HEIGHT + _GAP) + 10
    width = _LEFT + _BOX_WIDTH + 150
    heading = title if title is not None else (genome.name or "genome")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
        f"<title>{escape(heading)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="8" y="16" font-size="13" font-weight="bold">{escape(heading)} at '
        f'{size}\u00d7{size}</text>',
        f'<text x="8" y="33" fill="#333">{format_count(flops)} multiply-adds, '
        f'{format_count(params)} parameters, {format_count(activations)} activations</text>',
    ]
    stage_spans: dict[int, list[int]] = {}
    for index, box in enumerate(boxes):
        y = _TOP + index * (_BOX_HEIGHT + _GAP)
        if box.stage:
            stage_spans.setdefault(box.stage, []).append(y)
        parts += _box_svg(box, y, first=index == 0, biggest=biggest)
    for stage, ys in stage_spans.items():
        top, bottom = ys[0], ys[-1] + _BOX_HEIGHT
        parts.append(f'<line x1="{_LEFT - 8}" y1="{top}" x2="{_LEFT - 8}" y2="{bottom}" '
                     'stroke="#333" stroke-width="2"/>')
        parts.append(f'<text x="{_LEFT - 12}" y="{(top + bottom) / 2 + 4}" '
                     f'text-anchor="end">stage {stage}</text>')
    parts.append(f'<text x="{_LEFT + _BOX_WIDTH + 26}" y="{_TOP - 4}" fill="#444" '
                 'font-size="10">multiply-adds</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
