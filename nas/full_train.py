"""Full training of one genome with checkpoints and resume (what ``nas train`` runs).

:class:`FullTraining` holds what a run trains (genome, dataset, settings) and where it
writes (``OUT/checkpoint.pt`` and ``OUT/metrics.json``, rewritten together after every
epoch); :meth:`FullTraining.run` trains from scratch or from a loaded checkpoint, under
one process or DistributedDataParallel, and returns the final ``metrics.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from space import Cost, Genome, build, cost

from .checkpoint import CheckpointError, save_checkpoint
from .common import atomic_write_json, json_bytes
from .data import Dataset, Split, proxy_resolution, split_train_val, take_subset
from .signals import handle_signals
from .train import (Distributed, TrainConfig, TrainResult, evaluate_accuracy, fit,
                    state_digest)

__all__ = ["DEFAULTS", "FIXED_ON_RESUME", "FullTraining", "train_config", "train_genome"]

# Full-training defaults (benchmarks/bench_full_train.py measures them on EfficientNet-B0:
# 40 epochs reach 93.3% Fashion-MNIST test accuracy, 30 epochs stop at 92.9%).
DEFAULTS = {"epochs": 40, "batch_size": 256, "optimizer": "adamw", "lr": None,
            "weight_decay": None, "schedule": "onecycle", "label_smoothing": 0.1,
            "augment": True, "resolution": 32, "seed": 0}
# Settings a resumed run must keep (the schedule's length, epochs, may grow).
FIXED_ON_RESUME = ("batch_size", "optimizer", "lr", "weight_decay", "schedule",
                   "label_smoothing", "augment", "seed")


def train_config(settings: dict[str, Any], genome: Genome) -> TrainConfig:
    """The trainer's configuration for ``settings`` (keys of :data:`DEFAULTS`): the
    genome trains at the settings' resolution times its resolution multiplier."""
    return TrainConfig(epochs=settings["epochs"], batch_size=settings["batch_size"],
                       optimizer=settings["optimizer"], lr=settings["lr"],
                       weight_decay=settings["weight_decay"], schedule=settings["schedule"],
                       label_smoothing=settings["label_smoothing"],
                       augment=settings["augment"],
                       resolution=proxy_resolution(settings["resolution"],
                                                   genome.resolution_multiplier),
                       seed=settings["seed"])


def train_genome(genome: Genome, *, data: Dataset, train: Split, scored_on: Split,
                 config: TrainConfig, device: Optional[torch.device] = None,
                 restore: Optional[Callable[[torch.nn.Module], None]] = None,
                 **fit_options: Any) -> tuple[torch.nn.Module, TrainResult]:
    """``genome`` built for ``data``'s channels and classes with weights seeded by
    ``config.seed`` (then ``restore(model)``, e.g. a checkpoint's weights), trained by
    :func:`nas.train.fit` on ``train`` and scored every epoch on ``scored_on``;
    ``fit_options`` go to :func:`~nas.train.fit`. Returns the model and its result."""
    torch.manual_seed(config.seed)
    model = build(genome, num_classes=data.num_classes, in_channels=data.in_channels)
    if restore is not None:
        restore(model)
    result = fit(model, train=train, val=scored_on, normalization=data.normalization,
                 config=config, device=device, **fit_options)
    return model, result


