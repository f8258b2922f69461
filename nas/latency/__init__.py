"""Latency on this machine: timing (:mod:`.measure`), the per-machine table of unit
latencies (:mod:`.table`), the predictor and what a space can reach (:mod:`.predict`),
building and checking a table (:mod:`.build`), its use by the search and the scaler
(:mod:`.use`), and its figures in the report (:mod:`.figures`).

Names are loaded on first use: timing needs torch, and the report, which draws a
table's figures, must not wait for it.
"""

import importlib

_HOMES = {
    "build": ("BuildReport", "CheckResult", "CheckRow", "Network", "build_table",
              "check_networks", "check_predictor", "measure_networks", "measure_units",
              "open_table"),
    "measure": ("BACKENDS", "Timing", "TimingSettings", "fingerprint", "measure_latency",
                "time_modules"),
    "predict": ("Extreme", "Predictor", "space_units", "stage_variants"),
    "table": ("DEFAULT_TABLE_DIR", "LatencyTable", "Overhead", "TableError",
              "default_table_path"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_HOME_OF)


def __getattr__(name: str):
    if name not in _HOME_OF:
        raise AttributeError(f"module 'nas.latency' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)
