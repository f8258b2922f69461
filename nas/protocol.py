"""The evaluators' names and kinds, the default proxy protocol and how an evaluation fails.

Importable without torch: the command line registers its flags from these and the search
loop catches :class:`EvaluationFailed` before any model exists, while ``nas.evaluators``
(which holds the evaluators themselves) pulls in torch.
"""

from __future__ import annotations

import dataclasses

from .settings import ProxySettings


@dataclasses.dataclass(frozen=True)
class EvaluatorKind:
    """What a command and the search know of an evaluator before torch loads.

    ``is_accuracy``: it trains and scores validation accuracy, reporting every epoch
    (a pruner can act on those, and a zero-cost prescreen can save it work); otherwise
    its score is a zero-cost proxy's. ``module`` defines its class, the subclass of
    :class:`nas.evaluators.Evaluator` whose ``name`` is this one."""

    name: str
    is_accuracy: bool = False
    module: str = "nas.evaluators"


# An evaluator joins here and in the module that defines its class; the search, the
# command line and make_evaluator find it through this table.
EVALUATOR_KINDS = {kind.name: kind for kind in (
    EvaluatorKind("proxy-train", is_accuracy=True),
    EvaluatorKind("naswot"),
    EvaluatorKind("synflow"),
    EvaluatorKind("grad-norm"),
    # Scores validation accuracy, but from inherited weights in seconds, without per-epoch
    # reports: nothing for a pruner or a zero-cost prescreen to save.
    EvaluatorKind("supernet", module="nas.supernet.evaluator"),
)}
EVALUATORS = tuple(EVALUATOR_KINDS)
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


def is_accuracy(evaluator: str) -> bool:
    """Whether the evaluator named so trains and scores accuracy (:class:`EvaluatorKind`)."""
    return evaluator in EVALUATOR_KINDS and EVALUATOR_KINDS[evaluator].is_accuracy
