"""``nas train``: train a genome (or a family member) fully, with checkpoints and resume."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from space import Genome

from ..checkpoint import CheckpointError, load_checkpoint
from ..checkpoint_fields import FieldError, check_resume_metrics
from ..common import UsageError, check_writable_dir, format_count, load_genome, parse_seed
from ..data import DATASETS, Dataset, load_dataset
from ..full_train import DEFAULTS, FIXED_ON_RESUME, FullTraining
from ..memory import check_fits, training_bytes
from ..signals import StopRequested
from ..train import OPTIMIZERS, SCHEDULES, Distributed, TrainingDiverged, configure_threads, \
    parse_device

EXAMPLES = """\
examples:
  nas train --genome efficientnet-b0                      40 epochs on Fashion-MNIST at 32 px
  nas train --genome runs/<study>/best.json --epochs 10 --out runs/best-train
  nas train --genome family/b3.json                       at 32 px x b3's resolution multiplier
  nas train --genome efficientnet-b0 --out runs/b0 --resume        continue after a stop
  nas train --genome mnasnet-a1 --dataset cifar10 --data ~/cifar-10-batches-py
  torchrun --nproc_per_node 2 -m nas train --genome efficientnet-b0
      (DistributedDataParallel: gloo on CPU, nccl on GPU; --batch-size stays the global batch)

Training runs at --resolution (32 px) times the genome's resolution_multiplier, not at
the genome's deployment resolution. The stem takes the dataset's channels (1 for
Fashion-MNIST). Each epoch is scored on the test set, or on a held-out part of the training
set with --val-size N (then the test set is scored once at the end). OUT/metrics.json and
OUT/checkpoint.pt are rewritten atomically after every epoch.
"""



def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a genome and write metrics.json and checkpoint.pt",
        description="Train a genome (a preset, a search result or a scaled family member) "
                    "with the same trainer the search's proxy uses, with light augmentation "
                    "(random crop + horizontal flip). Writes OUT/metrics.json and a "
                    "checkpoint that loads without running pickled code.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", required=True, metavar="G", help="preset name or genome JSON")
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    parser.add_argument("--data", dest="data_dir", metavar="DIR",
                        help="dataset folder (default for Fashion-MNIST: "
                             "/usr/share/datasets/fashion-mnist)")
    parser.add_argument("--epochs", type=int, help=f"total epochs (default {DEFAULTS['epochs']})")
    parser.add_argument("--out", metavar="DIR", help="output folder (default "
                        "runs/train/<genome>-<dataset>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT/checkpoint.pt up to --epochs with its settings")
    parser.add_argument("--resolution", type=int,
                        help=f"base input size in pixels (default {DEFAULTS['resolution']}); "
                             "the genome trains at this x its resolution_multiplier")
    parser.add_argument("--batch-size", type=int, help="global batch (default 256)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="default adamw")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: 0.011 x "
                        "sqrt(batch/256) for AdamW, 0.1 x batch/256 for SGD)")
    parser.add_argument("--weight-decay", type=float, help="default 0.05 (AdamW), 5e-5 (SGD)")
    parser.add_argument("--schedule", choices=SCHEDULES, help="default onecycle")
    parser.add_argument("--label-smoothing", type=float, help="default 0.1")
    parser.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                        help="no random crop / flip")
    parser.add_argument("--val-size", type=int, default=0, metavar="N",
                        help="hold out N training images and score epochs on them (default 0: "
                             "score epochs on the test set)")
    parser.add_argument("--subset", type=int, metavar="N", help="train on N random training images")
    parser.add_argument("--seed", type=parse_seed)
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads per process "
                        "(default: this machine's usable cores / processes on it)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar; one line per epoch")
    parser.set_defaults(handler=run)


def _device(args: argparse.Namespace, distributed: Optional[Distributed]) -> torch.device:
    device = parse_device(args.device)
    if device.type == "cuda" and distributed is not None:
        device = torch.device("cuda", distributed.local_rank)
    return device


def _settings(args: argparse.Namespace, stored: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The run's settings: flags over defaults, or the checkpoint's when resuming."""
    given = {key: getattr(args, key) for key in DEFAULTS if getattr(args, key) is not None}
    if stored is None:
        return {**DEFAULTS, **given}
    for key in FIXED_ON_RESUME:
        if key in given and given[key] != stored[key]:
            raise UsageError(f"--{key.replace('_', '-')} {given[key]} differs from the "
                             f"checkpoint's {stored[key]}; a resumed run keeps its settings "
                             "(use another --out for a new run)")
    return {**stored, "epochs": given.get("epochs", stored["epochs"])}


