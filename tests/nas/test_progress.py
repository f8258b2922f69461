"""Progress output: a terminal gets the per-step bar, a log file (or CI) does not."""

from __future__ import annotations

import io
import sys

import pytest
import torch

from nas.data import load_dataset, split_train_val, take_subset
from nas.train import TrainConfig, fit
from space import Genome, Stage, build

TINY = Genome(name="tiny", stem_channels=8, head_channels=16, dropout=0.0,
              drop_connect_rate=0.0, resolution=16, activation="relu",
              stages=(Stage(kernel_size=3, expand_ratio=1, se_ratio=0.0, num_layers=1,
                            out_channels=8, stride=2),))


class _Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_per_step_bar_writes_only_to_a_terminal(monkeypatch, terminal):
    data = load_dataset("fashion-mnist")
    train, val = split_train_val(data, 64, seed=0)
    stream = _Stream(terminal)
    monkeypatch.setattr(sys, "stderr", stream)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(build(TINY, num_classes=10, in_channels=1), train=take_subset(train, 256, seed=0),
            val=val, normalization=data.normalization, device=torch.device("cpu"),
            config=TrainConfig(epochs=1, batch_size=32, resolution=16), quiet=False,
            description="bar")
    finally:
        torch.set_num_threads(threads)
    written = stream.getvalue()
    # A terminal sees the bar (and its 8 steps, counted); a log file gets none of it.
    if terminal:
        assert "bar" in written and "/8" in written
    else:
        assert written == ""
