"""What a search leaves in its run folder besides the study: ``best.json``, ``trials.csv``,
``selection.json`` (best.json's metadata: how it was chosen and whether its lead over the
runner-up and the reference networks is beyond noise, :mod:`nas.selection`; best.json
itself stays a plain genome file) and, for a multi-objective study, ``pareto.json``
(names: :class:`nas.run.RunFolder`), and the :class:`SearchResult` the search returns."""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial

from space import Genome, GenomeError, SearchContext

from .common import json_bytes
from .outputs import publish
from .run import RunFolder
from .selection import Selection, select
from .trial import TrialRecord, state_counts

__all__ = ["SearchResult", "write_outputs", "pareto_front", "CSV_COLUMNS"]


@dataclass
class SearchResult:
    study_name: str
    run_dir: Path
    best: Optional[FrozenTrial]
    pareto: list[FrozenTrial] = field(default_factory=list)
    # Trials per state (nas.trial.STATES), but "complete" counts the reused ones too (as
    # Optuna's COMPLETE, the summary's "N complete (M reused)" and the counts recorded in
    # benchmarks/results always have).
    counts: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    interrupted: bool = False
    out_of_time: bool = False  # stopped by --timeout before the trial budget was used
    latency_measured: list[dict] = field(default_factory=list)  # metric latency: best, measured
    selection: Optional[Selection] = None  # how best was chosen, and its lead's verdicts


CSV_COLUMNS = ("number", "state", "reward", "accuracy", "noise", "flops", "params",
               "activations", "cost", "latency_predicted", "eval_seconds", "duration_s",
               "reused_from", "note", "genome")
# Columns copied from the trial's user attributes as they are ("" when missing).
_ATTR_COLUMNS = ("reward", "accuracy", "noise", "flops", "params", "activations", "cost",
                 "latency_predicted", "eval_seconds", "reused_from")


def _csv_row(record: TrialRecord) -> dict[str, Any]:
    # "state" stays Optuna's (COMPLETE, PRUNED, ...), as files written before had it; the
    # note says why a PRUNED trial was not evaluated.
    duration = record.duration_s
    return {"number": record.number, "state": record.frozen.state.name,
            **{key: record.attrs.get(key, "") for key in _ATTR_COLUMNS},
            "duration_s": "" if not duration else duration, "note": record.note,
            "genome": record.genome_json()}


def _counts(records: list[TrialRecord]) -> dict[str, int]:
    counts = state_counts(records)
    counts["complete"] += counts["reused"]
    return counts


def pareto_front(points: Sequence[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """The (cost, accuracy, trial) points no other point beats on both (lower cost, higher
    accuracy), by increasing cost; points of equal cost and accuracy are all kept, as in
    Optuna's ``best_trials``."""
    front: list[tuple[float, float, int]] = []
    for point in sorted(points, key=lambda p: (p[0], -p[1], p[2])):
        if not front or point[1] > front[-1][1] or point[:2] == front[-1][:2]:
            front.append(point)
    return front


def _pareto_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    # Here rather than study.best_trials, which would count reference networks in.
    by_number = {t.number: t for t in trials}
    return [by_number[number] for _, _, number in pareto_front(
        [(t.user_attrs["cost"], t.user_attrs["accuracy"], t.number) for t in trials])]


def write_outputs(study: optuna.Study, run_dir: Path) -> SearchResult:
    """``best.json``, ``trials.csv`` (and ``pareto.json`` for a multi-objective study),
    published together (:func:`nas.outputs.publish`): all new, or all as they were."""
    folder = RunFolder(Path(run_dir))
    records = [TrialRecord(trial) for trial in study.get_trials(deepcopy=False)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(_csv_row(record) for record in records)
    files = {folder.trials_csv: buffer.getvalue().encode()}
    result = SearchResult(study_name=study.study_name, run_dir=folder.path, best=None,
                          counts=_counts(records))
    # The reward ranks the searched genomes; reference networks are shown beside them.
    scored = [r.frozen for r in records if r.state in ("complete", "reused")
              and r.reward is not None]
    if not scored:
        publish(files)
        return result
    if len(study.directions) > 1:
        result.pareto = _pareto_trials(scored)
        files[folder.pareto_json] = json_bytes({"members": [
            {"number": t.number, "accuracy": t.user_attrs["accuracy"], "cost": t.user_attrs["cost"],
             "flops": t.user_attrs["flops"], "reward": t.user_attrs["reward"],
             "genome": t.user_attrs["genome"]} for t in result.pareto]})
        candidates = result.pareto  # best.json: the front member the reward prefers
    else:
        candidates = None
    # The best reward (confirmed, where the study holds confirmed scores), with its verdicts.
    result.selection = select(records, study.user_attrs, candidates and [
        TrialRecord(t) for t in candidates])
    result.best = result.selection.best.record.frozen
    best = _with_context(result.selection.best.record.genome, study.user_attrs)
    files[folder.best_json] = (best.to_json() + "\n").encode()
    files[folder.selection_json] = json_bytes(result.selection.to_dict())
    publish(files)
    return result


def _with_context(genome: Genome, attrs: dict[str, Any]) -> Genome:
    """``genome`` with its search's dataset context (the channels and classes the search
    costed it for), so that later commands report the same costs; unchanged for a study
    that does not record them."""
    try:
        return dataclasses.replace(genome, context=SearchContext(
            attrs["dataset"], attrs["in_channels"], attrs["num_classes"]))
    except (KeyError, GenomeError):
        return genome
