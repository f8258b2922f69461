"""``nas latency``: measure this machine's latency table (``build``) and check how well it
predicts whole networks (``check``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from space import SearchSpace

from ..common import UsageError, atomic_write_json, format_count, format_table, parse_seed

EXAMPLES = """\
examples:
  nas latency build                          the default space at 224 px, 1 channel, 10 classes
  nas latency build --backend onnxruntime --threads 1
  nas latency build --space my_space.toml --resolution 160
  nas latency check --random 100 --out check.json
  nas search --target-latency 12ms --evaluator naswot --n-trials 100
  nas scale --genome runs/<study>/best.json --target-latency 10ms,20ms,40ms \\
      --num-classes 10 --in-channels 1

Tables live in runs/latency/<backend>-<fingerprint>.json unless --table says otherwise:
one per machine, backend, thread count and batch size. A build measures only what the
table lacks, so a killed build resumes where it stopped.
"""


def _timing_options(parser: argparse.ArgumentParser) -> None:
    from ..latency import BACKENDS

    group = parser.add_argument_group("what to time on")
    group.add_argument("--table", metavar="FILE",
                       help="table file (default: this machine's, runs/latency/<backend>-"
                            "<fingerprint>.json)")
    group.add_argument("--backend", choices=BACKENDS, default="torch",
                       help="torch eager on the CPU (default), onnxruntime on the CPU, or "
                            "cuda (synchronised timing)")
    group.add_argument("--threads", type=int, default=0,
                       help="CPU threads (default: torch's current setting)")
    group.add_argument("--batch-size", type=int, default=1, help="images per call (default 1)")


def _network_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the networks")
    group.add_argument("--space", dest="space_path", metavar="FILE",
                       help="search-space file (default: the built-in space)")
    group.add_argument("--resolution", type=int,
                       help="deployment resolution (default: the space's, 224)")
    group.add_argument("--num-classes", type=int, default=10,
                       help="classifier outputs (default 10, as Fashion-MNIST)")
    group.add_argument("--in-channels", type=int, default=1,
                       help="input channels (default 1, as Fashion-MNIST)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "latency", help="measure this machine's latency table and check its predictions",
        description="Measure, on this machine, the latency of every block a search space "
                    "can produce (build), and check the predictions of the table against "
                    "whole networks measured here (check). The search (--target-latency) "
                    "and the scaler (nas scale --target-latency) price genomes with it.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="measure the table (resumable)",
                               description="Measure every distinct unit (stem, MBConv block, "
                                           "head) of the space into the table, then a few "
                                           "whole networks to fit the per-network overhead.")
    _timing_options(build)
    _network_options(build)
    build.add_argument("--networks", type=int, default=12,
                       help="whole networks measured to fit the overhead (default 12)")
    build.add_argument("--rounds", type=int, default=5,
                       help="interleaved rounds per entry; the entry is their median (default 5)")
    build.add_argument("--repeats", type=int, default=5,
                       help="calls per round; the round keeps the fastest (default 5)")
    build.add_argument("--seed", type=parse_seed, default=0, help="seed of the random networks")
    build.set_defaults(handler=run_build)
    check = actions.add_parser("check", help="measure whole networks against the predictions",
                               description="Measure random genomes of the space, the presets "
                                           "and EfficientNet B0..B3 whole, and print how close "
                                           "the table's predictions are, beside how well "
                                           "multiply-adds, activations and parameters track "
                                           "the same measurements.")
    _timing_options(check)
    _network_options(check)
    check.add_argument("--random", type=int, default=30,
                       help="random genomes of the space (default 30)")
    check.add_argument("--family", type=int, default=3,
                       help="EfficientNet members B0..B<N> (official table; default 3; -1 none)")
    check.add_argument("--seed", type=parse_seed, default=1,
                       help="seed of the random genomes (default 1: not the build's)")
    check.add_argument("--out", metavar="FILE", help="also write the rows and summary as JSON")
    check.set_defaults(handler=run_check)


def _settings(args: argparse.Namespace, **extra):
    from ..latency import TimingSettings

    return TimingSettings(backend=args.backend, threads=args.threads,
                          batch_size=args.batch_size, **extra)


def _space_and_resolution(args: argparse.Namespace) -> tuple[SearchSpace, int]:
    if args.num_classes < 1 or args.in_channels < 1:
        raise UsageError("--num-classes and --in-channels must be >= 1")
    if args.resolution is not None and not 8 <= args.resolution <= 4096:
        raise UsageError("--resolution must be in [8, 4096]")
    space = SearchSpace.from_file(args.space_path) if args.space_path else SearchSpace.default()
    return space, args.resolution or space.resolution


def run_build(args: argparse.Namespace) -> int:
    from ..latency import Predictor, build_table, default_table_path
    from ..latency.use import format_ms

    space, resolution = _space_and_resolution(args)
    if args.networks < 0:
        raise UsageError("--networks must be >= 0")
    settings = _settings(args, rounds=args.rounds, repeats=args.repeats)
    path = Path(args.table) if args.table else default_table_path(settings)
    report = build_table(space, path=path, settings=settings, resolution=resolution,
                         num_classes=args.num_classes, in_channels=args.in_channels,
                         networks=args.networks, seed=args.seed, progress=not args.quiet)
    table = report.table
    overhead = table.overhead
    print(f"latency table {path}: {report.units_total} units of the space at {resolution} px "
          f"({report.units_measured} measured now), {report.networks_measured} whole networks "
          f"measured now; {report.seconds:.0f} s (the table took {table.build_seconds:.0f} s "
          f"of measuring in all)")
    print(f"measured with {table.describe()}")
    print(f"prediction = {overhead.scale:.3f} x sum of units + {format_ms(overhead.offset)} "
          f"(fitted on {overhead.networks} whole networks)")
    fastest, slowest = Predictor(table).extremes(space, resolution, args.num_classes,
                                                 args.in_channels)
    print(f"this space on this machine: fastest genome {format_ms(fastest.seconds)}, slowest "
          f"{format_ms(slowest.seconds)} predicted")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..latency import LatencyTable, check_networks, check_predictor, default_table_path
    from ..latency.use import format_ms

    space, resolution = _space_and_resolution(args)
    if args.random < 0 or not -1 <= args.family <= 7:
        raise UsageError("--random must be >= 0 and --family in [-1, 7]")
    path = Path(args.table) if args.table else default_table_path(_settings(args))
    table = LatencyTable.load(path, build_command=f"nas latency build --table {path}")
    networks = check_networks(space, resolution, random_count=args.random,
                              family_top=args.family, seed=args.seed,
                              num_classes=args.num_classes, in_channels=args.in_channels)
    if not networks:
        raise UsageError("nothing to check: give --random N or --family N")
    result = check_predictor(table, networks, progress=not args.quiet)
    print(format_table(
        ["network", "resolution", "multiply-adds", "activations", "predicted", "measured",
         "error"],
        [[row.label, row.resolution, format_count(row.flops), format_count(row.activations),
          format_ms(row.predicted), format_ms(row.measured), f"{100 * row.error:+.1f}%"]
         for row in result.rows]))
    s = result.summary
    print(f"\n{s['networks']} networks ({table.describe()}): within +-5% {s['within_5pct']:.0%}, "
          f"within +-10% {s['within_10pct']:.0%}, RMSE {s['rmse_ms']:.3f} ms "
          f"({s['rmse_relative']:.1%}), Spearman {s['spearman']:+.3f}")
    print(format_table(
        ["predictor of measured latency", "Spearman", "Pearson", "best line within +-10%"],
        [["latency table", f"{s['spearman']:+.3f}", "", f"{s['within_10pct']:.0%}"]]
        + [[name, f"{s[key]['spearman']:+.3f}", f"{s[key]['pearson']:+.3f}",
            f"{s[key]['line_within_10pct']:.0%}"]
           for name, key in (("multiply-adds", "flops"), ("activations", "activations"),
                             ("parameters", "params"))]))
    if args.out:
        atomic_write_json(args.out, {"summary": s, "rows": [
            {"network": r.label, "resolution": r.resolution, "predicted_s": r.predicted,
             "measured_s": r.measured, "spread": r.spread, "flops": r.flops,
             "activations": r.activations, "params": r.params} for r in result.rows]})
        print(f"written: {args.out}")
    return 0
