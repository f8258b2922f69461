"""The evaluators' names, the default proxy protocol and how an evaluation fails.

Importable without torch: the command line registers its flags from these and the search
loop catches :class:`EvaluationFailed` before any model exists, while ``nas.evaluators``
(which holds the evaluators themselves) pulls in torch.
"""

from __future__ import annotations

EVALUATORS = ("proxy-train", "naswot", "synflow", "grad-norm")
# The default proxy: 3 epochs on 10,000 training images at 32 px, AdamW (peak 7.8e-3),
# one-cycle, batch 128, validated on 5,000 held-out training images. Batch 128 beat 64
# and 256 at equal time (more steps than 256, faster images than 64); see
# docs/training.md. benchmarks/bench_proxy.py measures EfficientNet-B0 under it.
PROXY_DEFAULTS = {"resolution": 32, "subset": 10000, "epochs": 3, "batch_size": 128,
                  "val_size": 5000}
ZERO_COST_BATCH = 64
# Zero-cost scores that can decide which genomes of the target window are worth a proxy
# training (--prescreen). naswot is the default: at 16 random genomes it ranked them
# against a 5x longer training far better than the 3-epoch proxy itself (Spearman +0.77
# vs +0.28; +0.73 with multiply-adds held fixed; benchmarks/bench_rank_fidelity.py).
PRESCREENS = ("naswot", "synflow", "grad-norm", "none")


class EvaluationFailed(Exception):
    """An evaluation that could not produce a score; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
