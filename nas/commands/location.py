"""The options of the commands that read a study (``nas report``, ``nas dashboard``): a run
folder, or ``--storage`` and ``--study``."""

from __future__ import annotations

import argparse

from ..common import UsageError
from ..run import StudyLocation, locate_study

__all__ = ["add_location_arguments", "locate"]


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                        help="a run folder made by `nas search` (runs/<study>)")
    parser.add_argument("--storage", metavar="URL", help="an Optuna storage URL (sqlite:///..., "
                        "postgresql://...) or journal:PATH, instead of a run folder")
    parser.add_argument("--study", metavar="NAME", help="study name (needed when the storage "
                        "holds several)")


def locate(args: argparse.Namespace, command: str) -> StudyLocation:
    """The study the options name (nothing is created or written)."""
    if args.run_dir is None and args.storage is None:
        raise UsageError(f"give a run folder (nas {command} runs/<study>) or --storage URL")
    return locate_study(run_dir=args.run_dir, storage=args.storage, study=args.study)
