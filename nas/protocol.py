"""The evaluators' names, the default proxy protocol and how an evaluation fails.

Importable without torch: the command line registers its flags from these and the search
loop catches :class:`EvaluationFailed` before any model exists, while ``nas.evaluators``
(which holds the evaluators themselves) pulls in torch.
"""

from __future__ import annotations

import dataclasses

from .settings import ProxySettings

EVALUATORS = ("proxy-train", "naswot", "synflow", "grad-norm")
# The default proxy protocol as a plain dict, for the files that record it; its settings
# (defaults, help, bounds) are declared once, in nas.settings.ProxySettings.
PROXY_DEFAULTS = dataclasses.asdict(ProxySettings())
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
