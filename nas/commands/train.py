"""``nas train``: train a genome (or a family member) fully, with checkpoints and resume."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from space import Genome, build, cost

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..checkpoint_fields import FieldError, check_resume_metrics
from ..common import (UsageError, atomic_write_json, check_writable_dir, format_count,
                      json_bytes, load_genome, parse_seed)
from ..data import DATASETS, Dataset, load_dataset, proxy_resolution, split_train_val, take_subset
from ..memory import check_fits, training_bytes
from ..signals import StopRequested, handle_signals
from ..train import OPTIMIZERS, SCHEDULES, Distributed, TrainConfig, TrainingDiverged, \
    configure_threads, evaluate_accuracy, fit, state_digest

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

# Full-training defaults (benchmarks/bench_full_train.py measures them on EfficientNet-B0:
# 40 epochs reach 93.3% Fashion-MNIST test accuracy, 30 epochs stop at 92.9%).
DEFAULTS = {"epochs": 40, "batch_size": 256, "optimizer": "adamw", "lr": None,
            "weight_decay": None, "schedule": "onecycle", "label_smoothing": 0.1,
            "augment": True, "resolution": 32, "seed": 0}
# Settings a resumed run must keep (the schedule's length, --epochs, may grow).
_FIXED_ON_RESUME = ("batch_size", "optimizer", "lr", "weight_decay", "schedule",
                    "label_smoothing", "augment", "seed")


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
    if args.device:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise UsageError(f"--device {args.device!r} is not a device (cpu, cuda, cuda:0)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: no CUDA GPU is available here")
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and distributed is not None:
        device = torch.device("cuda", distributed.local_rank)
    return device


def _settings(args: argparse.Namespace, stored: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The run's settings: flags over defaults, or the checkpoint's when resuming."""
    given = {key: getattr(args, key) for key in DEFAULTS if getattr(args, key) is not None}
    if stored is None:
        return {**DEFAULTS, **given}
    for key in _FIXED_ON_RESUME:
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
        return _train(args, distributed)
    finally:
        torch.distributed.destroy_process_group()


