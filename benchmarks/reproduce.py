"""Reproduce the EfficientNet and fast-scaling claims on Fashion-MNIST (issue 8).

Parts (numbered as in the issue; part 1, the search, is the lead's default search, whose
``best.json`` this script reads as the "searched" baseline):

2. Scaling curves (EfficientNet, Tan & Le 2019, Figures 3 and 8): from the searched
   baseline and from EfficientNet-B0, members at multiply-add multipliers of about 2, 4
   and 8 (phi 1..3) by compound scaling (alpha 1.2, beta 1.1, gamma 1.15), by width
   alone, by depth alone and by resolution alone; accuracy against multiply-adds.
3. Fast against uniform compound scaling (Dollar, Singh & Girshick 2021): from
   EfficientNet-B0, fast scaling (a = 0.8) against uniform scaling (a = 1/3) at the same
   multipliers: accuracy, activations, training images/second and batch-1 inference
   latency measured on this machine (interleaved rounds, median).
4. Searched against hand-designed: the compound family of the searched baseline against
   EfficientNet-B0's (the part-2 compound members, reused).

One fixed protocol trains every member so that numbers compare: the same seeded subset
of the Fashion-MNIST training set, the same epochs, batch and optimizer (nas.train.fit's
defaults: AdamW, one-cycle, label smoothing 0.1), at 32 px times the member's resolution
multiplier; accuracy on a fixed seeded subset of the Fashion-MNIST test set.

Resumable: every member writes ``members/seed<k>/<base>/<member>/metrics.json``
(atomically) when it finishes and is skipped when that file exists, so a killed run
continues where it stopped. A folder started with another protocol or another baseline
genome is refused rather than mixed.

Writes into ``--out`` (default runs/reference): protocol.json, baseline/ (the searched
genome and the search's best.json, trials.csv, report.html), families/<base>/<method>/
(``nas scale`` output: b0..b3.json, family.json/.csv/.png/.html), members/ (metrics),
speed.json (part 3), results.json, results.csv, summary.md and part1.png, part2_*.png, part3.png,
part4.png, latency.png. Usage:

    python3 benchmarks/reproduce.py [--out runs/reference] [--seeds 0 1] [--parts 2 3 4]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if __name__ == "__main__":
    # Members train at up to 90 px, where glibc's page faults cost most (nas.allocator).
    from nas.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from nas.common import (UsageError, atomic_write_bytes, atomic_write_json,  # noqa: E402
                        atomic_write_text, die_with_parent, markdown_table)
from nas.data import Split, load_dataset, proxy_resolution, take_subset  # noqa: E402
from nas.family import CostContext, family_files, family_table, grow  # noqa: E402
from nas.full_train import train_genome  # noqa: E402
from nas.latency import measure_latency  # noqa: E402
from nas.outputs import publish  # noqa: E402
from nas.train import TrainConfig, TrainingDiverged  # noqa: E402
from scaling import family, resolve_coefficients  # noqa: E402
from space import Genome, NasError, cost, presets  # noqa: E402

log = logging.getLogger(__name__)

B0 = "efficientnet-b0"
SEARCHED = "searched"
BASES = (SEARCHED, B0)
# The lead's default search (`nas search` on Fashion-MNIST at 400M multiply-adds).
DEFAULT_BASELINE = Path("runs/fashion-mnist-400M-proxy-train/best.json")
PART2_METHODS = ("compound", "width", "depth", "resolution")
FAST_A = 0.8  # Dollar et al. 2021's "dWr"
UNIFORM_A = 1 / 3  # Dollar et al. 2021's "dwr": uniform compound scaling
# Families in training priority: when time runs short, the compound families (parts 2
# and 4) and the fast/uniform pair (part 3) are the ones finished first at every phi.
FAMILY_ORDER = ("compound", "fast-a0.8", "fast-a0.333", "width", "resolution", "depth")


class ReproduceError(NasError):
    """A reproduction request that cannot be honoured (mixed protocols, missing baseline)."""


@dataclass(frozen=True)
class Protocol:
    """What every member is trained and measured with; stored in protocol.json.

    ``subset`` training images (seeded by ``data_seed`` from the 60,000), ``epochs``,
    ``batch_size`` (nas.train.fit's defaults otherwise: AdamW, one-cycle, label smoothing
    0.1, zero-initialised classifier, precise batch-norm statistics before testing, no
    augmentation), accuracy on ``test_size`` seeded
    test images (all 10,000 when None), input ``resolution`` x the member's resolution
    multiplier, ``threads`` torch threads. Defaults: what fits the issue's CPU budget."""

    subset: int = 4096
    epochs: int = 1
    batch_size: int = 32
    test_size: Optional[int] = 2000
    resolution: int = 32
    data_seed: int = 0
    max_phi: int = 3
    threads: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Job:
    """One member to train: ``member_id`` names its folder (``<base>/<family>-b<phi>``,
    or ``<base>/b0`` for the base genome, which every family of that base shares)."""

    base: str
    family: str
    phi: int
    genome: Genome
    deploy_flops: int
    parts: tuple[int, ...]

    @property
    def member_id(self) -> str:
        return f"{self.base}/b0" if self.phi == 0 else f"{self.base}/{self.family}-b{self.phi}"


def family_specs(parts: Sequence[int], bases: Sequence[str],
                 methods: Optional[Sequence[str]]) -> list[tuple[str, str, str, Optional[float], tuple[int, ...]]]:
    """(base, family label, scaling method, fast alpha, parts) for every family needed."""
    specs: dict[tuple[str, str], tuple[str, Optional[float], set[int]]] = {}

    def add(base: str, label: str, method: str, alpha: Optional[float], part: int) -> None:
        if base not in bases or (methods is not None and label not in methods):
            return
        specs.setdefault((base, label), (method, alpha, set()))[2].add(part)

    for base in BASES:
        if 2 in parts:
            for method in PART2_METHODS:
                add(base, method, method, None, 2)
        if 4 in parts:
            add(base, "compound", "compound", None, 4)
    if 3 in parts:
        add(B0, "fast-a0.8", "fast", FAST_A, 3)
        add(B0, "fast-a0.333", "fast", UNIFORM_A, 3)
    return [(base, label, method, alpha, tuple(sorted(found)))
            for (base, label), (method, alpha, found) in specs.items()]