def _check_numbers(settings: dict[str, Any], args: argparse.Namespace, data: Dataset) -> None:
    if settings["epochs"] < 1:
        raise UsageError(f"--epochs {settings['epochs']} must be at least 1")
    if settings["batch_size"] < 2:
        raise UsageError(f"--batch-size {settings['batch_size']} must be at least 2")
    if not 8 <= settings["resolution"] <= 1024:
        raise UsageError(f"--resolution {settings['resolution']} must be 8 to 1024 pixels")
    if settings["lr"] is not None and not 0 < settings["lr"] < 10:
        raise UsageError(f"--lr {settings['lr']} must be in (0, 10)")
    if not 0 <= settings["label_smoothing"] < 1:
        raise UsageError(f"--label-smoothing {settings['label_smoothing']} must be in [0, 1)")
    if args.subset is not None and args.subset < 2:
        raise UsageError(f"--subset {args.subset} must be at least 2 images")
    if args.val_size == 0 and len(data.test) == 0:
        raise UsageError(f"{data.source} has no test images (no test/ or val/ folder); pass "
                         "--val-size N to score epochs on held-out training images")


def _default_out(genome: Genome, spec: str, dataset: str) -> Path:
    name = genome.name or Path(spec).stem
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "genome"
    return Path("runs") / "train" / f"{safe}-{dataset}"


def run(args: argparse.Namespace) -> int:
    distributed = Distributed.from_env()
    if distributed is None:
        return _train(args, None)
    device = _device(args, distributed)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        status = _train(args, distributed)
        _leave_together(distributed.rank, distributed.world_size)
        return status
    finally:
        torch.distributed.destroy_process_group()


def _leave_together(rank: int, world_size: int) -> None:
    """Return once every rank has finished its last collective.

    A rank that tears gloo down while another still finishes a collective aborts that one
    (SIGABRT, "terminate called without an active exception"), and a final barrier does
    not prevent it: gloo's own barrier then destruction races the same way
    (pytorch/gloo#155; seen once in CI). The rendezvous store is not gloo, and under
    torchrun the launcher, not a rank, holds it, so each rank checks in there and waits
    for the others before any of them destroys its process group."""
    store = torch.distributed.distributed_c10d._get_default_store()
    store.set(f"nas-train/finished/{rank}", "1")
    store.wait([f"nas-train/finished/{other}" for other in range(world_size)])


def _threads(args: argparse.Namespace, distributed: Optional[Distributed]) -> int:
    if args.threads is None:
        return configure_threads(distributed.local_world_size if distributed else 1)
    if args.threads < 1:
        raise UsageError(f"--threads {args.threads} must be at least 1")
    torch.set_num_threads(args.threads)
    return args.threads


def _stored(args: argparse.Namespace, genome: Genome, out: Path) -> Optional[dict[str, Any]]:
    """The checkpoint to continue with --resume (checked against the flags), else None."""
    checkpoint_path = out / "checkpoint.pt"
    if not args.resume:
        if checkpoint_path.exists():
            raise UsageError(f"{checkpoint_path} exists; pass --resume to continue it or "
                             "choose another --out")
        return None
    if not checkpoint_path.exists():
        raise UsageError(f"--resume: {checkpoint_path} does not exist; run without "
                         "--resume to start")
    stored = load_checkpoint(checkpoint_path)
    _check_resumable(stored, genome, args, checkpoint_path)
    return stored


def _check_fits(job: FullTraining) -> None:
    """Refused before anything is built or written (no empty output folder is left)."""
    config, distributed, device = job.config, job.distributed, job.device
    if config.batch_size // job.world < 2:
        raise UsageError(f"--batch-size {config.batch_size} leaves fewer than 2 images per "
                         f"process for {job.world} processes")
    ranks_here = distributed.local_world_size if distributed and device.type == "cpu" else 1
    check_fits(ranks_here * training_bytes(
        job.genome, resolution=config.resolution, batch=config.batch_size // job.world,
        num_classes=job.data.num_classes, in_channels=job.data.in_channels,
        optimizer=config.optimizer, eval_batch=config.eval_batch_size),
        f"training {job.genome.name or 'the genome'} at {config.resolution} px, batch "
        f"{config.batch_size}", device=device, advice="lower --resolution or --batch-size")


