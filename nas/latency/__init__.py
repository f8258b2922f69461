"""Latency on this machine: timing (:mod:`.measure`), the per-machine table of unit
latencies (:mod:`.table`), the predictor and what a space can reach (:mod:`.predict`),
building and checking a table (:mod:`.build`), and its use by the search and the scaler
(:mod:`.use`)."""

from .build import (BuildReport, CheckResult, CheckRow, Network, build_table, check_networks,
                    check_predictor, measure_networks, measure_units, open_table)
from .measure import BACKENDS, Timing, TimingSettings, fingerprint, measure_latency, time_modules
from .predict import Extreme, Predictor, space_units, stage_variants
from .table import DEFAULT_TABLE_DIR, LatencyTable, Overhead, TableError, default_table_path

__all__ = ["BACKENDS", "Timing", "TimingSettings", "fingerprint", "measure_latency",
           "time_modules", "LatencyTable", "Overhead", "TableError", "default_table_path",
           "DEFAULT_TABLE_DIR", "Predictor", "Extreme", "space_units", "stage_variants",
           "build_table", "BuildReport", "open_table", "measure_units", "measure_networks",
           "check_predictor", "check_networks", "CheckResult", "CheckRow", "Network"]