def plan(base_genomes: dict[str, Genome], specs, protocol: Protocol,
         num_classes: int, in_channels: int) -> list[Job]:
    """Every member to train once per seed, phi-0 shared, ordered by phi then family."""
    jobs: dict[str, Job] = {}
    for base, label, method, alpha, parts in specs:
        if base not in base_genomes:
            continue
        coefficients = {"alpha": alpha} if alpha is not None else {}
        for member in family(base_genomes[base], range(protocol.max_phi + 1), method,
                             num_classes=num_classes, in_channels=in_channels, **coefficients):
            job = Job(base=base, family=label, phi=int(member.phi), genome=member.genome,
                      deploy_flops=member.cost.flops, parts=parts)
            previous = jobs.get(job.member_id)
            if previous is not None:
                job = dataclasses.replace(previous, parts=tuple(sorted(set(previous.parts) | set(parts))))
            jobs[job.member_id] = job
    return sorted(jobs.values(), key=lambda j: (j.phi, FAMILY_ORDER.index(j.family)
                                                if j.family in FAMILY_ORDER else 99, j.base))


# -- baseline and family files -----------------------------------------------------------------


def find_baseline(explicit: Optional[str]) -> Optional[Path]:
    """``--baseline``, else the default search's best.json, else the newest runs/*/best.json."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ReproduceError(f"--baseline {explicit!r} does not exist; give a genome JSON "
                                 "(runs/<study>/best.json) or --bases efficientnet-b0")
        return path
    default = ROOT / DEFAULT_BASELINE
    if default.is_file():
        return default
    candidates = sorted((ROOT / "runs").glob("*/best.json"), key=lambda p: p.stat().st_mtime)
    candidates = [p for p in candidates if "reference" not in p.parts]
    if candidates:
        log.warning("%s not found; using the newest search result %s", DEFAULT_BASELINE,
                    candidates[-1])
        return candidates[-1]
    return None


def copy_search_run(best: Path, out: Path) -> Path:
    """Keep the search's small outputs beside the reference run; returns the genome copy."""
    from nas.run import RunFolder

    folder = out / "baseline"
    for name in (RunFolder.best_json, RunFolder.trials_csv, RunFolder.report_html,
                 RunFolder.pareto_json, RunFolder.study_db):
        source = best.parent / name
        if source.is_file() and source.stat().st_size < 8_000_000:
            atomic_write_bytes(folder / name, source.read_bytes())
    atomic_write_text(folder / "source.txt", f"{best.resolve()}\n")
    return RunFolder(folder).best_json


def write_family_files(genome: Genome, genome_spec: str, method: str, alpha: Optional[float],
                       max_phi: int, folder: Path, num_classes: int, in_channels: int) -> None:
    """The files ``nas scale`` writes for this family (nas.family), and in family.txt
    the command line that writes the same ones with the table it prints."""
    if (folder / "family.json").is_file():
        return
    coefficients = resolve_coefficients(method, alpha=alpha)
    grown = grow(genome, range(max_phi + 1), method, coefficients,
                 CostContext(num_classes=num_classes, in_channels=in_channels, source="given"))
    argv = ["scale", "--genome", genome_spec, "--phi", f"0..{max_phi}", "--method", method,
            "--num-classes", str(num_classes), "--in-channels", str(in_channels),
            "--out", str(folder)] + (["--alpha", repr(alpha)] if alpha is not None else [])
    files = family_files(grown)
    files["family.txt"] = ("$ nas " + " ".join(argv) + "\n" + family_table(grown) + "\n").encode()
    publish({folder / name: data for name, data in files.items()})


# -- training and measuring ----------------------------------------------------------------------


def member_folder(out: Path, seed: int, job: Job) -> Path:
    return out / "members" / f"seed{seed}" / job.member_id


def train_member(job: Job, *, seed: int, protocol: Protocol, train: Split, test: Split,
                 data, quiet: bool) -> dict[str, Any]:
    """Train one member with the protocol; returns its metrics (accuracy in [0, 1])."""
    resolution = proxy_resolution(protocol.resolution, job.genome.resolution_multiplier)
    trained_cost = cost(job.genome, resolution=resolution, num_classes=data.num_classes,
                        in_channels=data.in_channels)
    config = TrainConfig(epochs=protocol.epochs, batch_size=protocol.batch_size,
                         resolution=resolution, seed=seed)
    record: dict[str, Any] = {
        "member": job.member_id, "name": job.genome.name, "base": job.base,
        "family": job.family, "phi": job.phi, "parts": list(job.parts), "seed": seed,
        "resolution": resolution, "flops": trained_cost.flops, "params": trained_cost.params,
        "activations": trained_cost.activations, "deploy_resolution": job.genome.resolution,
        "deploy_flops": job.deploy_flops, "genome_key": job.genome.key(),
        "genome": job.genome.to_dict(), "protocol": protocol.to_dict(),
        "train_config": config.to_dict()}
    started = time.perf_counter()
    try:
        _, result = train_genome(job.genome, data=data, train=train, scored_on=test,
                                 config=config, device=torch.device("cpu"), quiet=quiet,
                                 description=job.member_id, eval_key="test_accuracy")
    except TrainingDiverged as error:
        return {**record, "test_accuracy": None, "failed": str(error),
                "seconds": round(time.perf_counter() - started, 2)}
    latency = measure_latency(job.genome, resolution=resolution, num_classes=data.num_classes,
                              in_channels=data.in_channels, batch_size=1, repeats=10, warmup=2)
    return {**record, "test_accuracy": result.val_accuracy, "test_images": len(test),
            "train_images_per_second": round(result.images_per_second, 1),
            "latency_b1_ms": round(1e3 * latency, 3), "history": result.history,
            "train_seconds": round(sum(h["train_seconds"] for h in result.history), 2),
            "seconds": round(time.perf_counter() - started, 2)}


