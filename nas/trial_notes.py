"""What optuna-dashboard shows for each evaluated trial: a note and two artifacts.

The search calls :func:`write_trial_note` and :func:`attach_trial_artifacts` after every
evaluated trial: the note (markdown) holds the per-stage architecture table and the costs,
and the artifacts are the genome JSON and an SVG diagram (:mod:`nas.diagram`), kept in a
:class:`~optuna.artifacts.FileSystemArtifactStore` under ``runs/<study>/artifacts``. Both
stay cheap (a few milliseconds per trial), because zero-cost searches run hundreds of
trials a minute.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path
from typing import Optional

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from space import Cost, Genome
from space.stage_table import STAGE_COLUMNS, stage_table

from .common import format_count
from .diagram import genome_svg
from .outputs import make_folders
from .run import RunFolder
from .storage import storage_of, study_system_attrs, trial_id

__all__ = ["trial_note", "write_trial_note", "read_trial_note", "stage_rows", "STAGE_HEADERS",
           "attach_trial_artifacts", "artifact_store_for"]


# The one stage table of `nas show`, the report and these notes (space.stage_table):
# stem, stages 1..N as the Optuna parameters number them, head.
STAGE_HEADERS = STAGE_COLUMNS


def stage_rows(genome: Genome, resolution: int) -> list[tuple[str, ...]]:
    """The rows of :func:`space.stage_table.stage_table` (columns :data:`STAGE_HEADERS`)."""
    return stage_table(genome, resolution)[1]


def trial_note(genome: Genome, cost: Cost, *, accuracy: Optional[float], reward: Optional[float],
               resolution: int) -> str:
    """Markdown for optuna-dashboard's trial note: the costs at the deployment
    ``resolution`` (multiply-adds, parameters, activations), the evaluator's accuracy and
    the MnasNet reward, then the table of :func:`stage_rows`."""
    score = "n/a" if accuracy is None else f"{accuracy:.4f}"
    gain = "n/a" if reward is None else f"{reward:.4f}"
    lines = [
        f"### {genome.name or 'genome'}",
        "",
        f"**accuracy** {score} &nbsp; **reward** {gain}",
        "",
        f"**multiply-adds** {cost.flops:,} ({format_count(cost.flops)}) &nbsp; "
        f"**parameters** {cost.params:,} ({format_count(cost.params)}) &nbsp; "
        f"**activations** {cost.activations:,} ({format_count(cost.activations)}) "
        f"at {resolution}\u00d7{resolution}",
        "",
        "| " + " | ".join(STAGE_HEADERS) + " |",
        "|" + "---|" * len(STAGE_HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in stage_rows(genome, resolution)]
    return "\n".join(lines) + "\n"


def artifact_store_for(run_dir: str | os.PathLike) -> FileSystemArtifactStore:
    """The artifact store of a run folder: ``<run_dir>/artifacts`` (created if missing)."""
    folder = make_folders(RunFolder(Path(run_dir)).artifacts)
    return FileSystemArtifactStore(folder)


# Input settings of each study, read once per study object: diagrams are drawn at the
# study's deployment resolution with its dataset's channels and classes.
_STUDY_SETTINGS: "weakref.WeakKeyDictionary[optuna.Study, tuple[Optional[int], int, int]]" = \
    weakref.WeakKeyDictionary()


def _settings(study: optuna.Study) -> tuple[Optional[int], int, int]:
    settings = _STUDY_SETTINGS.get(study)
    if settings is None:
        attrs = study.user_attrs
        settings = (attrs.get("resolution"), int(attrs.get("num_classes", 1000)),
                    int(attrs.get("in_channels", 3)))
        _STUDY_SETTINGS[study] = settings
    return settings


def attach_trial_artifacts(study: optuna.Study, trial: optuna.Trial | optuna.trial.FrozenTrial,
                           genome: Genome, artifact_store: FileSystemArtifactStore) -> None:
    """Upload ``genome-trialN.json`` and ``architecture-trialN.svg`` to ``trial``, where
    optuna-dashboard lists them under the trial's artifacts."""
    resolution, num_classes, in_channels = _settings(study)
    number = trial.number
    # upload_artifact reads only the trial id of a FrozenTrial; building one here spares a
    # full trial read from the storage (a third of this function's time on SQLite).
    frozen = optuna.trial.FrozenTrial(
        number=number, state=optuna.trial.TrialState.RUNNING, value=None,
        datetime_start=None, datetime_complete=None, params={}, distributions={},
        user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=trial_id(trial))
    svg = genome_svg(genome, resolution=resolution, num_classes=num_classes,
                     in_channels=in_channels,
                     title=genome.name or f"{study.study_name} trial {number}")
    with tempfile.TemporaryDirectory(prefix="nas-artifacts-") as folder:
        for name, text, mimetype in (
                (f"genome-trial{number}.json", genome.to_json() + "\n", "application/json"),
                (f"architecture-trial{number}.svg", svg, "image/svg+xml")):
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8")
            upload_artifact(artifact_store=artifact_store, file_path=str(path),
                            study_or_trial=frozen, storage=storage_of(study),
                            mimetype=mimetype)


def write_trial_note(trial: optuna.Trial, genome: Genome, cost: Cost, *,
                     accuracy: Optional[float], reward: Optional[float], resolution: int) -> None:
    """Store :func:`trial_note` where optuna-dashboard shows it for ``trial``."""
    from optuna_dashboard import save_note  # imported late: it pulls in a web framework

    save_note(trial, trial_note(genome, cost, accuracy=accuracy, reward=reward,
                                resolution=resolution))


def read_trial_note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """The note optuna-dashboard shows for ``trial`` (``""`` if it has none)."""
    from optuna_dashboard._note import get_note_from_system_attrs  # its reader, kept private

    return get_note_from_system_attrs(study_system_attrs(study), trial_id(trial))["body"]
