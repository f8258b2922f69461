"""Small helpers every command shares: units, genome arguments, atomic files, tables."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

from space import Genome, NasError, presets

from .outputs import make_folders, publish

__all__ = ["UsageError", "parse_count", "parse_seed", "MAX_SEED", "format_count", "load_genome",
           "atomic_write_text", "atomic_write_bytes", "atomic_write_json", "json_bytes",
           "format_table", "check_writable_dir", "die_with_parent"]


class UsageError(NasError):
    """A bad command-line value."""


_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
_COUNT = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGBT]?)\s*$",
                    re.IGNORECASE)


def parse_count(text: str, what: str = "value") -> int:
    """``400M`` -> 400_000_000; ``1.8G``, ``390000000`` and ``2.5e8`` also work."""
    match = _COUNT.match(str(text))
    if not match:
        raise UsageError(f"{what} {text!r} is not a number with an optional K/M/G suffix "
                         "(e.g. 400M, 1.8G, 390000000)")
    value = float(match.group(1)) * _SUFFIXES[match.group(2).upper()]
    if value <= 0:
        raise UsageError(f"{what} {text!r} must be positive")
    if value >= 1e18:  # also inf: float() turns 1e400 into it
        raise UsageError(f"{what} {text!r} is too large (at most 1e18)")
    return int(round(value))


# Seeds reach numpy's and Optuna's samplers, which take 32-bit seeds.
MAX_SEED = 2**32 - 1


def parse_seed(text: str) -> int:
    """An argparse ``type`` for ``--seed``: a whole number from 0 to :data:`MAX_SEED`
    (checked before any file is made; an integer of thousands of digits included)."""
    text = str(text).strip()
    if not (text.isdigit() and len(text) <= 10 and int(text) <= MAX_SEED):
        shown = text if len(text) <= 30 else f"{text[:20]}... ({len(text)} characters)"
        raise argparse.ArgumentTypeError(f"{shown!r} is not a whole number from 0 to "
                                         f"{MAX_SEED}")
    return int(text)


def format_count(value: float) -> str:
    """385814752 -> '385.8M', for people; files keep exact integers."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:g}"


def load_genome(spec: Union[str, os.PathLike]) -> Genome:
    """A preset name (``efficientnet-b0``) or a path to a genome JSON file."""
    text = str(spec)
    if text in presets.names():
        return presets.get(text)
    if not Path(text).exists() and not text.endswith(".json"):
        raise UsageError(f"genome {text!r} is neither a preset ({', '.join(presets.names())}) "
                         "nor an existing JSON file")
    return Genome.from_json(Path(text))


def check_writable_dir(path: Union[str, os.PathLike], what: str = "output folder") -> Path:
    """Create ``path`` if needed and fail early, with one line, if it cannot be written."""
    folder = Path(path)
    make_folders(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {str(folder)!r} is not writable")
    return folder


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> Path:
    """Write via a temporary file in the same folder and rename, so a kill at any moment
    leaves either the old file or the new one, never half of one; only a regular file (or
    nothing) is ever replaced (:func:`nas.outputs.publish`)."""
    return publish({path: data})[0]


def atomic_write_text(path: Union[str, os.PathLike], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_bytes(data: Any) -> bytes:
    """``data`` as every JSON file of a run is written: indented, ending in a newline."""
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def atomic_write_json(path: Union[str, os.PathLike], data: Any) -> Path:
    return atomic_write_bytes(path, json_bytes(data))


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_looks_numeric(row[i]) for row in cells[1:]) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if numeric[i] else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (summaries and notes that render as pages)."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    return bool(re.match(r"^[-+]?[0-9.,]+[A-Za-z%x]?$", text))


def die_with_parent() -> None:
    """Make this worker process die when the process that started it dies, even by
    SIGKILL, which gives the parent no chance to stop its workers: they would otherwise
    train on, unseen, beside the next run. Call it first thing in a worker (Linux only;
    elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import multiprocessing
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    # A parent killed while this worker was still starting died before the request above,
    # so no signal will come: this worker is already an orphan.
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)
