"""What a supernet's weights depend on besides its space and dataset (importable without
torch: the command line reads the defaults when it registers its options)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["SupernetSettings", "SCHEDULES"]

# How the sub-networks of a step are drawn (nas.supernet.training): "sandwich" from the
# whole space at every step; "progressive" shrinks in stages as once-for-all does.
SCHEDULES = ("sandwich", "progressive")


@dataclass(frozen=True)
class SupernetSettings:
    """What a supernet's weights depend on besides its space and dataset.

    ``subset`` None trains on every training image outside the validation split
    (``val_size`` images, split with ``seed`` as the search splits them, so that no
    image a genome is scored on was trained on)."""

    # Measured (benchmarks/results/supernet_fidelity_*ep.json): 2 epochs rank the 32
    # reference genomes as well as 4 (Spearman +0.26 against +0.23) in 28 minutes instead
    # of 59, which leaves half of a one-hour budget to the search itself.
    epochs: int = 2
    subset: Optional[int] = None
    batch_size: int = 128
    resolution: int = 32
    val_size: int = 5000
    seed: int = 0
    optimizer: str = "adamw"
    lr: Optional[float] = None
    label_smoothing: float = 0.1
    augment: bool = False
    random_subnets: int = 2
    # Measured (supernet_fidelity_2ep_progressive.json): progressive shrinking ranked the
    # 32 reference genomes at +0.13 against the sandwich rule's +0.26, over 2 epochs each.
    schedule: str = "sandwich"

    def __post_init__(self) -> None:
        self.train_config()  # TrainConfig checks epochs, batch size, optimizer and resolution
        if self.subset is not None and self.subset < self.batch_size:
            raise ValueError(f"subset {self.subset} must hold at least one batch "
                             f"({self.batch_size} images)")
        if not 0 <= self.random_subnets <= 16:
            raise ValueError(f"random_subnets {self.random_subnets} must be 0 to 16")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} must be one of {', '.join(SCHEDULES)}")

    def train_config(self):
        """The :class:`nas.train.TrainConfig` of the same optimiser and schedule."""
        from ..train import TrainConfig  # torch

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size,
                           optimizer=self.optimizer, lr=self.lr,
                           label_smoothing=self.label_smoothing, augment=self.augment,
                           resolution=self.resolution, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The settings, the default schedule left out: an artifact's key holds them, and
        artifacts trained before there was a choice of schedule keep their keys."""
        settings = dataclasses.asdict(self)
        if settings["schedule"] == "sandwich":
            del settings["schedule"]
        return settings
