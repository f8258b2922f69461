"""``nas show``: a genome as the papers' Table 1 with its costs, or a search space."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from space import Genome, SearchSpace, cost, graph
from space.blocks import conv_output_size
from space.search_space import DEFAULT_SPACE_PATH

from ..common import (UsageError, atomic_write_text, check_writable_dir, format_count,
                      format_table, load_genome)
from ..diagram import genome_svg

EXAMPLES = """\
examples:
  nas show --genome efficientnet-b0
  nas show --genome runs/<study>/best.json --json
  nas show --genome mnasnet-a1 --resolution 32 --num-classes 10 --in-channels 1
  nas show --genome runs/<study>/best.json --diagram best.svg
  nas show --space                 (the built-in space)
  nas show --space my_space.toml
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "show", help="print a genome's stage table and costs, or a search space",
        description="Print a genome as Table 1 of the EfficientNet paper (stage, operator, "
                    "input resolution, channels, layers) with its multiply-adds, parameters "
                    "and activations; or print a search space's choices and size.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--genome", metavar="G", help="preset name or genome JSON file")
    what.add_argument("--space", nargs="?", const=str(DEFAULT_SPACE_PATH), metavar="FILE",
                      help="a space file (TOML/JSON); the built-in one when FILE is omitted")
    parser.add_argument("--resolution", type=int, help="input size for the costs "
                        "(default: the genome's deployment resolution)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--diagram", metavar="FILE.svg", help="also draw the genome as an SVG "
                        "diagram (one box per block, with shapes and multiply-adds)")
    parser.set_defaults(handler=run)


def stage_rows(genome: Genome, resolution: int) -> list[dict]:
    """Rows of the paper's Table 1: stem, one row per stage, head."""
    size = resolution
    rows = [{"stage": 1, "operator": "Conv3x3", "resolution": size,
             "channels": genome.stem_channels, "layers": 1, "stride": 2}]
    size = conv_output_size(size, 3, 2)
    for index, stage in enumerate(genome.stages):
        se = f", SE{stage.se_ratio:g}" if stage.se_ratio else ""
        rows.append({"stage": index + 2,
                     "operator": f"{stage.operator}, k{stage.kernel_size}x{stage.kernel_size}{se}",
                     "resolution": size, "channels": stage.out_channels,
                     "layers": stage.num_layers, "stride": stage.stride})
        size = conv_output_size(size, stage.kernel_size, stage.stride)
    rows.append({"stage": len(genome.stages) + 2, "operator": "Conv1x1, pooling, FC",
                 "resolution": size, "channels": genome.head_channels, "layers": 1, "stride": 1})
    return rows


def genome_table(genome: Genome, resolution: int | None = None) -> str:
    size = genome.resolution if resolution is None else resolution
    return format_table(["stage", "operator", "resolution", "channels", "layers"],
                        [[r["stage"], r["operator"], f"{r['resolution']}x{r['resolution']}",
                          r["channels"], r["layers"]] for r in stage_rows(genome, size)])


def run(args: argparse.Namespace) -> int:
    if args.space is not None:
        if args.diagram:
            raise UsageError("--diagram draws a genome; use it with --genome, not --space")
        return _show_space(args)
    genome = load_genome(args.genome)
    resolution = genome.resolution if args.resolution is None else args.resolution
    if resolution < 8 or args.num_classes < 1 or args.in_channels < 1:
        raise UsageError("--resolution must be >= 8 and --num-classes/--in-channels >= 1")
    total = cost(genome, resolution, args.num_classes, args.in_channels)
    if args.diagram:
        target = Path(args.diagram)
        if target.suffix.lower() != ".svg" or target.is_dir():
            raise UsageError(f"--diagram {args.diagram!r} must be an .svg file name")
        check_writable_dir(target.parent, "diagram folder")
        atomic_write_text(target, genome_svg(genome, resolution=resolution,
                                             num_classes=args.num_classes,
                                             in_channels=args.in_channels))
    if args.json:
        print(json.dumps({"genome": genome.to_dict(), "resolution": resolution,
                          "num_classes": args.num_classes, "in_channels": args.in_channels,
                          "flops": total.flops, "params": total.params,
                          "activations": total.activations,
                          "stages": stage_rows(genome, resolution)}, indent=2))
        return 0
    print(f"{genome.name or 'genome'} at {resolution}x{resolution}, {args.in_channels} input "
          f"channel(s), {args.num_classes} classes")
    print(genome_table(genome, resolution))
    print(f"\nmultiply-adds {total.flops:,} ({format_count(total.flops)})   "
          f"parameters {total.params:,} ({format_count(total.params)})   "
          f"activations {total.activations:,} ({format_count(total.activations)})")
    layers = graph(genome, resolution, args.num_classes, args.in_channels)
    print(f"{genome.num_blocks} MBConv blocks, {layers.number_of_nodes() - 1} graph nodes")
    if args.diagram:
        print(f"diagram: {args.diagram}")
    return 0


def _show_space(args: argparse.Namespace) -> int:
    space = SearchSpace.from_file(args.space)
    small, large = space.smallest(), space.largest()
    rows = space.describe()
    if args.json:
        print(json.dumps({"source": space.source, "size": space.size(), "stages": rows,
                          "smallest_flops": cost(small).flops,
                          "largest_flops": cost(large).flops}, indent=2))
        return 0
    print(f"search space {space.source}: stem {space.stem_channels}, head "
          f"{space.head_channels}, {space.activation}, deployment {space.resolution}px")
    print(format_table(["stage", "stride", "kernel", "expand", "se", "layers", "channels", "choices"],
                       [[r["stage"], r["stride"], r["kernel_size"], r["expand_ratio"],
                         r["se_ratio"], r["num_layers"], r["out_channels"], r["size"]]
                        for r in rows]))
    print(f"\n{space.size():,} distinct genomes; multiply-adds from "
          f"{format_count(cost(small).flops)} to {format_count(cost(large).flops)} at "
          f"{space.resolution}px (3 channels, 1000 classes)")
    return 0
