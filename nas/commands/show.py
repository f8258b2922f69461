"""``nas show``: a genome as the papers' Table 1 with its costs, or a search space."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from space import Genome, SearchSpace, cost, graph
from space.schema import STAGE_FIELDS
from space.search_space import DEFAULT_SPACE_PATH
from space.stage_table import stage_rows, stage_table

from ..common import (UsageError, atomic_write_text, check_writable_dir, format_count,
                      format_table, load_genome)
from ..diagram import genome_svg
from ..family import cost_context

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
        description="Print a genome as Table 1 of the EfficientNet paper (stem, stages 1..N, "
                    "head: operator, SE, layers, channels, stride, skip, input resolution) "
                    "with its multiply-adds, parameters and activations; or print a search "
                    "space's choices and size.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--genome", metavar="G", help="preset name or genome JSON file")
    what.add_argument("--space", nargs="?", const=str(DEFAULT_SPACE_PATH), metavar="FILE",
                      help="a space file (TOML/JSON); the built-in one when FILE is omitted")
    parser.add_argument("--resolution", type=int, help="input size for the costs "
                        "(default: the genome's deployment resolution)")
    parser.add_argument("--num-classes", type=int, help="classes of the costs (default: the "
                        "genome's search context, else ImageNet's 1000)")
    parser.add_argument("--in-channels", type=int, help="input channels of the costs (default: "
                        "the genome's search context, else 3)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--diagram", metavar="FILE.svg", help="also draw the genome as an SVG "
                        "diagram (one box per block, with shapes and multiply-adds)")
    parser.set_defaults(handler=run)


def genome_table(genome: Genome, resolution: int | None = None) -> str:
    """The stage table (:func:`space.stage_table.stage_table`) as aligned text."""
    headers, rows = stage_table(genome, genome.resolution if resolution is None else resolution)
    return format_table(list(headers), [list(row) for row in rows])


def run(args: argparse.Namespace) -> int:
    if args.space is not None:
        if args.diagram:
            raise UsageError("--diagram draws a genome; use it with --genome, not --space")
        return _show_space(args)
    genome = load_genome(args.genome)
    resolution = genome.resolution if args.resolution is None else args.resolution
    if resolution < 8 or (args.num_classes or 1) < 1 or (args.in_channels or 1) < 1:
        raise UsageError("--resolution must be >= 8 and --num-classes/--in-channels >= 1")
    # a searched best.json is costed for its own dataset, as the search summary reported it
    context = cost_context(genome, args.num_classes, args.in_channels)
    args.num_classes, args.in_channels = context.num_classes, context.in_channels
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
    print(f"{genome.name or 'genome'} at {resolution}x{resolution}, {context.describe()}")
    print(genome_table(genome, resolution))
    print(f"\nmultiply-adds {total.flops:,} ({format_count(total.flops)})   "
          f"parameters {total.params:,} ({format_count(total.params)})   "
          f"activations {total.activations:,} ({format_count(total.activations)})")
    layers = graph(genome, resolution, args.num_classes, args.in_channels)
    print(f"{genome.num_blocks} blocks, {layers.number_of_nodes() - 1} graph nodes")
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
    print(format_table(["stage", *(field.column or field.name for field in STAGE_FIELDS),
                        "choices"],
                       [[r["stage"], *(_choices_text(r[field.name]) for field in STAGE_FIELDS),
                         r["size"]] for r in rows]))
    print(f"\n{space.size():,} distinct genomes; multiply-adds from "
          f"{format_count(cost(small).flops)} to {format_count(cost(large).flops)} at "
          f"{space.resolution}px (3 channels, 1000 classes)")
    return 0


def _choices_text(value) -> str:
    return f"[{', '.join(map(str, value))}]" if isinstance(value, list) else str(value)