@dataclass
class FullTraining:
    """One full training run. ``settings`` (keys of :data:`DEFAULTS`) are recorded in
    metrics.json so that a resumed run keeps them; ``val_size`` training images are held
    out to score the epochs (0: the epochs are scored on the test split); ``subset``
    trains on that many random training images."""

    genome: Genome
    name: str
    data: Dataset
    settings: dict[str, Any]
    out: Path
    device: torch.device
    distributed: Optional[Distributed] = None
    val_size: int = 0
    subset: Optional[int] = None
    quiet: bool = False

    def __post_init__(self) -> None:
        self.config = train_config(self.settings, self.genome)
        self.costs: Cost = cost(self.genome, self.config.resolution, self.data.num_classes,
                                self.data.in_channels)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.json"

    @property
    def is_main(self) -> bool:
        return self.distributed is None or self.distributed.is_main

    @property
    def world(self) -> int:
        return self.distributed.world_size if self.distributed else 1

    @property
    def eval_key(self) -> str:
        return "val_accuracy" if self.val_size else "test_accuracy"

    @cached_property
    def splits(self) -> tuple[Split, Split]:
        """The training images and the split each epoch is scored on."""
        train, val = split_train_val(self.data, self.val_size, self.config.seed)
        train = take_subset(train, self.subset, self.config.seed)
        return train, (val if self.val_size else self.data.test)

    def run(self, stored: Optional[dict[str, Any]] = None,
            epoch_line: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
        """Train up to ``settings["epochs"]``, from the loaded checkpoint ``stored`` if
        given; ``epoch_line`` receives one line per finished epoch. Ctrl-C or SIGTERM
        stops at the next step (:class:`nas.signals.StopRequested`) with the last
        finished epoch's checkpoint on disk. Returns the final metrics (also written to
        metrics.json by the main process)."""
        train, scored_on = self.splits
        start_epoch, history, optimizer_state, past_seconds = 0, [], None, 0.0
        if stored is not None:
            start_epoch, history = stored["epoch"], stored["metrics"]["history"]
            optimizer_state = stored["optimizer_state"]
            past_seconds = stored["metrics"]["wall_seconds"]
        started = time.perf_counter() - past_seconds

        def record(epoch: int, so_far: list[dict[str, Any]], network: torch.nn.Module,
                   optimizer: torch.optim.Optimizer) -> None:
            if epoch_line is not None:
                epoch_line(self._epoch_line(epoch, so_far[-1]))
            if self.is_main:
                self._save(epoch, network, optimizer,
                           self.metrics(so_far, time.perf_counter() - started))

        # Under torchrun a signal stops every rank at once, as they must agree.
        with handle_signals(graceful=self.distributed is None):
            model, result = train_genome(
                self.genome, data=self.data, train=train, scored_on=scored_on,
                config=self.config, device=self.device,
                restore=(lambda model: self._restore(model, stored)) if stored else None,
                quiet=self.quiet or not self.is_main, description=self.name,
                eval_key=self.eval_key, start_epoch=start_epoch, history=history,
                optimizer_state=optimizer_state, after_epoch=record,
                distributed=self.distributed)
        metrics = self.metrics(result.history, time.perf_counter() - started)
        return self._finish(model, metrics)

    def _restore(self, model: torch.nn.Module, stored: dict[str, Any]) -> None:
        try:
            model.load_state_dict(stored["state_dict"])
        except RuntimeError as error:
            raise CheckpointError(f"{self.checkpoint_path}: its weights do not fit its genome "
                                  f"({str(error).strip().splitlines()[0][:160]})") from None

    def _epoch_line(self, epoch: int, last: dict[str, Any]) -> str:
        return (f"epoch {epoch}/{self.config.epochs}: loss {last['train_loss']:.4f}, train "
                f"accuracy {last['train_accuracy']:.4f}, {self.eval_key.replace('_', ' ')} "
                f"{last[self.eval_key]:.4f}, {last['images_per_second']:.0f} img/s")

    def _save(self, epoch: int, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
              metrics: dict[str, Any]) -> None:
        data = self.data
        save_checkpoint(self.checkpoint_path, genome=self.genome, model=network,
                        num_classes=data.num_classes, in_channels=data.in_channels,
                        resolution=self.config.resolution, dataset=data.name, epoch=epoch,
                        metrics=metrics, normalization=data.normalization.to_dict(),
                        optimizer_state=optimizer.state_dict(),
                        scheduler_state={"schedule": self.config.schedule, "epoch": epoch},
                        # one epoch's pair, or the previous one: never weights and metrics
                        # of two different epochs
                        alongside={self.metrics_path: json_bytes(metrics)})

    def _finish(self, model: torch.nn.Module, metrics: dict[str, Any]) -> dict[str, Any]:
        """The test score after held-out epochs, the ranks' agreement under DDP, and
        metrics.json written by the main process."""
        if self.val_size:
            metrics["test_accuracy"] = evaluate_accuracy(
                model, self.data.test, resolution=self.config.resolution,
                normalization=self.data.normalization, device=self.device,
                distributed=self.distributed) if len(self.data.test) else None
        if self.distributed is not None:
            # Every rank reports its own weights and final scores; they must agree.
            mine = {"rank": self.distributed.rank, "weights_sha256": state_digest(model),
                    self.eval_key: metrics[self.eval_key],
                    "test_accuracy": metrics["test_accuracy"]}
            reports: list[Optional[dict[str, Any]]] = [None] * self.world
            torch.distributed.all_gather_object(reports, mine)
            metrics["ranks"] = reports
            metrics["ranks_agree"] = all({k: v for k, v in r.items() if k != "rank"}
                                         == {k: v for k, v in mine.items() if k != "rank"}
                                         for r in reports)
        if self.is_main:
            atomic_write_json(self.metrics_path, metrics)
        return metrics

    def metrics(self, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        """metrics.json: what was trained, how, and every epoch's numbers."""
        timed = [h for h in history if h["train_seconds"] > 0]
        images = sum(h["train_images"] for h in timed)
        train_seconds = sum(h["train_seconds"] for h in timed)
        last = history[-1] if history else {}
        return {
            "genome": self.name,
            "genome_json": self.genome.to_dict(),
            "dataset": self.data.name,
            "num_classes": self.data.num_classes,
            "in_channels": self.data.in_channels,
            "resolution": self.config.resolution,
            "flops": self.costs.flops,
            "params": self.costs.params,
            "settings": self.settings,
            "config": self.config.to_dict(),
            "epochs_completed": len(history),
            "test_accuracy": last.get("test_accuracy"),
            "val_accuracy": last.get("val_accuracy"),
            "wall_seconds": round(seconds, 1),
            "images_per_second": round(images / train_seconds, 1) if train_seconds else 0.0,
            "device": str(self.device),
            "world_size": self.world,
            "torch": str(torch.__version__),
            "threads": torch.get_num_threads(),
            "history": history,
        }
