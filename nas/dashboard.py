"""What optuna-dashboard shows for each trial, and the dashboard server itself.

The search calls :func:`trial_note` and :func:`attach_trial_artifacts` after every evaluated
trial: the note (markdown) holds the per-stage architecture table and the costs, and the
artifacts are the genome JSON and an SVG diagram (:mod:`nas.diagram`), kept in a
:class:`~optuna.artifacts.FileSystemArtifactStore` under ``runs/<study>/artifacts``. Both
stay cheap (a few milliseconds per trial), because zero-cost searches run hundreds of
trials a minute.

:func:`serve` runs optuna-dashboard on a study's storage (``nas dashboard``).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Callable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from space import Cost, Genome, NasError, conv_output_size

from .common import format_count
from .diagram import genome_svg
from .outputs import make_folders
from .signals import check_stop, handle_signals
from .storage import mask_url, open_storage
from .dashboard_lookups import index_trial_lookups
from .study_view import hide_screened

__all__ = ["DashboardError", "trial_note", "stage_rows", "STAGE_HEADERS",
           "attach_trial_artifacts", "artifact_store_for",
           "ARTIFACTS_DIR", "StudyLocation", "locate_study", "open_study", "serve",
           "LOOPBACK"]

log = logging.getLogger(__name__)

ARTIFACTS_DIR = "artifacts"


class DashboardError(NasError):
    """A study that cannot be found or opened, or a port that cannot be used."""


# -- per-trial note and artifacts (called by the search) ---------------------------------------


def _number(value: float) -> str:
    return f"{value:g}"


STAGE_HEADERS = ("stage", "operator", "kernel", "expand", "SE", "layers", "channels", "stride",
                 "input")


def stage_rows(genome: Genome, resolution: int) -> list[tuple[str, ...]]:
    """The per-stage architecture table (columns :data:`STAGE_HEADERS`): stem, one row per
    stage, head. Stage numbers are those of the Optuna parameters (``stage3_kernel_size`` is
    row 3); ``input`` is the stage's input resolution at ``resolution`` pixels."""
    rows = [("stem", "Conv3x3", "3", "", "", "1", str(genome.stem_channels), "2",
             f"{resolution}\u00d7{resolution}")]
    size = conv_output_size(resolution, 3, 2)
    for index, stage in enumerate(genome.stages):
        rows.append((str(index + 1), stage.operator, str(stage.kernel_size),
                     _number(stage.expand_ratio), _number(stage.se_ratio), str(stage.num_layers),
                     str(stage.out_channels), str(stage.stride), f"{size}\u00d7{size}"))
        size = conv_output_size(size, stage.kernel_size, stage.stride)
    rows.append(("head", "Conv1x1, pooling, FC", "1", "", "", "1", str(genome.head_channels), "1",
                 f"{size}\u00d7{size}"))
    return rows


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
    folder = make_folders(Path(run_dir) / ARTIFACTS_DIR)
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


def attach_trial_artifacts(study: optuna.Study, trial_id: int, genome: Genome,
                           artifact_store: FileSystemArtifactStore) -> None:
    """Upload ``genome-trialN.json`` and ``architecture-trialN.svg`` to the trial (storage
    ``trial_id``), where optuna-dashboard lists them under the trial's artifacts."""
    resolution, num_classes, in_channels = _settings(study)
    storage = study._storage
    number = storage.get_trial_number_from_id(trial_id)
    # upload_artifact reads only the trial id of a FrozenTrial; building one here spares a
    # full trial read from the storage (a third of this function's time on SQLite).
    frozen = optuna.trial.FrozenTrial(
        number=number, state=optuna.trial.TrialState.RUNNING, value=None,
        datetime_start=None, datetime_complete=None, params={}, distributions={},
        user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=trial_id)
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
                            study_or_trial=frozen, storage=storage, mimetype=mimetype)


# -- finding a study ------------------------------------------------------------------------------

STUDY_DB = "study.db"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class StudyLocation:
    """Where a study lives: its storage URL, its name, and the run folder (artifacts,
    best.json, family.json) when it has one."""

    storage_url: str
    study_name: str
    run_dir: Optional[Path] = None

    @property
    def artifacts_dir(self) -> Optional[Path]:
        if self.run_dir is None or not (self.run_dir / ARTIFACTS_DIR).is_dir():
            return None
        return self.run_dir / ARTIFACTS_DIR


def _sqlite_path(url: str) -> Optional[Path]:
    prefix = "sqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) else None


