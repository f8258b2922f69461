"""A weight-sharing supernet evaluator (once-for-all, BigNAS): one network trained once
over a whole search space scores any genome of it from inherited weights.

:mod:`.model` the supernet and the export of a sub-network; :mod:`.training` the
sandwich-rule training with in-place distillation and resumable checkpoints;
:mod:`.artifact` the trained supernet as a file keyed by space, dataset and settings;
:mod:`.evaluator` the ``supernet`` evaluator of the search.
"""

from .model import SHARED_CHOICES, Supernet, SupernetError, check_shareable

__all__ = ["Supernet", "SupernetError", "check_shareable", "SHARED_CHOICES"]
