"""A weight-sharing supernet evaluator (once-for-all, BigNAS): one network trained once
over a whole search space scores any genome of it from inherited weights.

:mod:`.model` the supernet and the export of a sub-network; :mod:`.settings` what its
weights depend on; :mod:`.training` the sandwich-rule training with in-place
distillation and resumable checkpoints; :mod:`.artifact` the trained supernet as a file
keyed by space, dataset and settings; :mod:`.evaluator` the ``supernet`` evaluator.
"""

from .settings import SupernetSettings

__all__ = ["Supernet", "SupernetError", "SupernetSettings", "SupernetEvaluator",
           "check_shareable"]


def __getattr__(name: str):
    # torch loads on first use: the command line reads SupernetSettings' defaults only.
    if name in ("Supernet", "SupernetError", "check_shareable"):
        from . import model

        return getattr(model, name)
    if name == "SupernetEvaluator":
        from .evaluator import SupernetEvaluator

        return SupernetEvaluator
    raise AttributeError(f"module 'nas.supernet' has no attribute {name!r}")
