"""`torchrun --nproc_per_node 2 -m nas train`: two CPU processes (gloo) on a tiny slice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nas.checkpoint import model_from_checkpoint
from nas.train import state_digest
from space import Genome, Stage

REPO = Path(__file__).resolve().parents[2]
TINY = Genome(name="tiny", stem_channels=8, head_channels=32, dropout=0.0,
              drop_connect_rate=0.2, resolution=32, activation="relu",
              stages=(Stage(kernel_size=3, expand_ratio=1, se_ratio=0.0, num_layers=1,
                            out_channels=8, stride=1),
                      Stage(kernel_size=3, expand_ratio=3, se_ratio=0.25, num_layers=2,
                            out_channels=16, stride=2)))


def test_two_processes_train_one_model_and_agree(tmp_path):
    genome = tmp_path / "tiny.json"
    genome.write_text(TINY.to_json())
    out = tmp_path / "ddp"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "nas", "train", "--genome", str(genome), "--out", str(out), "--epochs", "2",
         "--subset", "2048", "--val-size", "500", "--resolution", "16", "--batch-size", "64",
         "--lr", "0.01", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    # The rank's own error comes first, torchrun's summary of it last: show both.
    assert done.returncode == 0, (done.stderr if len(done.stderr) < 6000
                                  else done.stderr[:4000] + "\n...\n" + done.stderr[-2000:])
    assert "x 2 processes (DDP)" in done.stdout
    assert done.stdout.count("done: test accuracy") == 1  # only rank 0 reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["ranks_agree"] is True
    ranks = metrics["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    # Identical weights (parameters and batch-norm statistics) and scores on both ranks.
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["test_accuracy"] == ranks[1]["test_accuracy"] == metrics["test_accuracy"]
    assert ranks[0]["val_accuracy"] == ranks[1]["val_accuracy"]
    # Each rank saw half of every global batch of 64: 2 x 16 steps x 64 images per epoch.
    assert [h["train_images"] for h in metrics["history"]] == [2048, 2048]
    assert metrics["test_accuracy"] > 0.4  # it learned (chance is 0.1)
    _, model, _ = model_from_checkpoint(out / "checkpoint.pt")
    assert state_digest(model) == ranks[0]["weights_sha256"]
