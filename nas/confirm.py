"""Confirmation: the study's best genomes trained again, longer and with more seeds.

The search's proxy (a few epochs) ranks genomes only loosely, and its scores of the best
few are within noise of each other more often than not (docs/training.md). With
``nas search --confirm-top K`` the K best distinct genomes by the search's reward, and
the reference networks, are trained stand-alone at a higher fidelity (the proxy's protocol
with :attr:`~nas.search_config.SearchConfig.confirm_epochs`, once per seed of
``confirm_seeds``); ``best.json`` is then the genome with the best confirmed reward
(:mod:`nas.selection`).

Each seed's accuracy is written to the study as soon as it is known (a user attribute
per genome, :data:`nas.selection.CONFIRMED_PREFIX` + digest), so a killed search resumes
where it stopped; a genome confirmed under the current protocol is never trained again.
Workers on other machines that finish at the same moment may train the same seed twice:
the same protocol and seed give the same entry, and the last write stands.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional, Sequence

import optuna

from space import Genome

from .protocol import EvaluationFailed
from .search_config import SearchConfig
from .selection import CONFIRM_PROTOCOL, CONFIRMED_PREFIX, confirmed_score
from .trial import DIGEST, TrialRecord

__all__ = ["Confirmer", "confirm_top", "top_genomes"]

log = logging.getLogger(__name__)


class Confirmer:
    """Trains genomes at the confirmation protocol of ``config`` and records the scores."""

    def __init__(self, config: SearchConfig, study: optuna.Study) -> None:
        self.config, self.study = config, study
        proxy = config.confirm
        self.seeds = [config.seed + index for index in range(config.confirm_seeds)]
        self.protocol = {"dataset": config.dataset, "epochs": proxy.epochs,
                         "subset": proxy.subset, "resolution": proxy.resolution,
                         "batch_size": proxy.batch_size, "val_size": proxy.val_size,
                         "seeds": self.seeds}
        self._evaluators: dict[int, Any] = {}

    def _evaluator(self, seed: int) -> Any:
        if seed not in self._evaluators:
            from .evaluators import make_evaluator  # torch

            self._evaluators[seed] = make_evaluator(
                "proxy-train", dataset=self.config.dataset, data_dir=self.config.data_dir,
                seed=seed, proxy=self.config.confirm, quiet=self.config.quiet)
        return self._evaluators[seed]

    def confirm(self, genome: Genome, digest: str, *, trial: int,
                reference: Optional[str] = None) -> dict[str, Any]:
        """The confirmation entry of ``genome`` (trial ``trial``): read from the study when
        it holds it under this protocol, else completed seed by seed and recorded."""
        if self.study.user_attrs.get(CONFIRM_PROTOCOL) != self.protocol:
            self.study.set_user_attr(CONFIRM_PROTOCOL, self.protocol)
        key = CONFIRMED_PREFIX + digest
        entry = self.study.user_attrs.get(key)
        if not isinstance(entry, dict) or entry.get("protocol") != self.protocol:
            entry = {"trial": trial, "reference": reference, "protocol": self.protocol,
                     "epochs": self.protocol["epochs"], "seeds": self.seeds,
                     "val_size": self.protocol["val_size"], "accuracies": []}
        while not entry.get("failed") and len(entry["accuracies"]) < len(self.seeds):
            seed = self.seeds[len(entry["accuracies"])]
            evaluator = self._evaluator(seed)
            entry = {**entry, "val_size": len(evaluator.val)}
            try:
                accuracy = evaluator.evaluate(genome)
            except EvaluationFailed as error:
                entry = {**entry, "failed": str(error)}
            else:
                entry = {**entry, "accuracies": [*entry["accuracies"], accuracy]}
            self.study.set_user_attr(key, entry)  # each seed kept: a resume starts here
        return entry


def top_genomes(records: Sequence[TrialRecord], k: int) -> list[TrialRecord]:
    """The ``k`` best distinct genomes of the search by its reward (the first trial of each)."""
    ranked = sorted((r for r in records if r.state in ("complete", "reused")
                     and r.reward is not None), key=lambda r: (-r.reward, r.number))
    chosen: dict[str, TrialRecord] = {}
    for record in ranked:
        chosen.setdefault(record.attrs.get(DIGEST), record)
        if len(chosen) == k:
            break
    return list(chosen.values())


def confirm_top(study: optuna.Study, config: SearchConfig, *, quiet: bool = False) -> int:
    """Confirm the top ``config.confirm_top`` genomes and every reference network of the
    study; returns how many entries were trained or completed now."""
    confirmer = Confirmer(config, study)
    records = [TrialRecord(t) for t in study.get_trials(deepcopy=False)]
    chosen = top_genomes(records, config.confirm_top) + [
        r for r in records if r.state == "reference" and r.genome_dict is not None]
    done = 0
    for index, record in enumerate(chosen, 1):
        digest = record.attrs[DIGEST]
        before = study.user_attrs.get(CONFIRMED_PREFIX + digest)
        if isinstance(before, dict) and before.get("protocol") == confirmer.protocol and (
                before.get("failed") or confirmed_score(before) is not None):
            continue
        what = record.attrs.get("reference") or f"trial {record.number}"
        if not quiet:
            print(f"confirming {index}/{len(chosen)}: {what}, {confirmer.protocol['epochs']} "
                  f"epochs x {len(confirmer.seeds)} seed(s)", file=sys.stderr, flush=True)
        entry = confirmer.confirm(record.genome, digest, trial=record.number,
                                  reference=record.attrs.get("reference"))
        if entry.get("failed"):
            log.warning("confirmation of %s failed: %s", what, entry["failed"])
        done += 1
    return done
