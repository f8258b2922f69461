"""Training a supernet: the sandwich rule with in-place distillation (BigNAS, Yu et al.
2020; once-for-all, Cai et al. 2020), resumable from checkpoints.

Every step trains, on the same batch, the largest sub-network (the :func:`teacher`) on
the labels, then the smallest and ``random_subnets`` random ones on the teacher's soft
predictions (its detached softmax), accumulating the gradients for one optimizer step:
the largest and smallest bound the space, distillation gives the small ones a smoother
target. As in BigNAS, dropout and drop-connect regularise only the teacher.

The ``progressive`` schedule (once-for-all's progressive shrinking) draws the students
from a space that grows over four equal spans of the training (:data:`PROGRESSIVE_PHASES`):
the teacher alone, then other kernel sizes, then fewer layers, then every choice; a
student's other choices are the teacher's.

Reproducible and resumable: step ``s`` draws its sub-networks, augmentation and dropout
from seeds of ``(seed, s)`` alone and its batch from the epoch's seeded permutation, so
a training resumed from the checkpoint of step ``s`` follows the path of one that was
never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import random
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from space import Genome, SearchSpace

from ..common import atomic_write_bytes
from ..data import Normalization, Split, augment, batches, preprocess
from ..signals import check_stop, handle_signals, stop_requested
from ..train import TrainConfig, learning_rate
from .model import Supernet, SupernetError
from .settings import SupernetSettings

__all__ = ["train_supernet", "sandwich", "teacher", "PARTIAL_FORMAT", "PROGRESSIVE_PHASES"]

log = logging.getLogger(__name__)

PARTIAL_FORMAT = "nas-supernet-partial"


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919) % 2**63


# The stage fields a progressive student may take from the space in each quarter of the
# training (None: all of them), in once-for-all's order: kernel, depth, then the widths.
PROGRESSIVE_PHASES: tuple[Optional[tuple[str, ...]], ...] = (
    (), ("kernel_size",), ("kernel_size", "num_layers"), None)


def sandwich(supernet: Supernet, step: int, seed: int, random_subnets: int,
             free_fields: Optional[tuple[str, ...]] = None) -> list[Genome]:
    """The sub-networks of step ``step``: the :func:`teacher` (with the space's dropout
    and drop-connect), the smallest and ``random_subnets`` random ones (without them).
    With ``free_fields`` given, the students vary only those stage fields and take the
    rest from the teacher; with none free the teacher trains alone."""
    space = supernet.space
    largest = teacher(space)
    if free_fields == ():
        return [largest]
    rng = random.Random(_step_seed(seed, step))
    plain = [space.smallest()] + [space.random_genome(rng) for _ in range(random_subnets)]
    if free_fields is not None:
        plain = [dataclasses.replace(largest, stages=tuple(
            dataclasses.replace(big, **{name: getattr(small, name) for name in free_fields})
            for big, small in zip(largest.stages, genome.stages))) for genome in plain]
        # Few choices free: students repeat each other or the teacher (a space with one
        # kernel size); a repeat would only weigh that network twice.
        plain = [g for g in dict.fromkeys(plain) if g != largest]
    return [largest] + [dataclasses.replace(g, dropout=0.0, drop_connect_rate=0.0) for g in plain]


def free_fields(settings: SupernetSettings, step: int,
                total_steps: int) -> Optional[tuple[str, ...]]:
    """What the students of step ``step`` may vary under ``settings.schedule``."""
    if settings.schedule == "sandwich":
        return None
    return PROGRESSIVE_PHASES[min(len(PROGRESSIVE_PHASES) - 1,
                                  step * len(PROGRESSIVE_PHASES) // total_steps)]


def teacher(space: SearchSpace) -> Genome:
    """The distillation teacher: the largest genome (the dearest kernel, expansion, SE,
    depth and width of every stage), with the space's first conv op (MBConv in the
    default space) and residuals wherever the space offers them.

    Not :meth:`SearchSpace.largest`, whose Fused-MBConv stages cost 4.4x the
    multiply-adds of the all-MBConv network in the default space (119 M against 27 M at
    32 px) and would make every sandwich step 2.4x dearer; the fused candidates
    train through the random sub-networks. Its skip op "none" would only make the
    deepest network harder to train and adds no weights."""
    largest = space.largest()
    stages = []
    for stage, choices in zip(largest.stages, space.stages):
        skip = "identity" if "identity" in choices.options["skip_op"] else stage.skip_op
        stages.append(dataclasses.replace(stage, conv_op=choices.options["conv_op"][0],
                                          skip_op=skip))
    return dataclasses.replace(largest, stages=tuple(stages))


def _optimizer(supernet: Supernet, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and normalisation scales, as nas.train trains.
    decay = [p for p in supernet.parameters() if p.ndim > 1]
    rest = [p for p in supernet.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.decay},
              {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.peak_lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.peak_lr)


def _train_step(supernet: Supernet, inputs: torch.Tensor, targets: torch.Tensor,
                genomes: list[Genome], label_smoothing: float) -> tuple[float, float]:
    """Accumulate the gradients of one sandwich; returns (largest's loss, mean
    distillation loss of the others)."""
    logits = supernet(inputs, genomes[0])
    loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    loss.backward()
    teacher = logits.detach().softmax(1)
    distill = 0.0
    for genome in genomes[1:]:
        student = supernet(inputs, genome).log_softmax(1)
        kd = -(teacher * student).sum(1).mean()  # cross-entropy to the soft target
        kd.backward()
        distill += float(kd.detach())
    return float(loss.detach()), distill / max(1, len(genomes) - 1)


def _load_partial(path: Path, digest: str) -> Optional[dict[str, Any]]:
    """The checkpoint at ``path`` when it belongs to this training; None otherwise (a
    checkpoint of other settings or an unreadable one is trained over, with a warning)."""
    if not path.is_file():
        return None
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not a torch file")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file: start over, the artifact is untouched
        log.warning("supernet checkpoint %s is unreadable (%s); training from the start",
                    path, str(error).splitlines()[0][:120] if str(error) else type(error).__name__)
        return None
    if not isinstance(payload, dict) or payload.get("format") != PARTIAL_FORMAT \
            or payload.get("digest") != digest:
        log.warning("supernet checkpoint %s belongs to other settings; training from the "
                    "start", path)
        return None
    return payload


def _epoch_batches(train: Split, settings: SupernetSettings, epoch: int,
                   skip: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    source = batches(train, settings.batch_size, shuffle=True, seed=settings.seed + epoch,
                     drop_last=True)
    for index, batch in enumerate(source):
        if index >= skip:
            yield batch


class _Run:
    """The state of one supernet training: what a checkpoint holds and restores."""

    def __init__(self, supernet: Supernet, settings: SupernetSettings, steps_per_epoch: int,
                 digest: str) -> None:
        self.supernet, self.settings, self.digest = supernet, settings, digest
        self.config = settings.train_config()
        self.steps_per_epoch = steps_per_epoch
        self.total = settings.epochs * steps_per_epoch
        self.optimizer = _optimizer(supernet, self.config)
        self.step, self.history, self.seconds = 0, [], 0.0
        self.sums = [0.0, 0.0, 0]  # this epoch's loss, distillation loss, steps

    def state(self) -> dict[str, Any]:
        return {"format": PARTIAL_FORMAT, "digest": self.digest, "step": self.step,
                "state_dict": self.supernet.state_dict(),
                "optimizer": self.optimizer.state_dict(), "history": self.history,
                "sums": self.sums, "seconds": self.seconds}

    def restore(self, payload: dict[str, Any]) -> None:
        self.supernet.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step, self.history = int(payload["step"]), list(payload["history"])
        self.sums, self.seconds = list(payload["sums"]), float(payload["seconds"])

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(self.state(), buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def train_step(self, images: torch.Tensor, labels: torch.Tensor,
                   normalization: Normalization, device: torch.device) -> tuple[float, float]:
        """One sandwich step on one batch; returns (teacher's loss, distillation loss)."""
        seed = _step_seed(self.settings.seed, self.step)
        torch.manual_seed(seed)  # dropout and drop-connect of this step
        if self.settings.augment:
            images = augment(images, generator=torch.Generator().manual_seed(seed))
        inputs = preprocess(images.to(device), self.settings.resolution, normalization,
                            channels_last=True)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.total, self.config, self.steps_per_epoch)
        self.optimizer.zero_grad(set_to_none=True)
        genomes = sandwich(self.supernet, self.step, self.settings.seed,
                           self.settings.random_subnets,
                           free_fields(self.settings, self.step, self.total))
        loss, distill = _train_step(self.supernet, inputs, labels.to(device), genomes,
                                    self.settings.label_smoothing)
        if not (math.isfinite(loss) and math.isfinite(distill)):
            raise SupernetError(f"supernet training diverged at step {self.step + 1} (loss "
                                f"{loss}); lower the learning rate (--lr)")
        self.optimizer.step()
        self.step += 1
        self.sums = [self.sums[0] + loss, self.sums[1] + distill, self.sums[2] + 1]
        if self.step % self.steps_per_epoch == 0:
            count = self.sums[2]
            self.history.append({"epoch": self.step // self.steps_per_epoch,
                                 "loss": round(self.sums[0] / count, 5),
                                 "distill_loss": round(self.sums[1] / count, 5)})
            self.sums = [0.0, 0.0, 0]
        return loss, distill