def measure_speed(jobs: Sequence[Job], *, train: Split, data, protocol: Protocol,
                  rounds: int) -> dict[str, Any]:
    """Part 3's runtimes, interleaved over ``rounds`` so that a change in the machine's
    load hits every member alike: batch-1 inference latency (median of 10 forward passes,
    nas.latency) and training images/second (nas.train.fit over 2 batches, second epoch,
    so allocation is not timed). Medians over rounds."""
    samples: dict[str, dict[str, list[float]]] = {j.member_id: {"latency": [], "train": []}
                                                  for j in jobs}
    probe = take_subset(train, 2 * protocol.batch_size, protocol.data_seed)
    empty = Split(images=probe.images[:0], labels=probe.labels[:0])
    progress = tqdm(total=rounds * len(jobs), desc="part 3 speed", unit="member",
                    dynamic_ncols=True)
    for _ in range(rounds):
        for job in jobs:
            resolution = proxy_resolution(protocol.resolution, job.genome.resolution_multiplier)
            latency = measure_latency(job.genome, resolution=resolution,
                                      num_classes=data.num_classes,
                                      in_channels=data.in_channels, batch_size=1, repeats=10,
                                      warmup=2)
            _, result = train_genome(job.genome, data=data, train=probe, scored_on=empty,
                                     config=TrainConfig(epochs=2, batch_size=protocol.batch_size,
                                                        resolution=resolution),
                                     device=torch.device("cpu"))
            samples[job.member_id]["latency"].append(1e3 * latency)
            samples[job.member_id]["train"].append(result.history[-1]["images_per_second"])
            progress.update(1)
            progress.set_postfix(member=job.member_id, ms=f"{1e3 * latency:.1f}")
    progress.close()
    return {"rounds": rounds, "threads": torch.get_num_threads(), "members": {
        member: {"latency_b1_ms": round(statistics.median(values["latency"]), 3),
                 "latency_b1_ms_samples": [round(v, 3) for v in values["latency"]],
                 "train_images_per_second": round(statistics.median(values["train"]), 1),
                 "train_images_per_second_samples": values["train"]}
        for member, values in samples.items()}}


# -- results, tables and plots ---------------------------------------------------------------------


