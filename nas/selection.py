"""Which genome the study chose, and whether its lead is beyond the noise of the scores.

The search ranks genomes by the MnasNet reward ``accuracy x (cost/T)^w``. Each score
carries the standard error its evaluator states (:data:`nas.trial.NOISE`: for a
validation accuracy the binomial standard error of the validation split; for a zero-cost
score none, so its verdicts say "noise unknown"); the reward's is the accuracy's times
the same cost factor. :func:`select` picks the best searched trial and compares it with
the runner-up (the best other genome) and with every reference network
(:func:`nas.trial.mark_reference`) by :func:`nas.noise.verdict`.

Where the study holds confirmed scores (``nas search --confirm-top K``,
:mod:`nas.confirm`) of the current confirmation protocol, those decide: the best is the
confirmed genome with the best confirmed reward, compared with the other confirmed genomes
and the confirmed references. Confirmed scores live in the study's user attributes, one
key per genome (:data:`CONFIRMED_PREFIX` + digest), so studies made before read as they
were.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .noise import Verdict, binomial_standard_error, verdict
from .trial import DIGEST, TrialRecord

__all__ = ["CONFIRM_PROTOCOL", "CONFIRMED_PREFIX", "Candidate", "Comparison", "Selection",
           "select", "confirmed_entries", "confirmed_score"]

# Study attribute: the protocol of the confirmation run last (epochs, seeds, subset, ...);
# only entries made with it count.
CONFIRM_PROTOCOL = "confirm_protocol"
CONFIRMED_PREFIX = "confirmed:"  # + genome digest: one confirmation entry


@dataclass(frozen=True)
class Candidate:
    """A scored genome: a searched trial or a reference network."""

    record: TrialRecord
    accuracy: float
    accuracy_noise: Optional[float]
    reward: float
    reward_noise: Optional[float]
    confirmed: Optional[dict[str, Any]] = None  # the confirmation entry it was scored by

    @property
    def reference(self) -> Optional[str]:
        return self.record.attrs.get("reference")

    @property
    def label(self) -> str:
        if self.reference:
            return f"{self.reference} (reference, trial {self.record.number})"
        return f"trial {self.record.number}"

    def to_dict(self) -> dict[str, Any]:
        data = {"trial": self.record.number, "reward": self.reward,
                "reward_standard_error": self.reward_noise, "accuracy": self.accuracy,
                "accuracy_standard_error": self.accuracy_noise,
                "flops": self.record.costs()["flops"], "cost": self.record.cost}
        if self.reference:
            data["reference"] = self.reference
        if self.confirmed is not None:
            data["confirmed"] = {key: self.confirmed[key] for key in ("epochs", "seeds",
                                                                     "accuracies")}
        return data


@dataclass(frozen=True)
class Comparison:
    """The best against one other candidate."""

    other: Candidate
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {**self.other.to_dict(), "lead": self.verdict.lead,
                "lead_standard_error": self.verdict.standard_error,
                "beyond_noise": self.verdict.beyond_noise, "verdict": self.verdict.text}

    def line(self) -> str:
        other = self.other
        noise = "" if other.reward_noise is None else f" +- {other.reward_noise:.4f}"
        return f"vs {other.label}: reward {other.reward:.4f}{noise}; {self.verdict.text}"


@dataclass(frozen=True)
class Selection:
    """The chosen best and how far it leads; ``basis`` is "proxy" (the search's own
    scores) or "confirmed"."""

    basis: str
    best: Candidate
    runner_up: Optional[Comparison]
    references: tuple[Comparison, ...] = ()
    # (reference name, why it is not compared): scored by another protocol than the best
    uncompared: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"basis": self.basis, "best": self.best.to_dict(),
                "runner_up": None if self.runner_up is None else self.runner_up.to_dict(),
                "references": [c.to_dict() for c in self.references],
                "references_not_compared": dict(self.uncompared), "z": 1.0,
                "noise_covers": self.noise_covers}

    @property
    def noise_covers(self) -> str:
        """What the standard errors of the verdicts hold, and what they leave out."""
        if self.best.reward_noise is None:
            return "nothing: the evaluator's scores have no known standard error"
        if self.basis == "confirmed":
            return "the spread of the confirmation's seeds or the validation split's " \
                   "binomial error, the larger"
        return "the validation split's binomial error only; the evaluator's own error as " \
               "a predictor of the accuracy trained alone (seed, proxy length, shared " \
               "weights) comes on top"

    def lines(self) -> list[str]:
        """The summary's lines (the report shows the same)."""
        basis = ("confirmed reward (mean of the longer trainings)" if self.basis == "confirmed"
                 else "reward of the search's evaluator")
        noise = "" if self.best.reward_noise is None else f" +- {self.best.reward_noise:.4f}"
        lines = [f"chosen by {basis}: {self.best.label}, reward {self.best.reward:.4f}{noise}"]
        if self.runner_up is not None:
            lines.append(self.runner_up.line())
        lines.extend(comparison.line() for comparison in self.references)
        lines.extend(f"vs {name}: not compared ({why})" for name, why in self.uncompared)
        if self.basis == "proxy" and any(c.verdict.beyond_noise for c in self.references):
            # Measured (docs/supernet.md): a supernet lead of 2.4 points over B0, beyond
            # the binomial error, was 0.28 points (within noise) once both were trained.
            lines.append("noise: the validation split's binomial error only, so a lead by the "
                         "search's scores may not survive training alone; --confirm-top K "
                         "trains the best and the references to check")
        return lines


