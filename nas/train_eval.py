"""Scoring a model on a split, and the pieces the trainer shares with scoring: a
process's place in a DistributedDataParallel group, mixed precision, sums over ranks,
batch-norm statistics recomputed after training, and a digest of the weights."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .data import Normalization, Split, batches, preprocess

__all__ = ["Distributed", "autocast", "all_reduce_sum", "evaluate_accuracy",
           "recompute_batch_norm", "average_buffers", "state_digest"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a DistributedDataParallel group (from torchrun's variables)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_env(cls) -> Optional["Distributed"]:
        """The group torchrun describes in the environment, or None for a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        return cls(rank=int(os.environ["RANK"]), world_size=world,
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))

    @property
    def is_main(self) -> bool:
        return self.rank == 0



def autocast(device: torch.device, amp: bool):
    """Mixed precision on CUDA when ``amp`` (bfloat16 where supported), else none."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def all_reduce_sum(values: list[float], device: torch.device,
                    distributed: Optional[Distributed]) -> list[float]:
    """``values`` summed over the ranks (unchanged for a single process)."""
    if distributed is None:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, split: Split, *, resolution: int,
                      normalization: Normalization, device: torch.device,
                      batch_size: int = 1024, channels_last: bool = True, amp: bool = True,
                      distributed: Optional[Distributed] = None) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (eval mode) on ``split``; under DDP each rank
    scores its share and the counts are summed."""
    network = model.module if hasattr(model, "module") else model
    was_training = network.training
    network.eval()
    rank, world = (distributed.rank, distributed.world_size) if distributed else (0, 1)
    correct = 0.0
    images_seen = 0.0
    for images, labels in batches(split, batch_size, shuffle=False):
        if world > 1:  # strided shares: every image is scored once over all ranks
            images, labels = images[rank::world], labels[rank::world]
        if len(labels) == 0:
            continue
        inputs = preprocess(images.to(device, non_blocking=True), resolution, normalization,
                            channels_last=channels_last)
        with autocast(device, amp):
            logits = network(inputs)
        correct += float((logits.argmax(1).cpu() == labels).sum())
        images_seen += len(labels)
    network.train(was_training)
    correct, images_seen = all_reduce_sum([correct, images_seen], device, distributed)
    return correct / images_seen if images_seen else 0.0


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, split: Split, *, images: int, batch_size: int,
                         resolution: int, normalization: Normalization, device: torch.device,
                         channels_last: bool, seed: int) -> None:
    """Replace the running mean/variance of every batch-norm layer by their plain average
    over ``images`` training images (the model's training-mode forward, no gradients).

    The exponential running averages lag far behind the weights in a short run: after a
    few hundred steps the depthwise layers' variances still carry their initial value,
    and the eval-mode network scores near chance (pycls, ``compute_precise_bn_stats``)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or images <= 0:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    was_training = model.training
    model.train()
    seen = 0
    for batch, _ in batches(split, min(batch_size, images), shuffle=True, seed=seed):
        model(preprocess(batch.to(device, non_blocking=True), resolution, normalization,
                         channels_last=channels_last))
        seen += len(batch)
        if seen >= images:
            break
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


def average_buffers(model: nn.Module, distributed: Distributed) -> None:
    """Average the batch-norm running statistics over the ranks: each rank updated them
    on its own share of the last batches, and evaluation and checkpoints need one model."""
    for buffer in model.buffers():
        if buffer.is_floating_point():
            torch.distributed.all_reduce(buffer)
            buffer.div_(distributed.world_size)


def state_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in state_dict order (ranks compare these)."""
    network = model.module if hasattr(model, "module") else model
    digest = hashlib.sha256()
    for key, value in network.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
