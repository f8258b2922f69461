"""The one trainer: short proxy runs during the search and full training (`nas train`).

The same loop runs on a CPU and on a GPU (CUDA adds mixed precision); under ``torchrun``
it runs DistributedDataParallel. Batches are uint8 tensor slices turned into network
input on the training device (:func:`nas.data.preprocess`), in ``channels_last`` memory
format, which makes depthwise convolutions several times faster on a CPU (measured in
``benchmarks/bench_throughput.py``).

Reproducible: the data order of epoch ``e`` is a permutation seeded by ``seed + e``, the
augmentation and dropout generators are seeded per epoch and rank, so a resumed run
follows the same path as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .common import UsageError
from .data import Normalization, Split, augment, batches, preprocess
from .memory import usable_cores
from .signals import check_stop
from .train_eval import (Distributed, all_reduce_sum, autocast, average_buffers,
                         evaluate_accuracy, recompute_batch_norm, state_digest)

# Distributed, evaluate_accuracy, recompute_batch_norm and state_digest live in
# nas.train_eval and are part of the trainer's interface, so they are named here too.
__all__ = ["OPTIMIZERS", "SCHEDULES", "TrainConfig", "TrainResult", "TrainingDiverged",
           "Distributed", "fit", "evaluate_accuracy", "recompute_batch_norm", "learning_rate",
           "configure_threads", "default_device", "parse_device", "state_digest"]

log = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "cosine")
# Peak learning rates per 256 images (scaled linearly with the batch for SGD, Goyal et
# al. 2017; by its square root for AdamW). AdamW's: the best of 2e-3..1.2e-2 for the
# B0 proxy at batch 128 was 8e-3 (docs/training.md); SGD's is the usual 0.1 per 256.
_BASE_LR = {"adamw": 0.011, "sgd": 0.1}
_BASE_BATCH = 256
_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-5}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says when."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. ``batch_size`` is the global batch (split across
    DistributedDataParallel ranks); ``resolution`` is the input size in pixels."""

    epochs: int = 3
    batch_size: int = 256
    optimizer: str = "adamw"
    lr: Optional[float] = None  # None: the optimizer's default for this batch size
    weight_decay: Optional[float] = None  # None: 0.05 (AdamW) or 5e-5 (SGD)
    schedule: str = "onecycle"  # one-cycle (Smith & Topin 2019) or warm-up + cosine
    warmup_epochs: float = 1.0  # linear warm-up of the "cosine" schedule
    label_smoothing: float = 0.1
    augment: bool = False  # random crop (4 px padding) + horizontal flip
    resolution: int = 32
    channels_last: bool = True
    amp: bool = True  # mixed precision; takes effect on CUDA only
    seed: int = 0
    eval_batch_size: int = 1024
    # Training images over which batch-norm statistics are recomputed before each
    # evaluation (pycls's "precise BN"); 0 keeps the running averages.
    precise_bn_images: int = 1024
    # Start from zero logits: the builder's classifier initialisation (torchvision's
    # uniform +-1/sqrt(classes)) on 1280 features gives initial losses of 5-7 and costs
    # a 3-epoch proxy on B0 about 9 points of accuracy (benchmarks/bench_proxy.py).
    zero_init_classifier: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: choose one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: choose one of {SCHEDULES}")
        if self.epochs < 1 or self.batch_size < 2 or self.resolution < 8:
            raise ValueError("epochs >= 1, batch_size >= 2 and resolution >= 8 are required")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing {self.label_smoothing} must be in [0, 1)")

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        ratio = self.batch_size / _BASE_BATCH
        return _BASE_LR[self.optimizer] * (ratio if self.optimizer == "sgd" else math.sqrt(ratio))

    @property
    def decay(self) -> float:
        return _WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else self.weight_decay

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lr": self.peak_lr, "weight_decay": self.decay}