def train_supernet(supernet: Supernet, train: Split, normalization: Normalization,
                   settings: SupernetSettings, *, digest: str, checkpoint: Optional[Path],
                   checkpoint_seconds: float = 60.0, device: torch.device,
                   quiet: bool = True,
                   on_step: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Train ``supernet`` in place; returns a summary (steps, seconds, images per second,
    mean losses per epoch). With ``checkpoint`` a path, the state is written there
    atomically every ``checkpoint_seconds`` and at the end, and a checkpoint of the same
    ``digest`` found there is resumed. ``on_step(step)`` runs after each completed step
    (tests interrupt with it). The progress bar shows only on a terminal."""
    steps_per_epoch = len(train) // settings.batch_size
    if steps_per_epoch < 1:
        raise SupernetError(f"{len(train)} training images are fewer than one batch "
                            f"({settings.batch_size})")
    supernet.to(device=device, memory_format=torch.channels_last)
    run = _Run(supernet, settings, steps_per_epoch, digest)
    resumed = _load_partial(checkpoint, digest) if checkpoint is not None else None
    if resumed is not None:
        run.restore(resumed)
        log.info("supernet training resumes at step %d of %d", run.step, run.total)
    else:
        torch.nn.init.zeros_(supernet.net.classifier.weight)  # as nas.train starts a proxy
        torch.nn.init.zeros_(supernet.net.classifier.bias)
    start, seconds_before = run.step, run.seconds
    supernet.train()
    started = saved_at = time.perf_counter()
    terminal = sys.stderr.isatty()
    progress = tqdm(total=run.total, initial=start, desc="supernet", unit="step",
                    disable=quiet or not terminal, leave=False, dynamic_ncols=True)
    # Off a terminal (a log file, a worker under nohup) a redrawn bar would be one line per
    # step; a line a minute says the same.
    reported_at = started
    loader: Optional[Iterator] = None
    # A first Ctrl-C or SIGTERM stops between two steps, where the state is whole, and
    # saves it: the next run resumes at that very step.
    with handle_signals(graceful=True), contextlib.closing(progress):
        while run.step < run.total:
            if stop_requested() is not None and checkpoint is not None:
                run.save(checkpoint)
            check_stop()
            epoch, within = divmod(run.step, steps_per_epoch)
            if loader is None or within == 0:
                loader = _epoch_batches(train, settings, epoch, within)
            loss, distill = run.train_step(*next(loader), normalization, device)
            elapsed = time.perf_counter() - started
            run.seconds = seconds_before + elapsed
            progress.update(1)
            images_per_second = (run.step - start) * settings.batch_size / max(elapsed, 1e-9)
            progress.set_postfix(loss=f"{loss:.3f}", kd=f"{distill:.3f}",
                                 img_s=f"{images_per_second:.0f}", refresh=False)
            if checkpoint is not None and (run.step == run.total or
                                           time.perf_counter() - saved_at >= checkpoint_seconds):
                run.save(checkpoint)
                saved_at = time.perf_counter()
            if not quiet and not terminal and (run.step == run.total or
                                               time.perf_counter() - reported_at >= 60.0):
                reported_at = time.perf_counter()
                remaining = (run.total - run.step) * elapsed / max(run.step - start, 1)
                print(f"supernet step {run.step}/{run.total}: loss {loss:.3f}, distillation "
                      f"{distill:.3f}, {images_per_second:.0f} img/s, "
                      f"{remaining / 60:.0f} min left", file=sys.stderr, flush=True)
            if on_step is not None:
                on_step(run.step)
    elapsed = time.perf_counter() - started
    return {"steps": run.total, "epochs": settings.epochs, "train_images": len(train),
            "seconds": round(run.seconds, 3),
            "images_per_second": round((run.total - start) * settings.batch_size
                                       / max(elapsed, 1e-9), 1),
            "resumed_at_step": start, "history": run.history}