def _reward_noise(accuracy: float, reward: float, noise: Optional[float]) -> Optional[float]:
    """The reward's standard error: the accuracy's times the reward's cost factor."""
    if noise is None or not accuracy > 0:
        return None
    return noise * reward / accuracy


def confirmed_score(entry: dict[str, Any]) -> Optional[tuple[float, float]]:
    """The mean accuracy of a finished confirmation entry and its standard error: the
    larger of the seed spread's and the binomial one of the validation split (two seeds
    can agree by chance); None while seeds are missing or after a failure."""
    accuracies = entry.get("accuracies") or []
    if entry.get("failed") or len(accuracies) < len(entry.get("seeds") or [None]):
        return None
    mean = statistics.fmean(accuracies)
    error = binomial_standard_error(min(1.0, max(0.0, mean)), int(entry["val_size"]))
    if len(accuracies) > 1:
        error = max(error, statistics.stdev(accuracies) / math.sqrt(len(accuracies)))
    return mean, error


def confirmed_entries(study_attrs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Digest -> the finished confirmation entries made with the study's current protocol."""
    protocol = study_attrs.get(CONFIRM_PROTOCOL)
    if not isinstance(protocol, dict):
        return {}
    entries = {}
    for key, entry in study_attrs.items():
        if key.startswith(CONFIRMED_PREFIX) and isinstance(entry, dict) \
                and entry.get("protocol") == protocol and confirmed_score(entry) is not None:
            entries[key[len(CONFIRMED_PREFIX):]] = entry
    return entries


def _candidate(record: TrialRecord, entry: Optional[dict[str, Any]]) -> Candidate:
    if entry is None:
        return Candidate(record, record.accuracy, record.noise, record.reward,
                         _reward_noise(record.accuracy, record.reward, record.noise))
    accuracy, error = confirmed_score(entry)
    factor = record.reward / record.accuracy if record.accuracy else 0.0
    return Candidate(record, accuracy, error, accuracy * factor, error * factor, entry)


def _compare(best: Candidate, other: Candidate) -> Comparison:
    return Comparison(other, verdict(best.reward, best.reward_noise, other.reward,
                                     other.reward_noise))


def select(records: Sequence[TrialRecord], study_attrs: dict[str, Any],
           candidates: Optional[Sequence[TrialRecord]] = None) -> Optional[Selection]:
    """The best searched trial and its comparisons; None before any trial has a reward.

    ``candidates`` limits which searched trials may be the best (a Pareto front); the
    runner-up is the best other genome of all searched ones."""
    scored = [r for r in records if r.state in ("complete", "reused")
              and r.reward is not None and r.accuracy is not None]
    references = [r for r in records if r.state == "reference"
                  and r.reward is not None and r.accuracy is not None]
    if not scored:
        return None
    entries = confirmed_entries(study_attrs)
    confirmed = [r for r in scored if r.attrs.get(DIGEST) in entries]
    basis = "confirmed" if confirmed else "proxy"
    pool = confirmed or scored
    if candidates is not None and not confirmed:
        allowed = {r.number for r in candidates}
        pool = [r for r in pool if r.number in allowed] or pool
    ranked = sorted((_candidate(r, entries.get(r.attrs.get(DIGEST))) for r in pool),
                    key=lambda c: (-c.reward, c.record.number))
    best = ranked[0]
    others = ranked if candidates is None or confirmed else sorted(
        (_candidate(r, None) for r in scored), key=lambda c: (-c.reward, c.record.number))
    runner = next((c for c in others
                   if c.record.attrs.get(DIGEST) != best.record.attrs.get(DIGEST)), None)
    compared, missing = [], []
    for record in references:
        # Scores of one protocol only: confirmed with confirmed, else the search's own.
        entry = entries.get(record.attrs.get(DIGEST)) if basis == "confirmed" else None
        name, evaluator = record.attrs.get("reference"), record.attrs.get("evaluator")
        if basis == "confirmed" and entry is None:
            missing.append((name, "no confirmed score"))
        elif basis == "proxy" and evaluator != best.record.attrs.get("evaluator"):
            missing.append((name, f"trained by {evaluator} at the confirmation's fidelity, "
                            f"the best scored by {best.record.attrs.get('evaluator')}; "
                            "compared once confirmed, --confirm-top"))
        else:
            compared.append(_compare(best, _candidate(record, entry)))
    evaluated = {record.attrs.get("reference") for record in references}
    stopped = {r.attrs.get("reference"): r.number for r in records
               if r.state == "interrupted" and r.attrs.get("reference") not in (None, *evaluated)}
    missing.extend((name, f"not evaluated: its trial {number} was stopped before it finished; "
                    "the same command goes on with it (with a longer --timeout if the time "
                    "budget stopped it)") for name, number in stopped.items())
    return Selection(basis, best, None if runner is None else _compare(best, runner),
                     tuple(compared), tuple(missing))
