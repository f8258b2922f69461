"""The latency table: one file per machine, backend, thread count and batch size, holding
the measured latency of every unit (stem, MBConv block, head; :mod:`space.units`) that it
was asked to price, the whole networks its overhead was fitted on, and its fingerprint.

File (JSON, written atomically)::

    {"format": "nas-latency-table", "version": 1,
     "fingerprint": {"cpu", "cores", "torch", "backend", "backend_version", "gpu",
                     "threads", "batch_size"},
     "settings": {... TimingSettings ...},
     "entries": {"block-i24-o40-x144-k5-s2-se6-56px-silu": {"seconds": ..., "spread": ...}},
     "networks": [{"genome": {...}, "resolution", "num_classes", "in_channels",
                   "seconds", "spread"}],
     "build_seconds": total seconds spent measuring it}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from space import Genome, NasError, Unit, units

from ..common import atomic_write_json
from .measure import TimingSettings, fingerprint, machine_mismatch

__all__ = ["TableError", "LatencyTable", "Overhead", "default_table_path", "TABLE_FORMAT",
           "DEFAULT_TABLE_DIR"]

TABLE_FORMAT = "nas-latency-table"
TABLE_VERSION = 1
FINGERPRINT_FIELDS = ("cpu", "cores", "torch", "backend", "backend_version", "gpu", "threads",
                      "batch_size")
DEFAULT_TABLE_DIR = Path("runs") / "latency"


class TableError(NasError):
    """A latency table that is missing, unreadable, or not for this machine or network."""


@dataclass(frozen=True)
class Overhead:
    """``latency = scale x (sum of the units' entries) + offset``, fitted on whole networks.

    ``offset`` is the per-network overhead (one call instead of one per unit, the input
    copy); ``scale`` absorbs what timing a unit alone gets wrong for all of them alike
    (warm caches between calls of one small module).
    """

    scale: float = 1.0
    offset: float = 0.0
    networks: int = 0


def default_table_path(settings: TimingSettings, folder: Path = DEFAULT_TABLE_DIR) -> Path:
    """``runs/latency/torch-1a2b3c4d5e.json``: the table of this machine and settings, the
    one found when no table is named."""
    digest = hashlib.sha1(json.dumps(fingerprint(settings), sort_keys=True).encode())
    return Path(folder) / f"{settings.backend}-{digest.hexdigest()[:10]}.json"


def _fail(path: Path, why: str) -> TableError:
    return TableError(f"latency table {str(path)!r} {why}; rebuild it with `nas latency build "
                      f"--table {path}` (after removing it)")


class LatencyTable:
    """Entries by unit key, whole-network measurements, and the fitted overhead."""

    def __init__(self, path: Path, settings: TimingSettings, *,
                 recorded_fingerprint: Optional[dict] = None) -> None:
        self.path = Path(path)
        self.settings = settings
        self.fingerprint = recorded_fingerprint or fingerprint(settings)
        self.entries: dict[str, dict[str, float]] = {}
        self.networks: list[dict[str, Any]] = []
        self.build_seconds = 0.0
        self.overhead = Overhead()

    # -- files ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str, *, build_command: str = "nas latency build") -> "LatencyTable":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TableError(f"no latency table at {str(path)!r}; measure one on this machine "
                             f"with `{build_command}`") from None
        except IsADirectoryError:
            raise TableError(f"latency table {str(path)!r} is a folder; give the table's "
                             "JSON file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise _fail(path, f"cannot be read ({error})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise _fail(path, f"is not valid JSON (truncated or corrupt: {error})") from None
        except RecursionError:
            raise _fail(path, "is nested too deeply") from None
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise _fail(path, f"is not a latency table (no \"format\": \"{TABLE_FORMAT}\")")
        if data.get("version") != TABLE_VERSION:
            raise _fail(path, f"has version {data.get('version')!r}, expected {TABLE_VERSION}")
        try:
            known = {f.name for f in fields(TimingSettings)}
            raw_settings = data["settings"]
            if set(raw_settings) - known:
                raise ValueError(f"unknown setting {sorted(set(raw_settings) - known)[0]!r}")
            settings = TimingSettings(**raw_settings)
            table = cls(path, settings, recorded_fingerprint=dict(data["fingerprint"]))
            absent = [name for name in FINGERPRINT_FIELDS if name not in table.fingerprint]
            if absent:
                raise ValueError(f"the fingerprint lacks {absent[0]!r}")
            for key, entry in data["entries"].items():
                seconds, spread = float(entry["seconds"]), float(entry["spread"])
                if not (math.isfinite(seconds) and seconds > 0 and math.isfinite(spread)):
                    raise ValueError(f"entry {key!r} has {seconds!r} seconds")
                table.entries[str(key)] = {"seconds": seconds, "spread": spread}
            for network in data["networks"]:
                Genome.from_dict(network["genome"])
                if not float(network["seconds"]) > 0:
                    raise ValueError("a network with no positive latency")
                table.networks.append(dict(network))
            table.build_seconds = float(data.get("build_seconds", 0.0))
            table.refit()
        except (KeyError, TypeError, ValueError, AttributeError, NasError) as error:
            raise _fail(path, f"is malformed ({type(error).__name__}: {error})") from None
        return table

    def save(self) -> None:
        atomic_write_json(self.path, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "version": TABLE_VERSION,
                "fingerprint": self.fingerprint, "settings": self.settings.to_dict(),
                "entries": dict(sorted(self.entries.items())), "networks": self.networks,
                "overhead": {"scale": self.overhead.scale, "offset": self.overhead.offset,
                             "networks": self.overhead.networks},
                "build_seconds": round(self.build_seconds, 3)}

    def digest(self, keys: Iterable[str]) -> str:
        """Hash of what the predictions of units ``keys`` depend on (fingerprint, their
        entries, the overhead): two workers of one study must price its genomes alike.
        Entries added later for other units (a scaled member's) leave it unchanged."""
        body = {"fingerprint": self.fingerprint, "overhead": dataclasses.asdict(self.overhead),
                "entries": {key: self.entries[key]["seconds"] for key in sorted(set(keys))}}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    # -- machine -------------------------------------------------------------------------

    def mismatch(self) -> str:
        """'' when this table was measured on this machine, else the first difference."""
        return machine_mismatch(self.fingerprint, self.settings)

    def describe(self) -> str:
        f = self.fingerprint
        return (f"{f['backend']} {f['backend_version']}, {f['threads']} thread(s), batch "
                f"{f['batch_size']}, on {f['cpu']} ({f['cores']} cores)")

    # -- entries and the overhead --------------------------------------------------------

    def missing(self, wanted: Sequence[Unit]) -> list[Unit]:
        """The units of ``wanted`` without an entry, each once, in order."""
        seen: dict[str, Unit] = {}
        for unit in wanted:
            if unit.key not in self.entries and unit.key not in seen:
                seen[unit.key] = unit
        return list(seen.values())

    def unit_sum(self, genome_units: Sequence[Unit]) -> float:
        """Sum of the entries (KeyError names the first unit without one)."""
        return sum(self.entries[unit.key]["seconds"] for unit in genome_units)

    def network_units(self, network: dict[str, Any]) -> list[Unit]:
        return units(Genome.from_dict(network["genome"]), network["resolution"],
                     network["num_classes"], network["in_channels"])

    def refit(self) -> Overhead:
        """Fit :class:`Overhead` on the recorded whole networks whose units all have
        entries, minimising the squared *relative* error (a 1 ms miss matters more on a
        5 ms network than on a 50 ms one)."""
        sums, measured = [], []
        for network in self.networks:
            genome_units = self.network_units(network)
            if not self.missing(genome_units):
                sums.append(self.unit_sum(genome_units))
                measured.append(float(network["seconds"]))
        if not sums:
            self.overhead = Overhead()
        elif len(sums) == 1:
            self.overhead = Overhead(offset=measured[0] - sums[0], networks=1)
        else:
            x, y = np.asarray(sums), np.asarray(measured)
            design = np.stack([x / y, 1.0 / y], axis=1)
            (scale, offset), *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
            if scale > 0:
                self.overhead = Overhead(scale=float(scale), offset=float(offset),
                                         networks=len(sums))
            else:  # networks too alike to separate the two; keep the overhead alone
                self.overhead = Overhead(offset=float(np.mean(y - x)), networks=len(sums))
        return self.overhead

    def add_network(self, genome: Genome, resolution: int, num_classes: int,
                    in_channels: int, seconds: float, spread: float) -> None:
        self.networks.append({"genome": genome.to_dict(), "resolution": resolution,
                              "num_classes": num_classes, "in_channels": in_channels,
                              "seconds": seconds, "spread": round(spread, 4)})

    def has_network(self, genome: Genome, resolution: int, num_classes: int,
                    in_channels: int) -> bool:
        key = genome.key()
        return any(Genome.from_dict(n["genome"]).key() == key and n["resolution"] == resolution
                   and n["num_classes"] == num_classes and n["in_channels"] == in_channels
                   for n in self.networks)