def collect(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((out / "members").glob("seed*/*/*/metrics.json")):
        rows.append(json.loads(path.read_text()))
    return rows


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per member: accuracy mean over seeds, spread (max - min), seeds, costs, runtimes."""
    by_member: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("test_accuracy") is not None:
            by_member.setdefault(row["member"], []).append(row)
    result = {}
    for member, runs in by_member.items():
        accuracies = [r["test_accuracy"] for r in runs]
        first = runs[0]
        result[member] = {
            "member": member, "base": first["base"], "family": first["family"],
            "phi": first["phi"], "resolution": first["resolution"], "flops": first["flops"],
            "params": first["params"], "activations": first["activations"],
            "deploy_flops": first["deploy_flops"], "seeds": sorted(r["seed"] for r in runs),
            "accuracy": float(np.mean(accuracies)), "accuracies": accuracies,
            "test_images": first.get("test_images", 0),
            "spread": float(max(accuracies) - min(accuracies)),
            "train_images_per_second": float(np.median([r["train_images_per_second"] for r in runs])),
            "latency_b1_ms": float(np.median([r["latency_b1_ms"] for r in runs])),
            "seconds": float(sum(r["seconds"] for r in runs))}
    return result


def family_rows(members: dict[str, dict[str, Any]], base: str, label: str) -> list[dict[str, Any]]:
    """The members of one family, phi 0 (the shared base) first."""
    rows = [m for m in members.values() if m["base"] == base
            and (m["phi"] == 0 or m["family"] == label)]
    return sorted(rows, key=lambda m: m["phi"])


def _percent(row: dict[str, Any]) -> str:
    text = f"{100 * row['accuracy']:.2f}"
    if len(row["seeds"]) > 1:
        text += f" ± {50 * row['spread']:.2f} (n={len(row['seeds'])})"
    return text


def _number(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _millions(value: float) -> str:
    return f"{value / 1e6:.1f}M"


def standard_error(row: dict[str, Any]) -> float:
    """Standard error of a member's mean test accuracy: the binomial sampling error of its
    test images plus, with two or more seeds, the seed-to-seed variance of the mean."""
    p, n = row["accuracy"], max(row["test_images"], 1)
    variance = p * (1 - p) / n
    if len(row["accuracies"]) > 1:
        variance += float(np.var(row["accuracies"], ddof=1)) / len(row["accuracies"])
    return math.sqrt(variance)


def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
    """+1 if ``a`` is more accurate than ``b`` beyond two standard errors of the
    difference, -1 if less, 0 within noise."""
    gap = a["accuracy"] - b["accuracy"]
    noise = 2 * math.hypot(standard_error(a), standard_error(b))
    return 0 if abs(gap) <= noise else (1 if gap > 0 else -1)


def _verdict(outcomes: Sequence[int]) -> str:
    if not outcomes:
        return "not measured"
    if any(o < 0 for o in outcomes):
        return "not reproduced"
    return "reproduced" if all(o > 0 for o in outcomes) else "within noise"


def _points(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The accuracy gap in points, and the multiply-adds (as trained) it came at: scaling
    rounds layers up per stage, so the same phi can cost different amounts."""
    return (f"{100 * (a['accuracy'] - b['accuracy']):+.2f} at "
            f"{a['flops'] / b['flops']:.2f}x the multiply-adds")


def claims(members: dict[str, dict[str, Any]], speed: Optional[dict[str, Any]],
           bases: dict[str, str]) -> list[dict[str, str]]:
    """A verdict for each paper claim from the members there are: "reproduced" when every
    comparison favours the claim beyond two standard errors, "not reproduced" when any
    goes against it beyond them, "within noise" otherwise. Members are compared at the
    same phi, i.e. the same multiply-add multiplier at the deployed resolution."""
    found, top_phi = [], max((m["phi"] for m in members.values()), default=0)
    for base in BASES:
        outcomes, evidence = [], []
        for phi in range(1, 1 + top_phi):
            compound = members.get(f"{base}/compound-b{phi}")
            for method in PART2_METHODS[1:]:
                single = members.get(f"{base}/{method}-b{phi}")
                if compound and single:
                    outcomes.append(compare(compound, single))
                    evidence.append(f"b{phi} vs {method} {_points(compound, single)}")
        found.append({"part": "2", "claim": f"{bases.get(base, base)}: compound scaling is "
                      "more accurate than width, depth or resolution alone at the same "
                      "multiplier (EfficientNet, Fig. 3 and 8)",
                      "evidence": "; ".join(evidence) or "-", "verdict": _verdict(outcomes)})
    measured = (speed or {}).get("members", {})
    accuracy, activations, runtime, evidence = [], [], [], []
    for phi in range(1, 1 + top_phi):
        fast, uniform = (members.get(f"{B0}/fast-a0.8-b{phi}"),
                         members.get(f"{B0}/fast-a0.333-b{phi}"))
        if not (fast and uniform):
            continue
        # The claim is "as accurate": fast passes unless it is worse beyond noise.
        accuracy.append(1 if compare(fast, uniform) >= 0 else -1)
        activations.append(1 if fast["activations"] < uniform["activations"] else -1)
        text = (f"b{phi}: accuracy {_points(fast, uniform)}, activations "
                f"{fast['activations'] / uniform['activations']:.2f}x")
        if fast["member"] in measured and uniform["member"] in measured:
            quick, slow = measured[fast["member"]], measured[uniform["member"]]
            latency_ratio = quick["latency_b1_ms"] / slow["latency_b1_ms"]
            training_ratio = quick["train_images_per_second"] / slow["train_images_per_second"]
            runtime.append(1 if latency_ratio < 1 and training_ratio > 1 else -1)
            text += (f", latency {latency_ratio:.2f}x, training speed {training_ratio:.2f}x")
        evidence.append(text)
    fast_verdicts = {"accuracy": _verdict(accuracy), "activations": _verdict(activations),
                     "runtime (latency and training)": _verdict(runtime)}
    found.append({"part": "3", "claim": "fast scaling (a = 0.8) is as accurate as uniform "
                  "compound scaling (a = 1/3), with fewer activations and faster on this "
                  "machine (Dollar et al. 2021)", "evidence": "; ".join(evidence) or "-",
                  "verdict": ", ".join(f"{k}: {v}" for k, v in fast_verdicts.items())})
    outcomes, evidence = [], []
    for phi in range(0, 1 + top_phi):
        name = "b0" if phi == 0 else f"compound-b{phi}"
        searched, reference = members.get(f"{SEARCHED}/{name}"), members.get(f"{B0}/{name}")
        if searched and reference:
            outcomes.append(compare(searched, reference))
            evidence.append(f"b{phi} {_points(searched, reference)}")
    found.append({"part": "4", "claim": "the searched baseline's compound family is more "
                  "accurate than EfficientNet-B0's at the same multiplier",
                  "evidence": "; ".join(evidence) or "-", "verdict": _verdict(outcomes)})
    return found


def search_record(out: Path) -> Optional[dict[str, Any]]:
    """Part 1 from the copied study (baseline/study.db): its target, wall time and every
    trial's state, cost and proxy accuracy; None without a copied study."""
    import optuna

    from nas.run import RunFolder, locate_study, open_study
    from nas.trial import TrialRecord

    folder = RunFolder(out / "baseline")
    if not folder.study_db.is_file():
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(locate_study(run_dir=folder.path))
    trials = []
    for trial in study.trials:
        attrs, kind = trial.user_attrs, TrialRecord(trial).state
        # "state" is Optuna's, as in trials.csv; "kind" the trial's state in nas.trial.
        trials.append({"number": trial.number, "state": trial.state.name, "kind": kind,
                       "trained": bool(trial.intermediate_values) or trial.value is not None,
                       "prescreened": kind == "prescreened",
                       "flops": attrs.get("flops"), "params": attrs.get("params"),
                       "accuracy": attrs.get("accuracy", max(
                           trial.intermediate_values.values(), default=None)),
                       # Optuna stores a pruned trial's last intermediate value as its
                       # value; that is an accuracy, not a reward.
                       "reward": trial.value if trial.state.name == "COMPLETE" else None,
                       "seconds": (trial.duration.total_seconds() if trial.duration else None)})
    starts = [t.datetime_start for t in study.trials if t.datetime_start]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
    return {"study": study.study_name, "target_flops": study.user_attrs.get("target"),
            "evaluator": study.user_attrs.get("evaluator"),
            "prescreen": study.user_attrs.get("prescreen", "none"),
            "wall_seconds": (max(ends) - min(starts)).total_seconds() if ends else None,
            "trials": trials}


def search_markdown(search: dict[str, Any]) -> str:
    trained = [t for t in search["trials"] if t["trained"]]
    best = max((t for t in trained if t["reward"] is not None), key=lambda t: t["reward"],
               default=None)
    table = [[t["number"] if t is not best else f"**{t['number']}** (best)", t["state"],
              _millions(t["flops"]), _millions(t["params"]),
              _number(None if t["accuracy"] is None else 100 * t["accuracy"], ".2f"),
              _number(t["reward"], ".4f"), _number(t["seconds"], ".0f")] for t in trained]
    minutes = (search["wall_seconds"] or 0) / 60
    prescreened = sum(t.get("prescreened", False) for t in search["trials"])
    how = (f" ({prescreened} by their {search.get('prescreen')} score, the rest by their "
           "multiply-adds)" if prescreened else " by their multiply-adds")
    return (f"### Part 1: the search ({search['study']})\n\n"
            f"{len(search['trials'])} trials in {minutes:.1f} minutes, target "
            f"{_millions(search['target_flops'])} multiply-adds at 224 px, evaluator "
            f"{search['evaluator']}; {len(search['trials']) - len(trained)} of them were "
            f"screened out{how} before training. The trained ones:\n\n"
            + markdown_table(["trial", "state", "multiply-adds", "params",
                              "proxy val acc %", "reward", "seconds"], table) + "\n")


def summary_markdown(members: dict[str, dict[str, Any]], speed: Optional[dict[str, Any]],
                     bases: dict[str, str], search: Optional[dict[str, Any]] = None) -> str:
    """Tables of all parts (accuracy in %, mean ± half the max-min spread over seeds)."""
    parts = [search_markdown(search)] if search else []
    headers = ["family", "phi", "px", "multiply-adds", "x b0", "params", "activations",
               "test acc %", "train img/s", "latency b1 ms"]
    for base in BASES:
        if not any(m["base"] == base for m in members.values()):
            continue
        parts.append(f"### Part 2: {bases.get(base, base)} scaled by one method at a time\n")
        table = []
        for label in PART2_METHODS:
            for row in family_rows(members, base, label):
                reference = members.get(f"{base}/b0")
                ratio = row["flops"] / reference["flops"] if reference else math.nan
                table.append([label, row["phi"], row["resolution"], _millions(row["flops"]),
                              f"{ratio:.2f}", _millions(row["params"]),
                              _millions(row["activations"]), _percent(row),
                              f"{row['train_images_per_second']:.0f}",
                              f"{row['latency_b1_ms']:.1f}"])
        parts.append(markdown_table(headers, table) + "\n")
    fast = [row for label in ("fast-a0.8", "fast-a0.333") for row in family_rows(members, B0, label)
            if row["family"] == label or row["phi"] == 0]
    if any(row["phi"] > 0 for row in fast):
        parts.append("### Part 3: fast (a = 0.8) against uniform (a = 1/3) scaling of "
                     "EfficientNet-B0\n")
        table = []
        for label in ("fast-a0.8", "fast-a0.333"):
            for row in family_rows(members, B0, label):
                measured = (speed or {}).get("members", {}).get(row["member"], {})
                table.append([label, row["phi"], row["resolution"], _millions(row["flops"]),
                              _millions(row["activations"]), _percent(row),
                              _number(measured.get("train_images_per_second"), ".0f"),
                              _number(measured.get("latency_b1_ms"), ".1f"),
                              f"{row['train_images_per_second']:.0f}"])
        parts.append(markdown_table(["family", "phi", "px", "multiply-adds", "activations",
                                     "test acc %", "train img/s (interleaved)",
                                     "latency b1 ms (interleaved)", "train img/s (during run)"],
                                    table) + "\n")
    compound = [row for base in BASES for row in family_rows(members, base, "compound")]
    if {row["base"] for row in compound} == set(BASES):
        parts.append("### Part 4: compound families, searched against EfficientNet-B0\n")
        table = [[bases.get(row["base"], row["base"]), row["phi"], row["resolution"],
                  _millions(row["flops"]), _millions(row["params"]), _percent(row)]
                 for row in compound]
        parts.append(markdown_table(["base", "phi", "px", "multiply-adds", "params",
                                     "test acc %"], table) + "\n")
    parts.append("### Claims\n")
    parts.append(markdown_table(["part", "claim", "evidence (accuracy in points)", "verdict"],
                                [[c["part"], c["claim"], c["evidence"], c["verdict"]]
                                 for c in claims(members, speed, bases)]) + "\n")
    return "\n".join(parts)


_STYLE = {"compound": ("tab:red", "o"), "width": ("tab:blue", "s"), "depth": ("tab:green", "^"),
          "resolution": ("tab:purple", "D"), "fast-a0.8": ("tab:orange", "o"),
          "fast-a0.333": ("tab:gray", "s"), SEARCHED: ("tab:red", "o"), B0: ("tab:blue", "s")}


def _curve(axis, rows: Sequence[dict[str, Any]], x_key: str, label: str, style_key: str) -> None:
    color, marker = _STYLE[style_key]
    xs = [row[x_key] for row in rows]
    ys = [100 * row["accuracy"] for row in rows]
    spread = [[100 * (row["accuracy"] - min(row["accuracies"])) for row in rows],
              [100 * (max(row["accuracies"]) - row["accuracy"]) for row in rows]]
    axis.errorbar(xs, ys, yerr=spread, color=color, marker=marker, capsize=3, label=label)


def _save(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def write_plots(out: Path, members: dict[str, dict[str, Any]], speed: Optional[dict[str, Any]],
                bases: dict[str, str], protocol: Protocol,
                search: Optional[dict[str, Any]] = None) -> list[str]:
    """part1.png, part2_<base>.png, part3.png, part4.png, latency.png; returns the names
    written."""
    from matplotlib.figure import Figure

    caption = (f"Fashion-MNIST, {protocol.subset} training images x {protocol.epochs} epoch(s), "
               f"{protocol.resolution} px x resolution multiplier; error bars: min-max over seeds")
    written = []
    if search:
        figure = Figure(figsize=(7.5, 4.5), layout="constrained")
        axis = figure.subplots()
        trained = [t for t in search["trials"] if t["trained"] and t["accuracy"] is not None]
        screened = [t for t in search["trials"] if not t["trained"] and t["flops"]]
        axis.scatter([t["flops"] for t in trained], [100 * t["accuracy"] for t in trained],
                     color="tab:red", label="trained (proxy validation accuracy)")
        for trial in trained:
            axis.annotate(str(trial["number"]), (trial["flops"], 100 * trial["accuracy"]),
                          textcoords="offset points", xytext=(4, 4), fontsize=8)
        bottom = min((100 * t["accuracy"] for t in trained), default=0) - 2
        axis.scatter([t["flops"] for t in screened], [bottom] * len(screened), marker="|",
                     s=200, color="gray", label="screened out by multiply-adds")
        if search["target_flops"]:
            axis.axvline(search["target_flops"], color="black", linestyle=":", label="target")
        _finish_axis(axis, "multiply-adds at 224 px", "proxy validation accuracy (%)")
        axis.set_xscale("linear")
        figure.suptitle(f"Part 1: the search ({search['study']}), every trial")
        _save(figure, out / "part1.png")
        written.append("part1.png")
    for base in BASES:
        if not any(m["base"] == base and m["phi"] > 0 for m in members.values()):
            continue
        figure = Figure(figsize=(7.5, 5), layout="constrained")
        axis = figure.subplots()
        for label in PART2_METHODS:
            rows = family_rows(members, base, label)
            if len(rows) > 1:
                _curve(axis, rows, "flops", label, label)
        _finish_axis(axis, "multiply-adds per image (as trained)", "test accuracy (%)")
        figure.suptitle(f"Part 2: scaling {bases.get(base, base)} by one dimension or all three")
        figure.supxlabel(caption, fontsize=8)
        _save(figure, out / f"part2_{base}.png")
        written.append(f"part2_{base}.png")
    fast_rows = {label: family_rows(members, B0, label) for label in ("fast-a0.8", "fast-a0.333")}
    if any(len(rows) > 1 for rows in fast_rows.values()):
        figure = Figure(figsize=(15, 4.5), layout="constrained")
        accuracy_axis, activation_axis, speed_axis = figure.subplots(1, 3)
        measured = (speed or {}).get("members", {})
        for label, rows in fast_rows.items():
            name = "fast a=0.8" if label == "fast-a0.8" else "uniform a=1/3"
            _curve(accuracy_axis, rows, "flops", name, label)
            color, marker = _STYLE[label]
            activation_axis.plot([r["flops"] for r in rows], [r["activations"] for r in rows],
                                 color=color, marker=marker, label=name)
            timed = [r for r in rows if r["member"] in measured]
            speed_axis.plot([r["flops"] for r in timed],
                            [measured[r["member"]]["latency_b1_ms"] for r in timed],
                            color=color, marker=marker, label=f"{name}: latency b1 (ms)")
            speed_axis.plot([r["flops"] for r in timed],
                            [1e3 / measured[r["member"]]["train_images_per_second"] for r in timed],
                            color=color, marker=marker, linestyle="--",
                            label=f"{name}: training ms per image")
        _finish_axis(accuracy_axis, "multiply-adds per image", "test accuracy (%)")
        _finish_axis(activation_axis, "multiply-adds per image", "activations per image")
        activation_axis.set_yscale("log")
        if any(r["member"] in measured for rows in fast_rows.values() for r in rows):
            _finish_axis(speed_axis, "multiply-adds per image", "milliseconds (this CPU)")
            speed_axis.set_yscale("log")
        else:  # speed.json is written when part 3 runs; a log axis cannot be empty
            speed_axis.set_axis_off()
            speed_axis.text(0.5, 0.5, "runtimes not measured yet", ha="center",
                            transform=speed_axis.transAxes)
        figure.suptitle("Part 3: fast scaling (a = 0.8) against uniform compound scaling "
                        "(a = 1/3) of EfficientNet-B0")
        figure.supxlabel(caption, fontsize=8)
        _save(figure, out / "part3.png")
        written.append("part3.png")
    compound = {base: family_rows(members, base, "compound") for base in BASES}
    if all(len(rows) > 1 for rows in compound.values()):
        figure = Figure(figsize=(7.5, 5), layout="constrained")
        axis = figure.subplots()
        for base, rows in compound.items():
            _curve(axis, rows, "flops", f"{bases.get(base, base)} (compound)", base)
        _finish_axis(axis, "multiply-adds per image (as trained)", "test accuracy (%)")
        figure.suptitle("Part 4: searched baseline against EfficientNet-B0, compound families")
        figure.supxlabel(caption, fontsize=8)
        _save(figure, out / "part4.png")
        written.append("part4.png")
    if len(members) >= 3:
        figure = Figure(figsize=(11, 4.5), layout="constrained")
        for axis, key, label in zip(figure.subplots(1, 2), ("flops", "activations"),
                                    ("multiply-adds", "activations")):
            for style in FAMILY_ORDER:
                rows = [m for m in members.values() if m["family"] == style and m["phi"] > 0]
                if rows:
                    color, marker = _STYLE[style]
                    axis.scatter([r[key] for r in rows], [r["latency_b1_ms"] for r in rows],
                                 color=color, marker=marker, label=style)
            bases_rows = [m for m in members.values() if m["phi"] == 0]
            axis.scatter([r[key] for r in bases_rows], [r["latency_b1_ms"] for r in bases_rows],
                         color="black", marker="*", label="phi 0")
            values = [m[key] for m in members.values()]
            latency = [m["latency_b1_ms"] for m in members.values()]
            r = float(np.corrcoef(np.log(values), np.log(latency))[0, 1])
            _finish_axis(axis, f"{label} per image", "latency, batch 1 (ms, during the run)")
            axis.set_yscale("log")
            axis.set_title(f"{label}: Pearson r of logs = {r:.3f}")
        figure.suptitle("Which cost predicts CPU latency? Every trained member")
        _save(figure, out / "latency.png")
        written.append("latency.png")
    return written


def _finish_axis(axis, xlabel: str, ylabel: str) -> None:
    axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)


def latency_correlations(members: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Pearson correlation of log latency with log multiply-adds, activations, params."""
    if len(members) < 3:
        return {}
    latency = np.log([m["latency_b1_ms"] for m in members.values()])
    return {key: round(float(np.corrcoef(np.log([m[key] for m in members.values()]),
                                         latency)[0, 1]), 4)
            for key in ("flops", "activations", "params")}


def write_results(out: Path, protocol: Protocol, bases: dict[str, str]) -> dict[str, Any]:
    """results.json, results.csv, summary.md and the plots from whatever members exist."""
    rows = collect(out)
    members = aggregate(rows)
    speed_path = out / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.is_file() else None
    search = search_record(out)
    summary = {"protocol": protocol.to_dict(), "bases": bases, "search": search,
               "latency_correlations_log": latency_correlations(members),
               "claims": claims(members, speed, bases), "members": list(members.values())}
    atomic_write_json(out / "results.json", summary)
    buffer = io.StringIO()
    fields = ["member", "base", "family", "phi", "seed", "resolution", "flops", "params",
              "activations", "deploy_flops", "test_accuracy", "train_images_per_second",
              "latency_b1_ms", "seconds", "failed"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: (r["member"], r["seed"])))
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_text(out / "summary.md", summary_markdown(members, speed, bases, search))
    summary["plots"] = write_plots(out, members, speed, bases, protocol, search)
    return summary


# -- the driver --------------------------------------------------------------------------------------


class Bases:
    """The base genomes: EfficientNet-B0 and, once there is one, the searched baseline.

    The searched genome is taken from ``explicit`` (--baseline), else the copy a previous
    run left in ``out/baseline`` (so a reference folder stays self-consistent), else the
    default search's best.json, else the newest runs/*/best.json."""

    def __init__(self, *, out: Path, wanted: Sequence[str], explicit: Optional[str]) -> None:
        self.out, self.wanted, self.explicit = out, tuple(wanted), explicit
        self.genomes: dict[str, Genome] = {B0: presets.get(B0)} if B0 in wanted else {}
        self.specs: dict[str, str] = {B0: B0}

    def load(self, *, announce: bool = False) -> bool:
        """Load the searched baseline if wanted and found; True when it was newly loaded."""
        if SEARCHED not in self.wanted or SEARCHED in self.genomes:
            return False
        kept = self.out / "baseline" / "best.json"
        if self.explicit is None and kept.is_file():
            best = kept
        else:
            best = find_baseline(self.explicit)
            if best is None:
                if announce:
                    log.warning("no searched baseline yet (%s missing): training the "
                                "EfficientNet-B0 members; the searched ones join when it "
                                "appears", DEFAULT_BASELINE)
                return False
            best = copy_search_run(best, self.out)
        self.genomes[SEARCHED] = Genome.from_json(best)
        self.specs[SEARCHED] = str(best)
        tqdm.write(f"searched baseline: {best} ({self.genomes[SEARCHED].name})")
        return True

    def descriptions(self) -> dict[str, str]:
        text = {B0: "EfficientNet-B0"}
        kept = self.out / "baseline" / "best.json"
        if kept.is_file():
            text[SEARCHED] = f"searched ({Genome.from_json(kept).name or 'best.json'})"
        return text


def stored_metrics(job: Job, *, seed: int, out: Path) -> Optional[dict[str, Any]]:
    """The member's metrics if it was trained already (for this genome), else None."""
    path = member_folder(out, seed, job) / "metrics.json"
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    if stored.get("genome_key") != job.genome.key():
        raise ReproduceError(f"{path} was trained for another genome (a different "
                             "baseline?); pass another --out or remove that folder")
    return stored


# What every process that trains members holds: the dataset and the protocol's fixed
# training and test subsets, loaded once per process by start_trainer.
_TRAINER: dict[str, Any] = {}


def start_trainer(data_dir: Optional[str], protocol: Protocol, threads: Optional[int],
                  quiet: bool, worker: bool = False) -> None:
    if worker:
        die_with_parent()
    if threads:
        torch.set_num_threads(threads)
    data = load_dataset("fashion-mnist", data_dir)
    _TRAINER.update(data=data, protocol=protocol, quiet=quiet,
                    train=take_subset(data.train, protocol.subset, protocol.data_seed),
                    test=take_subset(data.test, protocol.test_size, protocol.data_seed))


def train_and_save(job: Job, seed: int, out: Path) -> dict[str, Any]:
    """Train one member in this process (see start_trainer) and write its metrics.json."""
    metrics = train_member(job, seed=seed, protocol=_TRAINER["protocol"], train=_TRAINER["train"],
                           test=_TRAINER["test"], data=_TRAINER["data"], quiet=_TRAINER["quiet"])
    metrics["threads"] = torch.get_num_threads()
    atomic_write_json(member_folder(out, seed, job) / "metrics.json", metrics)
    return metrics


class _InProcess:
    """The executor of ``--workers 1``: runs each task at once, in this process."""

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as error:  # noqa: BLE001 - handed to the caller as with a pool
            future.set_exception(error)
        return future

    def __enter__(self) -> "_InProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        return None


def _announce(job: Job, seed: int, metrics: dict[str, Any], progress: tqdm) -> str:
    accuracy = metrics.get("test_accuracy")
    progress.set_postfix(member=f"{job.member_id} s{seed}",
                         acc="failed" if accuracy is None else f"{accuracy:.4f}",
                         img_s=f"{metrics.get('train_images_per_second', 0):.0f}")
    tqdm.write(f"{job.member_id} seed {seed}: "
               + ("failed: " + metrics["failed"] if accuracy is None else
                  f"test accuracy {accuracy:.4f}, {metrics['train_images_per_second']:.0f} "
                  f"img/s, {metrics['seconds']:.0f} s"))
    return "failed" if accuracy is None else "trained"


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def check_protocol(out: Path, protocol: Protocol) -> None:
    path = out / "protocol.json"
    if path.is_file():
        stored = json.loads(path.read_text()).get("protocol")
        if stored != protocol.to_dict():
            raise ReproduceError(f"{out} was started with protocol {stored}; this run asks for "
                                 f"{protocol.to_dict()}: pass the same options or another --out")


def record_run(out: Path, protocol: Protocol, argv: Optional[Sequence[str]]) -> None:
    """protocol.json: the protocol, and every command run into this folder with its
    machine and start time (a resumed run appends one entry)."""
    path = out / "protocol.json"
    runs = json.loads(path.read_text()).get("runs", []) if path.is_file() else []
    command = " ".join(argv if argv is not None else sys.argv[1:])
    runs.append({"command": f"python3 benchmarks/reproduce.py {command}".strip(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine()})
    atomic_write_json(path, {"protocol": protocol.to_dict(), "runs": runs})


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Protocol()
    parser.add_argument("--out", default="runs/reference", help="run folder (default runs/reference)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds (default 0); each seed trains every member")
    parser.add_argument("--parts", type=int, nargs="+", default=[2, 3, 4], choices=[2, 3, 4])
    parser.add_argument("--bases", nargs="+", default=list(BASES), choices=BASES)
    parser.add_argument("--families", nargs="+", choices=FAMILY_ORDER,
                        help="train only these families (default: all the parts need)")
    parser.add_argument("--baseline", help="searched genome (default: "
                        f"{DEFAULT_BASELINE}, else the newest runs/*/best.json)")
    parser.add_argument("--subset", type=int, default=defaults.subset,
                        help=f"training images (default {defaults.subset})")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--test-size", type=int, default=defaults.test_size,
                        help=f"test images, 0 for all 10,000 (default {defaults.test_size})")
    parser.add_argument("--resolution", type=int, default=defaults.resolution,
                        help="proxy resolution of phi 0 in pixels (default 32)")
    parser.add_argument("--max-phi", type=int, default=defaults.max_phi,
                        help="largest phi (multiplier 2^phi; default 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores; on a "
                        "machine shared with other jobs, 1 avoids oversubscription)")
    parser.add_argument("--speed-rounds", type=int, default=2,
                        help="interleaved rounds of the part-3 runtime measurement (default 2)")
    parser.add_argument("--data", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild results, tables and plots from finished members")
    parser.add_argument("--workers", type=int, default=1, help="members trained at once, each "
                        "in its own process with cores/workers torch threads (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no per-step progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the experiment; returns {"trained": n, "skipped": n, "failed": n, "summary": ...}."""
    args = parse_args(argv)
    if args.subset < 2 or args.epochs < 1 or args.batch_size < 2 or args.max_phi < 1 \
            or args.workers < 1:
        raise UsageError("--subset >= 2, --epochs >= 1, --batch-size >= 2, --max-phi >= 1, "
                         "--workers >= 1")
    protocol = Protocol(subset=args.subset, epochs=args.epochs, batch_size=args.batch_size,
                        test_size=args.test_size or None, resolution=args.resolution,
                        max_phi=args.max_phi, threads=args.threads)
    if args.threads:
        torch.set_num_threads(args.threads)  # also for part 3's runtimes, measured here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_protocol(out, protocol)
    data = load_dataset("fashion-mnist", args.data)

    bases = Bases(out=out, wanted=args.bases, explicit=args.baseline)
    bases.load(announce=True)
    record_run(out, protocol, argv)
    specs = family_specs(args.parts, args.bases, args.families)

    def current_plan() -> list[Job]:
        for base, label, method, alpha, _ in specs:
            if base in bases.genomes:
                write_family_files(bases.genomes[base], bases.specs[base], method, alpha,
                                   protocol.max_phi, out / "families" / base / label,
                                   data.num_classes, data.in_channels)
        return plan(bases.genomes, specs, protocol, data.num_classes, data.in_channels)

    jobs = current_plan()
    counts = {"trained": 0, "skipped": 0, "failed": 0}
    if not args.report_only:
        # Runtimes need no training, so part 3's are measured first: a run stopped for
        # time still has them for every multiplier.
        speed_jobs = [job for job in jobs if 3 in job.parts]
        if speed_jobs and not (out / "speed.json").is_file():
            atomic_write_json(out / "speed.json", measure_speed(
                speed_jobs, train=take_subset(data.train, protocol.subset, protocol.data_seed),
                data=data, protocol=protocol, rounds=args.speed_rounds))
        progress = tqdm(total=len(args.seeds) * len(jobs), desc="members", unit="member",
                        dynamic_ncols=True, position=0)
        # Several single-thread processes beat one process with every core on these small
        # networks (two 1-thread trainers: 1.6x the images/s of one 2-thread trainer here).
        threads = args.threads or (max(1, len(os.sched_getaffinity(0)) // args.workers)
                                   if args.workers > 1 else None)
        setup = (args.data, protocol, threads, args.quiet or args.workers > 1)
        if args.workers > 1:
            executor = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"),
                                           initializer=start_trainer, initargs=(*setup, True))
        else:
            start_trainer(*setup)
            executor = _InProcess()
        queued: set[tuple[int, str]] = set()
        running: dict[Future, tuple[int, Job]] = {}
        with executor:
            while True:
                for seed in args.seeds:
                    for job in jobs:
                        if (seed, job.member_id) in queued or len(running) >= args.workers:
                            continue
                        queued.add((seed, job.member_id))
                        if stored_metrics(job, seed=seed, out=out) is not None:
                            counts["skipped"] += 1
                            progress.update(1)
                            continue
                        progress.set_postfix(member=f"{job.member_id} s{seed}", refresh=True)
                        running[executor.submit(train_and_save, job, seed, out)] = (seed, job)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    seed, job = running.pop(future)
                    counts[_announce(job, seed, future.result(), progress)] += 1
                    progress.update(1)
                # The search may finish while this runs: its members join the queue, by phi.
                if SEARCHED in args.bases and SEARCHED not in bases.genomes and bases.load():
                    jobs = current_plan()
                    progress.total = len(args.seeds) * len(jobs)
                    progress.refresh()
        progress.close()
    summary = write_results(out, protocol, bases.descriptions())
    print((out / "summary.md").read_text())
    print(f"latency vs cost (Pearson r of logs): {summary['latency_correlations_log']}")
    print(f"trained {counts['trained']}, skipped {counts['skipped']} (already done), failed "
          f"{counts['failed']}; wrote {out}/results.json, summary.md, {', '.join(summary['plots'])}")
    return {**counts, "summary": summary}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except NasError as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        sys.exit(2)