def locate_study(*, run_dir: Optional[str | os.PathLike] = None, storage: Optional[str] = None,
                 study: Optional[str] = None) -> StudyLocation:
    """The study of a run folder (``runs/<study>/study.db``), or of ``storage`` (any Optuna
    URL, or ``journal:PATH``) and ``study``. A storage holding one study needs no name.

    Nothing is created: a folder or SQLite file that does not exist is an error, not a new
    empty study."""
    if (run_dir is None) == (storage is None):
        raise DashboardError("give a run folder (runs/<study>) or --storage URL, not both")
    folder = None
    if run_dir is not None:
        folder = Path(run_dir)
        if not folder.is_dir():
            raise DashboardError(f"run folder {str(folder)!r} does not exist; pass a folder made "
                                 "by `nas search` (runs/<study>) or --storage URL --study NAME")
        if not (folder / STUDY_DB).is_file():
            raise DashboardError(f"folder {str(folder)!r} holds no study ({STUDY_DB} is missing); "
                                 "pass a folder made by `nas search` (runs/<study>) or "
                                 "--storage URL --study NAME")
        storage = f"sqlite:///{(folder / STUDY_DB).resolve()}"
    assert storage is not None
    database = _sqlite_path(storage)
    if database is not None and not database.is_file():
        raise DashboardError(f"SQLite file {str(database)!r} does not exist; check the --storage URL "
                             "(sqlite:///relative/path or sqlite:////absolute/path)")
    journal = Path(storage[len("journal:"):]) if storage.startswith("journal:") else None
    if journal is not None and not journal.is_file():
        raise DashboardError(f"journal file {str(journal)!r} does not exist; check --storage")
    names = _study_names(storage)
    if study is None:
        preferred = folder.name if folder is not None else None
        if preferred in names:
            study = preferred
        elif len(names) == 1:
            study = names[0]
        elif not names:
            raise DashboardError(f"storage {mask_url(storage)} holds no study; run `nas search` first")
        else:
            raise DashboardError(f"storage {mask_url(storage)} holds {len(names)} studies; pick one "
                                 f"with --study ({', '.join(sorted(names))})")
    elif study not in names:
        raise DashboardError(f"storage {mask_url(storage)} has no study {study!r}; it has: "
                             f"{', '.join(sorted(names)) or 'none'}")
    if folder is None and database is not None and database.name == STUDY_DB:
        folder = database.parent  # a run folder reached through its URL: its artifacts too
    return StudyLocation(storage_url=storage, study_name=study, run_dir=folder)


def _study_names(url: str) -> list[str]:
    storage = open_storage(url, read_only=True)
    try:
        return list(optuna.get_all_study_names(storage=storage))
    except Exception as error:  # driver and schema errors have no common base
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        raise DashboardError(f"cannot read studies from {mask_url(url)}: {mask_url(reason)}") from None


def open_study(location: StudyLocation) -> optuna.Study:
    """Load the located study (read access; nothing is written)."""
    return optuna.load_study(study_name=location.study_name,
                             storage=open_storage(location.storage_url, read_only=True))


# -- the dashboard server ----------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connections must not keep Ctrl-C waiting

    def service_actions(self) -> None:
        # Called by serve_forever at every poll: Ctrl-C and SIGTERM stop it here.
        check_stop()


class _QuietHandler(WSGIRequestHandler):
    """Requests go to the debug log, not to stderr line by line."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
        log.debug("%s %s", self.address_string(), format % args)


def serve(location: StudyLocation, *, host: str = LOOPBACK, port: int = 0,
          on_ready: Optional[Callable[[str], None]] = None) -> None:
    """Serve optuna-dashboard for ``location`` on ``host:port`` (port 0: a free one) until
    Ctrl-C or SIGTERM. ``on_ready`` receives the URL of the study's page once the socket
    listens. Artifacts (genome JSON, diagrams) come from the run folder's store."""
    from optuna_dashboard import wsgi  # imported late: it pulls in a web framework

    # Screened genomes (most trials of a search with a cost window) are left out: the page
    # lists the evaluated trials, and `nas report` and trials.csv count the others.
    storage = hide_screened(open_storage(location.storage_url, read_only=True))
    index_trial_lookups()  # each trial's note and artifacts found by trial, not by a scan
    study_id = storage.get_study_id_from_name(location.study_name)
    artifacts = location.artifacts_dir
    app = wsgi(storage, artifact_store=FileSystemArtifactStore(artifacts) if artifacts else None)
    server_class = _Server
    if ":" in host:
        server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    try:
        server = make_server(host, port, app, server_class=server_class,
                             handler_class=_QuietHandler)
    except OSError as error:
        raise DashboardError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                             "pick another --port (or leave it out for a free one)") from None
    bound_port = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}/dashboard/studies/{study_id}"
    try:
        with handle_signals(graceful=True):
            if on_ready is not None:
                on_ready(url)
            server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