@dataclass
class TrainResult:
    """What a run measured. ``history`` has one dict per epoch (1-based ``epoch``, train
    loss and accuracy, validation accuracy or None, learning rate, seconds, images/s)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # wall time of this call (training and evaluation)
    eval_key: str = "val_accuracy"

    @property
    def val_accuracy(self) -> Optional[float]:
        """Accuracy on the evaluation split after the last epoch."""
        return self.history[-1][self.eval_key] if self.history else None

    @property
    def images_per_second(self) -> float:
        """Mean training throughput over the epochs of this run (evaluation excluded)."""
        timed = [h for h in self.history if h["train_seconds"] > 0]
        images = sum(h["train_images"] for h in timed)
        seconds = sum(h["train_seconds"] for h in timed)
        return images / seconds if seconds else 0.0


def configure_threads(local_world_size: int = 1) -> int:
    """Give each local process an equal share of this machine's usable cores."""
    threads = max(1, usable_cores() // max(1, local_world_size))
    torch.set_num_threads(threads)
    return threads


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(text: Optional[str]) -> torch.device:
    """A ``--device`` value (None: :func:`default_device`), refused in one line when it
    names no device or a GPU this machine lacks."""
    if not text:
        return default_device()
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device {text!r} is not a device (cpu, cuda, cuda:0)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: no CUDA GPU is available here")
    return device


def learning_rate(step: int, total_steps: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """The learning rate before optimizer step ``step`` (0-based) of ``total_steps``.

    ``onecycle``: cosine rise from peak/25 to the peak over the first 25% of the steps,
    then cosine decay to peak/2500 (Smith & Topin 2019, torch's OneCycleLR shape).
    ``cosine``: linear warm-up from 0 over ``warmup_epochs``, then cosine decay to 0."""
    peak = config.peak_lr
    progress = min(step, total_steps) / max(1, total_steps)
    if config.schedule == "onecycle":
        rise = 0.25
        start, end = peak / 25.0, peak / 2500.0
        if progress < rise:
            return start + (peak - start) * (1 - math.cos(math.pi * progress / rise)) / 2
        fall = (progress - rise) / (1 - rise)
        return end + (peak - end) * (1 + math.cos(math.pi * fall)) / 2
    warmup = min(total_steps, int(round(config.warmup_epochs * steps_per_epoch)))
    if step < warmup:
        return peak * (step + 1) / warmup
    fall = (step - warmup) / max(1, total_steps - warmup)
    return peak * (1 + math.cos(math.pi * min(1.0, fall))) / 2


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation scales (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = _parameter_groups(model, config.decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.peak_lr, momentum=0.9, nesterov=True)
    # The fused kernel is the fastest AdamW on CUDA; foreach is on the CPU.
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=config.peak_lr, **fused)


def _progress_bar(total: int, description: str, quiet: bool, rank: int) -> tqdm:
    """The per-step progress bar of one fit() call (rank 0 only). Shown only on a
    terminal (tqdm's ``disable=None``): in a log file or CI every refresh would be a line
    of its own, hundreds per proxy trial, where the search's bar already gives one."""
    return tqdm(total=total, desc=description, unit="step",
                disable=True if quiet or rank != 0 else None, leave=False, dynamic_ncols=True)


class _Loop:
    """What one :func:`fit` call trains with: the (possibly DDP-wrapped) network, the
    optimizer and gradient scaler, and how the training split falls into steps."""

    def __init__(self, model: nn.Module, *, train: Split, normalization: Normalization,
                 config: TrainConfig, device: torch.device, distributed: Optional[Distributed],
                 fresh: bool, optimizer_state: Optional[dict]) -> None:
        self.model, self.train, self.normalization = model, train, normalization
        self.config, self.device, self.distributed = config, device, distributed
        self.rank, self.world = ((distributed.rank, distributed.world_size) if distributed
                                 else (0, 1))
        self.batch = config.batch_size // self.world
        if self.batch < 2:
            raise ValueError(f"batch size {config.batch_size} is too small for {self.world} "
                             "processes (each needs at least 2 images for batch normalisation)")
        per_rank_images = len(train) // self.world
        if per_rank_images < 2:
            raise ValueError(f"{len(train)} training images are too few for {self.world} "
                             "process(es)")
        self.drop_last = per_rank_images >= self.batch
        self.steps_per_epoch = per_rank_images // self.batch if self.drop_last else 1
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.zero_init_classifier and fresh:
            classifier = getattr(model, "classifier", None)
            if isinstance(classifier, nn.Linear):
                nn.init.zeros_(classifier.weight)
                nn.init.zeros_(classifier.bias)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        model.to(device=device, memory_format=memory_format)
        self.network: nn.Module = model
        if distributed is not None:
            from torch.nn.parallel import DistributedDataParallel

            self.network = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = _make_optimizer(model, config, device)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp
                                           and not torch.cuda.is_bf16_supported())
        # A loss check syncs with the device: every step on a CPU, every 25th on a GPU.
        self.check_every = 1 if device.type == "cpu" else 25

    def train_epoch(self, epoch: int, progress: tqdm) -> dict[str, Any]:
        """One epoch of optimizer steps; its loss, accuracy, images and seconds summed
        over the ranks."""
        config, device = self.config, self.device
        torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + self.rank)
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch * 1_009 + self.rank)
        self.network.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        seen, step_in_epoch, lr = 0, 0, 0.0
        started = time.perf_counter()
        for images, labels in batches(self.train, self.batch, shuffle=True,
                                      seed=config.seed + epoch, drop_last=self.drop_last,
                                      rank=self.rank, world_size=self.world):
            if self.distributed is None:  # ranks stopping at different steps would hang
                check_stop()
            lr = learning_rate(epoch * self.steps_per_epoch + step_in_epoch, self.total_steps,
                               config, self.steps_per_epoch)
            loss, logits, targets = self._step(images, labels, lr, generator)
            loss_sum += loss.detach().double() * len(labels)
            correct += (logits.detach().argmax(1) == targets).sum().double()
            seen += len(labels)
            step_in_epoch += 1
            if step_in_epoch % self.check_every == 0 or step_in_epoch == self.steps_per_epoch:
                mean_loss = float(loss_sum) / seen
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(f"loss became {float(loss.detach())} at epoch "
                                           f"{epoch + 1}, step {step_in_epoch} (learning "
                                           f"rate {lr:.3g})")
                progress.update(self.check_every if step_in_epoch % self.check_every == 0
                                else step_in_epoch % self.check_every)
                elapsed = time.perf_counter() - started
                progress.set_postfix(epoch=f"{epoch + 1}/{config.epochs}",
                                     loss=f"{mean_loss:.3f}", acc=f"{float(correct) / seen:.3f}",
                                     img_s=f"{seen * self.world / max(elapsed, 1e-9):.0f}",
                                     refresh=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        loss_total, correct_total, seen_total = all_reduce_sum(
            [float(loss_sum), float(correct), float(seen)], device, self.distributed)
        return {"loss": loss_total / seen_total, "accuracy": correct_total / seen_total,
                "images": seen_total, "lr": lr, "seconds": seconds, "started": started}

    def _step(self, images: torch.Tensor, labels: torch.Tensor, lr: float,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if config.augment:
            images = augment(images, generator=generator)
        inputs = preprocess(images.to(self.device, non_blocking=True), config.resolution,
                            self.normalization, channels_last=config.channels_last)
        targets = labels.to(self.device, non_blocking=True)
        with autocast(self.device, config.amp):
            logits = self.network(inputs)
            loss = F.cross_entropy(logits, targets, label_smoothing=config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss, logits, targets

    def settle(self, epoch: int, val: Split) -> Optional[float]:
        """After an epoch's steps: precise batch-norm statistics, the same on every rank,
        then the accuracy on ``val`` (None when it is empty)."""
        config = self.config
        recompute_batch_norm(self.model, self.train, images=config.precise_bn_images // self.world,
                             batch_size=self.batch, resolution=config.resolution,
                             normalization=self.normalization, device=self.device,
                             channels_last=config.channels_last,
                             seed=config.seed + 7919 * (epoch + 1) + self.rank)
        if self.distributed is not None:
            average_buffers(self.model, self.distributed)
        if not len(val):
            return None
        return evaluate_accuracy(self.network, val, resolution=config.resolution,
                                 normalization=self.normalization, device=self.device,
                                 batch_size=config.eval_batch_size,
                                 channels_last=config.channels_last, amp=config.amp,
                                 distributed=self.distributed)


def fit(model: nn.Module, *, train: Split, val: Split, normalization: Normalization,
        config: TrainConfig, device: Optional[torch.device] = None,
        on_epoch: Optional[Callable[[int, float], None]] = None, quiet: bool = True,
        description: str = "train", eval_key: str = "val_accuracy", start_epoch: int = 0,
        history: Optional[list[dict[str, Any]]] = None, optimizer_state: Optional[dict] = None,
        after_epoch: Optional[Callable[[int, list[dict[str, Any]], nn.Module,
                                        torch.optim.Optimizer], None]] = None,
        distributed: Optional[Distributed] = None) -> TrainResult:
    """Train ``model`` in place for epochs ``start_epoch + 1 .. config.epochs``.

    After each epoch the accuracy on ``val`` (None when it is empty) is appended to the
    history under ``eval_key``, ``on_epoch(epoch, val_accuracy)`` is called (1-based epoch; whatever it
    raises propagates unchanged, which is how the search prunes) and then
    ``after_epoch(epoch, history, model, optimizer)`` (checkpoints). A NaN or infinite
    loss raises :class:`TrainingDiverged`. Under ``distributed`` the model is wrapped in
    DistributedDataParallel and each rank trains on its share of every batch."""
    loop = _Loop(model, train=train, normalization=normalization, config=config,
                 device=device or default_device(), distributed=distributed,
                 fresh=start_epoch == 0 and optimizer_state is None,
                 optimizer_state=optimizer_state)
    history = list(history or [])
    started = time.perf_counter()
    progress = _progress_bar((config.epochs - start_epoch) * loop.steps_per_epoch, description,
                             quiet, loop.rank)
    try:
        for epoch in range(start_epoch, config.epochs):
            trained = loop.train_epoch(epoch, progress)
            val_accuracy = loop.settle(epoch, val)
            history.append({
                "epoch": epoch + 1,
                "train_loss": round(trained["loss"], 6),
                "train_accuracy": round(trained["accuracy"], 6),
                eval_key: None if val_accuracy is None else round(val_accuracy, 6),
                "lr": trained["lr"],
                "train_images": int(trained["images"]),
                "train_seconds": round(trained["seconds"], 3),
                "images_per_second": round(trained["images"] / trained["seconds"], 1),
                "seconds": round(time.perf_counter() - trained["started"], 3),
            })
            progress.set_postfix(epoch=f"{epoch + 1}/{config.epochs}",
                                 loss=f"{trained['loss']:.3f}", acc=f"{trained['accuracy']:.3f}",
                                 img_s=f"{trained['images'] / trained['seconds']:.0f}",
                                 val="-" if val_accuracy is None else f"{val_accuracy:.4f}")
            log.info("epoch %d/%d: %s", epoch + 1, config.epochs, history[-1])
            if on_epoch is not None and val_accuracy is not None:
                on_epoch(epoch + 1, val_accuracy)
            if after_epoch is not None:
                after_epoch(epoch + 1, history, loop.network, loop.optimizer)
    finally:
        progress.close()
    return TrainResult(history=history, seconds=time.perf_counter() - started, eval_key=eval_key)
