"""Where a study lives and how it is opened.

A search keeps everything in one run folder, ``runs/<study>/`` (:class:`RunFolder`): the
Optuna storage ``study.db`` (unless ``--storage`` names another), the artifacts
optuna-dashboard shows, ``best.json``, ``trials.csv``, ``pareto.json``, ``report.html``.
The search opens its study for writing (:meth:`RunFolder.open_storage`); the readers
(``nas report``, ``nas dashboard``) find it with :func:`locate_study` and open it
read-only with :func:`open_study`: nothing is created or converted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.storages import BaseStorage

from space import NasError

from .common import check_writable_dir
from .storage import mask_url, open_storage, study_names

__all__ = ["RunFolder", "StudyLocation", "StudyNotFound", "locate_study", "open_study",
           "sqlite_url"]


class StudyNotFound(NasError):
    """A run folder, storage or study name that holds no study to read."""


def sqlite_url(path: Path) -> str:
    """The storage URL of an SQLite file (absolute, so workers elsewhere find it too)."""
    return f"sqlite:///{Path(path).resolve()}"


class _File:
    """A file of the run folder: read on the class, its name (``RunFolder.best_json`` is
    "best.json"); read on a folder, its path."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, folder: Optional["RunFolder"], owner: type) -> Any:
        return self.name if folder is None else folder.path / self.name


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder; ``storage_url`` is ``--storage`` when the study lives
    elsewhere, else the folder's own ``study.db``."""

    path: Path
    storage: Optional[str] = None

    study_db = _File("study.db")
    artifacts = _File("artifacts")  # optuna-dashboard's artifact store (a folder)
    best_json = _File("best.json")
    selection_json = _File("selection.json")  # why best.json was chosen (nas.selection)
    trials_csv = _File("trials.csv")
    pareto_json = _File("pareto.json")
    report_html = _File("report.html")
    latency_json = _File("latency.json")

    @property
    def storage_url(self) -> str:
        return self.storage or sqlite_url(self.study_db)

    def open_storage(self) -> BaseStorage:
        """The study's storage, opened for writing; the folder is created if missing.

        A storage the user names is opened before anything is created on disk, so a bad
        URL or password leaves no empty run folder behind."""
        storage = open_storage(self.storage_url) if self.storage else None
        check_writable_dir(self.path, "run folder")
        return storage or open_storage(self.storage_url)


@dataclass(frozen=True)
class StudyLocation:
    """Where a study lives: its storage URL, its name, and the run folder (artifacts,
    best.json, family.json) when it has one."""

    storage_url: str
    study_name: str
    run_dir: Optional[Path] = None

    @property
    def artifacts_dir(self) -> Optional[Path]:
        if self.run_dir is None or not RunFolder(self.run_dir).artifacts.is_dir():
            return None
        return RunFolder(self.run_dir).artifacts


def _sqlite_path(url: str) -> Optional[Path]:
    prefix = "sqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) else None


def _run_folder_url(run_dir: str | os.PathLike) -> tuple[Path, str]:
    folder = Path(run_dir)
    if not folder.is_dir():
        raise StudyNotFound(f"run folder {str(folder)!r} does not exist; pass a folder made "
                            "by `nas search` (runs/<study>) or --storage URL --study NAME")
    run = RunFolder(folder)
    if not run.study_db.is_file():
        raise StudyNotFound(f"folder {str(folder)!r} holds no study ({RunFolder.study_db} is "
                            "missing); pass a folder made by `nas search` (runs/<study>) or "
                            "--storage URL --study NAME")
    return folder, run.storage_url


def locate_study(*, run_dir: Optional[str | os.PathLike] = None, storage: Optional[str] = None,
                 study: Optional[str] = None) -> StudyLocation:
    """The study of a run folder (``runs/<study>/study.db``), or of ``storage`` (any Optuna
    URL, or ``journal:PATH``) and ``study``. A storage holding one study needs no name.

    Nothing is created: a folder or SQLite file that does not exist is an error, not a new
    empty study."""
    if (run_dir is None) == (storage is None):
        raise StudyNotFound("give a run folder (runs/<study>) or --storage URL, not both")
    folder = None
    if run_dir is not None:
        folder, storage = _run_folder_url(run_dir)
    assert storage is not None
    database = _sqlite_path(storage)
    if database is not None and not database.is_file():
        raise StudyNotFound(f"SQLite file {str(database)!r} does not exist; check the --storage "
                            "URL (sqlite:///relative/path or sqlite:////absolute/path)")
    journal = Path(storage[len("journal:"):]) if storage.startswith("journal:") else None
    if journal is not None and not journal.is_file():
        raise StudyNotFound(f"journal file {str(journal)!r} does not exist; check --storage")
    names = study_names(open_storage(storage, read_only=True), storage)
    if study is None:
        preferred = folder.name if folder is not None else None
        if preferred in names:
            study = preferred
        elif len(names) == 1:
            study = names[0]
        elif not names:
            raise StudyNotFound(f"storage {mask_url(storage)} holds no study; run `nas search` "
                                "first")
        else:
            raise StudyNotFound(f"storage {mask_url(storage)} holds {len(names)} studies; pick "
                                f"one with --study ({', '.join(sorted(names))})")
    elif study not in names:
        raise StudyNotFound(f"storage {mask_url(storage)} has no study {study!r}; it has: "
                            f"{', '.join(sorted(names)) or 'none'}")
    if folder is None and database is not None and database.name == RunFolder.study_db:
        folder = database.parent  # a run folder reached through its URL: its artifacts too
    return StudyLocation(storage_url=storage, study_name=study, run_dir=folder)


def open_study(location: StudyLocation) -> optuna.Study:
    """Load the located study (read access; nothing is written)."""
    return optuna.load_study(study_name=location.study_name,
                             storage=open_storage(location.storage_url, read_only=True))