def _train(args: argparse.Namespace, distributed: Optional[Distributed]) -> int:
    main = distributed is None or distributed.is_main
    say = print if main else (lambda *_a, **_k: None)
    threads = _threads(args, distributed)
    device = _device(args, distributed)
    genome = load_genome(args.genome)
    data = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out) if args.out else _default_out(genome, args.genome, args.dataset)
    stored = _stored(args, genome, out)
    settings = _settings(args, stored["metrics"]["settings"] if stored else None)
    _check_numbers(settings, args, data)
    job = FullTraining(genome=genome, name=genome.name or Path(args.genome).stem, data=data,
                       settings=settings, out=out, device=device, distributed=distributed,
                       val_size=args.val_size, subset=args.subset, quiet=args.quiet)
    _check_fits(job)
    if main:
        check_writable_dir(out)
    _announce(job, say, threads)
    start_epoch = stored["epoch"] if stored else 0
    if start_epoch >= job.config.epochs:
        say(f"{job.checkpoint_path} already has {start_epoch} epoch(s); nothing to do "
            "(raise --epochs to train longer)")
        return 0
    if start_epoch:
        say(f"resuming after epoch {start_epoch}")
    try:
        metrics = job.run(stored, epoch_line=(lambda line: print(line, flush=True))
                          if args.quiet and main else None)
    except StopRequested:
        if main and job.checkpoint_path.exists():
            print(f"stopped; {job.checkpoint_path} holds the last finished epoch: add --resume "
                  "to continue", flush=True)
        raise
    except TrainingDiverged as error:
        print(f"nas train: training diverged: {error}; lower --lr or check the genome",
              file=sys.stderr)
        return 1
    if main:
        final = metrics["test_accuracy"]
        summary = f"test accuracy {final:.4f}" if final is not None else (
            f"validation accuracy {metrics['val_accuracy']:.4f}")
        print(f"done: {summary} after {metrics['epochs_completed']} epochs, "
              f"{metrics['wall_seconds']:.0f} s, {metrics['images_per_second']:.0f} img/s "
              "training")
        if distributed is not None and not metrics["ranks_agree"]:
            print("warning: the ranks ended with different weights", file=sys.stderr)
        print(f"wrote {job.metrics_path} and {job.checkpoint_path}")
    return 0


def _announce(job: FullTraining, say: Callable[..., None], threads: int) -> None:
    data, config, costs = job.data, job.config, job.costs
    train_images = len(job.splits[0])
    say(f"training {job.name} on {data.name} ({train_images:,} images, {data.num_classes} "
        f"classes) at {config.resolution}x{config.resolution} px: "
        f"{format_count(costs.flops)} multiply-adds, {format_count(costs.params)} parameters")
    if data.in_channels != 3:
        say(f"note: {data.name} has {data.in_channels} input channel(s); the stem convolution "
            f"is built for {data.in_channels} instead of 3 (RGB)")
    say(f"{config.optimizer} lr {config.peak_lr:.3g}, {config.schedule}, batch "
        f"{config.batch_size}, label smoothing {config.label_smoothing:g}, augmentation "
        f"{'on' if config.augment else 'off'}; {job.device}, {threads} thread(s)"
        + (f" x {job.world} processes (DDP)" if job.distributed else ""))


def _check_resumable(stored: dict[str, Any], genome: Genome, args: argparse.Namespace,
                     path: Path) -> None:
    if stored["genome"].key() != genome.key():
        raise CheckpointError(f"{path} was trained from a different genome than "
                              f"{args.genome!r}; pass the same --genome or another --out")
    if stored["dataset"] != args.dataset:
        raise CheckpointError(f"{path} was trained on {stored['dataset']}, not "
                              f"{args.dataset}; pass --dataset {stored['dataset']}")
    if "settings" not in stored["metrics"] or "history" not in stored["metrics"]:
        raise CheckpointError(f"{path} was not written by `nas train`; it cannot be resumed")
    try:
        check_resume_metrics(stored["metrics"])
    except FieldError as error:
        raise CheckpointError(f"{path} cannot be resumed: it {error}") from None
