"""``nas supernet train``: train the weight-sharing supernet of a search space once, as
the artifact that ``nas search --evaluator supernet`` reuses."""

from __future__ import annotations

import argparse
import dataclasses

from ..common import UsageError, parse_count, parse_seed
from ..supernet.settings import SCHEDULES, SupernetSettings

EXAMPLES = """\
examples:
  nas supernet train                                  the default space on Fashion-MNIST
  nas supernet train --space my_space.toml --epochs 8
  nas supernet train --out shared/supernet.pt         a path every worker can read

The artifact is keyed by the space, the dataset and the settings below: without --out
it is runs/supernets/<digest>.pt, where a search with the same ones finds it. An
existing artifact that fits is reused (--force trains it again); one that is corrupt or
truncated is trained anew in its place. A killed training resumes from its last
checkpoint (<artifact>.partial) when the command is run again.
"""


def _defaults() -> dict:
    return {field.name: field.default for field in dataclasses.fields(SupernetSettings)}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "supernet", help="train the weight-sharing supernet of a search space",
        description="Weight-sharing supernets (once-for-all, BigNAS) for `nas search "
                    "--evaluator supernet`.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="supernet_command", metavar="SUBCOMMAND",
                                     parser_class=type(parser))
    train = commands.add_parser(
        "train", help="train (or resume, or reuse) the supernet of a space",
        description="Train a supernet with the sandwich rule and in-place distillation: "
                    "each step trains the largest sub-network on the labels and the "
                    "smallest and random ones on its predictions.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = _defaults()
    train.add_argument("--space", metavar="FILE", help="search space file (default: the "
                       "built-in EfficientNet-B0 space)")
    train.add_argument("--dataset", default="fashion-mnist", help="dataset (default "
                       "fashion-mnist)")
    train.add_argument("--data", dest="data_dir", metavar="DIR", help="dataset folder")
    train.add_argument("--epochs", type=int, help=f"epochs (default {defaults['epochs']})")
    train.add_argument("--subset", type=lambda text: parse_count(text, "--subset"),
                       help="training images (default: all outside the validation split)")
    train.add_argument("--batch-size", type=int, help="images per step (default "
                       f"{defaults['batch_size']})")
    train.add_argument("--resolution", type=int, help="proxy resolution in pixels, as the "
                       f"search's --proxy-resolution (default {defaults['resolution']})")
    train.add_argument("--val-size", type=int, help="training images held out for "
                       f"validation, as the search's --proxy-val-size (default "
                       f"{defaults['val_size']})")
    train.add_argument("--lr", type=float, help="peak learning rate (default: AdamW's for "
                       "the batch size)")
    train.add_argument("--random-subnets", type=int, help="random sub-networks per step "
                       f"besides the largest and smallest (default {defaults['random_subnets']})")
    train.add_argument("--schedule", choices=SCHEDULES, help="how each step draws its "
                       "sub-networks: sandwich, from the whole space; progressive, from a "
                       "space that grows by quarters of the training (kernel, then depth, "
                       f"then every choice; once-for-all) (default {defaults['schedule']})")
    train.add_argument("--augment", action="store_true", help="random crop and flip")
    train.add_argument("--seed", type=parse_seed, default=0)
    train.add_argument("--out", metavar="FILE.pt", help="artifact path (default "
                       "<runs-dir>/supernets/<digest>.pt)")
    train.add_argument("--runs-dir", default="runs", metavar="DIR")
    train.add_argument("--force", action="store_true", help="train again even when a "
                       "fitting artifact exists")
    train.add_argument("--checkpoint-seconds", type=float, default=60.0, metavar="S",
                       help="seconds between training checkpoints (default 60)")
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=run)
    parser.set_defaults(handler=lambda args: parser.error("choose a subcommand: train"))


def settings_from_args(args: argparse.Namespace) -> SupernetSettings:
    given = {"epochs": args.epochs, "subset": args.subset, "batch_size": args.batch_size,
             "resolution": args.resolution, "val_size": args.val_size, "lr": args.lr,
             "random_subnets": args.random_subnets, "schedule": args.schedule}
    try:
        return SupernetSettings(seed=args.seed, augment=args.augment,
                                **{key: value for key, value in given.items()
                                   if value is not None})
    except ValueError as error:
        raise UsageError(f"supernet settings: {error}") from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from space import SearchSpace

    from ..supernet.evaluator import SupernetEvaluator
    from ..supernet.training import teacher
    from ..train import configure_threads, parse_device

    settings = settings_from_args(args)
    device = parse_device(args.device)
    if args.checkpoint_seconds < 0:
        raise UsageError("--checkpoint-seconds must be at least 0")
    out = Path(args.out) if args.out else None
    if out is not None and (out.is_dir() or out.suffix != ".pt"):
        raise UsageError(f"--out {args.out!r} must be a .pt file name")
    space = SearchSpace.from_file(args.space) if args.space else SearchSpace.default()
    configure_threads()
    evaluator = SupernetEvaluator(space=space, settings=settings, path=out,
                                  runs_dir=args.runs_dir, rebuild=True, force=args.force,
                                  checkpoint_seconds=args.checkpoint_seconds,
                                  dataset=args.dataset, data_dir=args.data_dir,
                                  device=device, quiet=args.quiet)
    training = evaluator.metadata["training"]
    verb = "trained" if evaluator.built else "up to date (--force trains it again)"
    if evaluator.built and training.get("resumed_at_step"):
        verb += f" (resumed at step {training['resumed_at_step']})"
    print(f"supernet {evaluator.path}: {verb}; {training.get('steps')} steps in "
          f"{training.get('seconds', 0):.0f} s ({training.get('images_per_second')} img/s)")
    for label, genome in (("largest", teacher(space)), ("smallest", space.smallest())):
        accuracy = evaluator.evaluate(genome)
        print(f"  {label} sub-network: validation accuracy {accuracy:.4f} "
              f"+- {evaluator.noise(accuracy):.4f}")
    return 0