def _train(args: argparse.Namespace, distributed: Optional[Distributed]) -> int:
    main = distributed is None or distributed.is_main
    say = print if main else (lambda *_a, **_k: None)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads {args.threads} must be at least 1")
        torch.set_num_threads(args.threads)
        threads = args.threads
    else:
        threads = configure_threads(distributed.local_world_size if distributed else 1)
    device = _device(args, distributed)
    genome = load_genome(args.genome)
    data = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out) if args.out else _default_out(genome, args.genome, args.dataset)
    checkpoint_path, metrics_path = out / "checkpoint.pt", out / "metrics.json"

    stored = None
    if args.resume:
        if not checkpoint_path.exists():
            raise UsageError(f"--resume: {checkpoint_path} does not exist; run without "
                             "--resume to start")
        stored = load_checkpoint(checkpoint_path)
        _check_resumable(stored, genome, args, checkpoint_path)
    elif checkpoint_path.exists():
        raise UsageError(f"{checkpoint_path} exists; pass --resume to continue it or "
                         "choose another --out")
    settings = _settings(args, stored["metrics"]["settings"] if stored else None)
    _check_numbers(settings, args, data)

    resolution = proxy_resolution(settings["resolution"], genome.resolution_multiplier)
    config = TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"],
                         optimizer=settings["optimizer"], lr=settings["lr"],
                         weight_decay=settings["weight_decay"], schedule=settings["schedule"],
                         label_smoothing=settings["label_smoothing"],
                         augment=settings["augment"], resolution=resolution,
                         seed=settings["seed"])
    world = distributed.world_size if distributed else 1
    if config.batch_size // world < 2:
        raise UsageError(f"--batch-size {config.batch_size} leaves fewer than 2 images per "
                         f"process for {world} processes")
    # Refused before anything is built or written (no empty output folder is left).
    ranks_here = distributed.local_world_size if distributed and device.type == "cpu" else 1
    check_fits(ranks_here * training_bytes(
        genome, resolution=resolution, batch=config.batch_size // world,
        num_classes=data.num_classes, in_channels=data.in_channels,
        optimizer=config.optimizer, eval_batch=config.eval_batch_size),
        f"training {genome.name or 'the genome'} at {resolution} px, batch "
        f"{config.batch_size}", device=device, advice="lower --resolution or --batch-size")
    if main:
        check_writable_dir(out)
    train, val = split_train_val(data, args.val_size, config.seed)
    train = take_subset(train, args.subset, config.seed)
    scored_on, eval_key = (val, "val_accuracy") if args.val_size else (data.test, "test_accuracy")

    torch.manual_seed(config.seed)
    model = build(genome, num_classes=data.num_classes, in_channels=data.in_channels)
    start_epoch, history, optimizer_state, past_seconds = 0, [], None, 0.0
    if stored is not None:
        try:
            model.load_state_dict(stored["state_dict"])
        except RuntimeError as error:
            raise CheckpointError(f"{checkpoint_path}: its weights do not fit its genome "
                                  f"({str(error).strip().splitlines()[0][:160]})") from None
        start_epoch = stored["epoch"]
        history = stored["metrics"]["history"]
        optimizer_state = stored["optimizer_state"]
        past_seconds = stored["metrics"]["wall_seconds"]

    costs = cost(genome, resolution, data.num_classes, data.in_channels)
    name = genome.name or Path(args.genome).stem
    say(f"training {name} on {data.name} ({len(train):,} images, {data.num_classes} classes) "
        f"at {resolution}x{resolution} px: {format_count(costs.flops)} multiply-adds, "
        f"{format_count(costs.params)} parameters")
    if data.in_channels != 3:
        say(f"note: {data.name} has {data.in_channels} input channel(s); the stem convolution "
            f"is built for {data.in_channels} instead of 3 (RGB)")
    say(f"{config.optimizer} lr {config.peak_lr:.3g}, {config.schedule}, batch "
        f"{config.batch_size}, label smoothing {config.label_smoothing:g}, augmentation "
        f"{'on' if config.augment else 'off'}; {device}, {threads} thread(s)"
        + (f" x {world} processes (DDP)" if distributed else ""))
    if start_epoch >= config.epochs:
        say(f"{checkpoint_path} already has {start_epoch} epoch(s); nothing to do "
            "(raise --epochs to train longer)")
        return 0
    if start_epoch:
        say(f"resuming after epoch {start_epoch}")

    started = time.perf_counter()

    def record(epoch: int, so_far: list[dict[str, Any]], network: torch.nn.Module,
               optimizer: torch.optim.Optimizer) -> None:
        if args.quiet and main:
            last = so_far[-1]
            print(f"epoch {epoch}/{config.epochs}: loss {last['train_loss']:.4f}, train "
                  f"accuracy {last['train_accuracy']:.4f}, {eval_key.replace('_', ' ')} "
                  f"{last[eval_key]:.4f}, {last['images_per_second']:.0f} img/s", flush=True)
        if not main:
            return
        metrics = _metrics(name=name, genome=genome, data=data, settings=settings,
                           config=config, history=so_far, device=device, world=world,
                           costs=costs, seconds=past_seconds + time.perf_counter() - started)
        save_checkpoint(checkpoint_path, genome=genome, model=network,
                        num_classes=data.num_classes, in_channels=data.in_channels,
                        resolution=resolution, dataset=data.name, epoch=epoch,
                        metrics=metrics, normalization=data.normalization.to_dict(),
                        optimizer_state=optimizer.state_dict(),
                        scheduler_state={"schedule": config.schedule, "epoch": epoch},
                        # one epoch's pair, or the previous one: never weights and metrics
                        # of two different epochs
                        alongside={metrics_path: json_bytes(metrics)})

    try:
        # Ctrl-C or SIGTERM stops at the next step; the last finished epoch's checkpoint
        # stays (under torchrun a signal stops every rank at once, as they must agree).
        with handle_signals(graceful=distributed is None):
            result = fit(model, train=train, val=scored_on, normalization=data.normalization,
                         config=config, device=device, quiet=args.quiet or not main,
                         description=name, eval_key=eval_key, start_epoch=start_epoch,
                         history=history, optimizer_state=optimizer_state,
                         after_epoch=record, distributed=distributed)
    except StopRequested:
        if main and checkpoint_path.exists():
            print(f"stopped; {checkpoint_path} holds the last finished epoch: add --resume "
                  "to continue", flush=True)
        raise
    except TrainingDiverged as error:
        print(f"nas train: training diverged: {error}; lower --lr or check the genome",
              file=sys.stderr)
        return 1

    metrics = _metrics(name=name, genome=genome, data=data, settings=settings, config=config,
                       history=result.history, device=device, world=world, costs=costs,
                       seconds=past_seconds + time.perf_counter() - started)
    if args.val_size:
        metrics["test_accuracy"] = evaluate_accuracy(
            model, data.test, resolution=resolution, normalization=data.normalization,
            device=device, distributed=distributed) if len(data.test) else None
    if distributed is not None:
        # Every rank reports its own weights and final scores; they must agree.
        mine = {"rank": distributed.rank, "weights_sha256": state_digest(model),
                eval_key: metrics[eval_key], "test_accuracy": metrics["test_accuracy"]}
        reports: list[Optional[dict[str, Any]]] = [None] * world
        torch.distributed.all_gather_object(reports, mine)
        metrics["ranks"] = reports
        metrics["ranks_agree"] = all({k: v for k, v in r.items() if k != "rank"}
                                     == {k: v for k, v in mine.items() if k != "rank"}
                                     for r in reports)
    if main:
        atomic_write_json(metrics_path, metrics)
        final = metrics["test_accuracy"]
        summary = f"test accuracy {final:.4f}" if final is not None else (
            f"validation accuracy {metrics['val_accuracy']:.4f}")
        print(f"done: {summary} after {len(result.history)} epochs, "
              f"{metrics['wall_seconds']:.0f} s, {metrics['images_per_second']:.0f} img/s "
              "training")
        if distributed is not None and not metrics["ranks_agree"]:
            print("warning: the ranks ended with different weights", file=sys.stderr)
        print(f"wrote {metrics_path} and {checkpoint_path}")
    return 0


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


def _metrics(*, name: str, genome: Genome, data: Dataset, settings: dict[str, Any],
             config: TrainConfig, history: list[dict[str, Any]], device: torch.device,
             world: int, costs, seconds: float) -> dict[str, Any]:
    """metrics.json: what was trained, how, and every epoch's numbers."""
    timed = [h for h in history if h["train_seconds"] > 0]
    images = sum(h["train_images"] for h in timed)
    train_seconds = sum(h["train_seconds"] for h in timed)
    last = history[-1] if history else {}
    return {
        "genome": name,
        "genome_json": genome.to_dict(),
        "dataset": data.name,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "resolution": config.resolution,
        "flops": costs.flops,
        "params": costs.params,
        "settings": settings,
        "config": config.to_dict(),
        "epochs_completed": len(history),
        "test_accuracy": last.get("test_accuracy"),
        "val_accuracy": last.get("val_accuracy"),
        "wall_seconds": round(seconds, 1),
        "images_per_second": round(images / train_seconds, 1) if train_seconds else 0.0,
        "device": str(device),
        "world_size": world,
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "history": history,
    }

