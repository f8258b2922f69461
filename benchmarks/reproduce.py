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

One fixed protocol trains every member of a run folder so that numbers compare: the same
seeded subset of the Fashion-MNIST training set, the same epochs, batch and recipe, at 32
px times the member's resolution multiplier; accuracy on a fixed seeded subset of the
Fashion-MNIST test set. Two presets (``--protocol``; any explicit flag overrides a value):

- ``one-epoch`` (the default; runs/reference, docs/RESULTS.md): 4,096 training images, 1
  epoch, batch 32, no augmentation, 2,000 test images, phi 0..3, seed 0. What fits a
  2-core budget for 64 trainings; it favours small networks (every member gets the same
  128 steps).
- ``converged`` (issue 25; default --out runs/converged): every member trained until its
  accuracy levels off, with ``nas train``'s recipe (nas.full_train.DEFAULTS: AdamW,
  one-cycle, label smoothing 0.1, random-crop and flip augmentation): 10,000 training
  images, 15 epochs, batch 128, all 10,000 test images, phi 0..2, seeds 0 and 1; the
  searched baseline is the one-epoch run's (runs/reference/baseline/best.json), so both
  protocols scale the same genome.
  15 epochs at batch 128 are 1,170 steps, 9x the one-epoch protocol's: the length of the
  project's reference trainings on the same 10,000 images (benchmarks/
  bench_reference_accuracy.py), and the most a 2-core machine affords for 44 trainings
  (22 members x 2 seeds; from the one-epoch run's single-thread images/s, 0.4 to 2.5
  hours per member, about 15 to 25 hours with ``--workers 2``). Batch 128, not
  ``nas train``'s 256: 256 is sized for 60,000 images (234 steps an epoch) and leaves
  10,000 images 39 steps an epoch; 128 is the batch the reference trainings use and beat
  64 and 256 at equal time (nas.settings.ProxySettings). Whether the members level off
  is measured, not assumed: every metrics.json holds the member's test accuracy after
  every epoch, and summary.md gives B0's and the largest member's gain over the last
  third of the epochs (under one-cycle the learning rate anneals over that third, so a
  converged member still gains a little there).

Resumable: every member writes ``members/seed<k>/<base>/<member>/metrics.json``
(atomically) when it finishes and is skipped when that file exists, so a killed run
continues where it stopped. A folder started with another protocol or another baseline
genome is refused rather than mixed. With ``--commit`` each finished member's
metrics.json, results.json and summary.md are committed to git at once (and the folder's
other small files at the end; benchmarks/commit_results.py), so a run that outlives its
session leaves its results in the repository. Several instances may run on the same
seeds and share the members: each takes an exclusive lock on a member's
``.training.lock`` before training it and skips the members locked by another (the lock
goes with its holder, however it ends), so two single-thread instances given
``--seeds 0 1`` keep both cores busy to the last member.

Writes into ``--out``: protocol.json, baseline/ (the searched genome and the search's
best.json, trials.csv, report.html), families/<base>/<method>/ (``nas scale`` output:
b0..b3.json, family.json/.csv/.png/.html), members/ (metrics), speed.json (part 3),
results.json, results.csv, summary.md and part1.png, part2_*.png, part3.png, part4.png,
latency.png, plateau.png (benchmarks/reproduce_report.py). Usage:

    python3 benchmarks/reproduce.py [--out runs/reference] [--seeds 0 1] [--parts 2 3 4]
    python3 benchmarks/reproduce.py --protocol converged --plateau-check --workers 2 --commit
    python3 benchmarks/reproduce.py --protocol converged --workers 2 --commit
    # on a GPU: all 60,000 images, phi 0..3, trainers sharing the GPU, no CPU runtimes
    python3 benchmarks/reproduce.py --protocol converged --out runs/converged-gpu \
        --subset 60000 --batch-size 256 --epochs 6 --max-phi 3 --device cuda --workers 10 --no-speed
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
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
# The repository (nas, space, scaling) and this folder (the report, commit_results), also
# when a test loads this file by path.
for _folder in (ROOT, Path(__file__).resolve().parent):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
if __name__ == "__main__":
    # Members train at up to 90 px, where glibc's page faults cost most (nas.allocator).
    from nas.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc()

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import reproduce_report as report  # noqa: E402
from commit_results import commit_results  # noqa: E402
from nas.common import (UsageError, atomic_write_bytes, atomic_write_json,  # noqa: E402
                        atomic_write_text, die_with_parent)
from nas.data import Split, load_dataset, proxy_resolution, take_subset  # noqa: E402
from nas.family import CostContext, family_files, family_table, grow  # noqa: E402
from nas.full_train import DEFAULTS as TRAIN_DEFAULTS, train_config, train_genome  # noqa: E402
from nas.latency import measure_latency  # noqa: E402
from nas.outputs import publish  # noqa: E402
from nas.train import TrainConfig, TrainingDiverged, parse_device  # noqa: E402
from reproduce_report import B0, BASES, FAMILY_ORDER, PART2_METHODS, SEARCHED  # noqa: E402
from scaling import family, resolve_coefficients  # noqa: E402
from space import Genome, NasError, cost, presets  # noqa: E402

log = logging.getLogger(__name__)

# The lead's default search (`nas search` on Fashion-MNIST at 400M multiply-adds).
DEFAULT_BASELINE = Path("runs/fashion-mnist-400M-proxy-train/best.json")
FAST_A = 0.8  # Dollar et al. 2021's "dWr"
UNIFORM_A = 1 / 3  # Dollar et al. 2021's "dwr": uniform compound scaling
# Result files above this size are left out of --commit's commits (an interactive
# family.html inlines plotly, 4.8 MB; the copied study.db and report.html).
COMMIT_MAX_BYTES = 1_000_000


class ReproduceError(NasError):
    """A reproduction request that cannot be honoured (mixed protocols, missing baseline)."""


@dataclass(frozen=True)
class Protocol:
    """What every member is trained and measured with; stored in protocol.json.

    ``subset`` training images (seeded by ``data_seed`` from the 60,000), ``epochs``,
    ``batch_size``, ``augment`` (random crop and flip), ``nas train``'s recipe otherwise
    (nas.full_train.DEFAULTS: AdamW, one-cycle, label smoothing 0.1; nas.train.fit's
    zero-initialised classifier and precise batch-norm statistics before testing),
    accuracy on ``test_size`` seeded test images (all 10,000 when None), input
    ``resolution`` x the member's resolution multiplier, ``threads`` torch threads.
    ``name``: the preset it came from. The defaults are the one-epoch preset; a
    protocol.json written before a field existed reads as that field's default."""

    subset: int = 4096
    epochs: int = 1
    batch_size: int = 32
    test_size: Optional[int] = 2000
    resolution: int = 32
    data_seed: int = 0
    max_phi: int = 3
    threads: Optional[int] = None
    augment: bool = False
    name: str = "one-epoch"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --protocol presets: protocol values, and the run's seeds, folder and searched baseline
# (module docstring). The converged run scales the genome the one-epoch run scaled.
PRESETS: dict[str, dict[str, Any]] = {
    "one-epoch": {"protocol": Protocol(), "seeds": [0], "out": "runs/reference",
                  "baseline": None},
    "converged": {"protocol": Protocol(subset=10000, epochs=15, batch_size=128,
                                       test_size=None, max_phi=2, augment=True,
                                       name="converged"),
                  "seeds": [0, 1], "out": "runs/converged",
                  "baseline": ROOT / "runs" / "reference" / "baseline" / "best.json"},
}


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


def find_baseline(explicit: Optional[str], preset: Optional[Path] = None) -> Optional[Path]:
    """``--baseline``, else the preset's baseline if it exists, else the default search's
    best.json, else the newest runs/*/best.json."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ReproduceError(f"--baseline {explicit!r} does not exist; give a genome JSON "
                                 "(runs/<study>/best.json) or --bases efficientnet-b0")
        return path
    if preset is not None and preset.is_file():
        return preset
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


def member_config(genome: Genome, *, seed: int, protocol: Protocol) -> TrainConfig:
    """The trainer's settings for one member: ``nas train``'s recipe with the protocol's
    epochs, batch, augmentation and resolution (times the genome's multiplier)."""
    return train_config({**TRAIN_DEFAULTS, "epochs": protocol.epochs,
                         "batch_size": protocol.batch_size, "augment": protocol.augment,
                         "resolution": protocol.resolution, "seed": seed}, genome)


def train_member(job: Job, *, seed: int, protocol: Protocol, train: Split, test: Split,
                 data, quiet: bool, device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    """Train one member with the protocol; returns its metrics (accuracy in [0, 1]; the
    test accuracy after every epoch in ``history``)."""
    config = member_config(job.genome, seed=seed, protocol=protocol)
    resolution = config.resolution
    trained_cost = cost(job.genome, resolution=resolution, num_classes=data.num_classes,
                        in_channels=data.in_channels)
    record: dict[str, Any] = {
        "member": job.member_id, "name": job.genome.name, "base": job.base,
        "family": job.family, "phi": job.phi, "parts": list(job.parts), "seed": seed,
        "resolution": resolution, "flops": trained_cost.flops, "params": trained_cost.params,
        "activations": trained_cost.activations, "deploy_resolution": job.genome.resolution,
        "deploy_flops": job.deploy_flops, "genome_key": job.genome.key(),
        "genome": job.genome.to_dict(), "protocol": protocol.to_dict(),
        "train_config": config.to_dict(), "device": str(device)}
    started = time.perf_counter()
    try:
        _, result = train_genome(job.genome, data=data, train=train, scored_on=test,
                                 config=config, device=device, quiet=quiet,
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


# -- the driver --------------------------------------------------------------------------------------


class Bases:
    """The base genomes: EfficientNet-B0 and, once there is one, the searched baseline.

    The searched genome is taken from ``explicit`` (--baseline), else the copy a previous
    run left in ``out/baseline`` (so a reference folder stays self-consistent), else the
    ``preset``'s baseline, else the default search's best.json, else the newest
    runs/*/best.json."""

    def __init__(self, *, out: Path, wanted: Sequence[str], explicit: Optional[str],
                 preset: Optional[Path] = None) -> None:
        self.out, self.wanted, self.explicit, self.preset = out, tuple(wanted), explicit, preset
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
            best = find_baseline(self.explicit, self.preset)
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
                  quiet: bool, device: str = "cpu", worker: bool = False) -> None:
    if worker:
        die_with_parent()
    if threads:
        torch.set_num_threads(threads)
    data = load_dataset("fashion-mnist", data_dir)
    _TRAINER.update(data=data, protocol=protocol, quiet=quiet, device=torch.device(device),
                    train=take_subset(data.train, protocol.subset, protocol.data_seed),
                    test=take_subset(data.test, protocol.test_size, protocol.data_seed))


def claim_member(out: Path, seed: int, job: Job) -> Any:
    """The open, locked lock file of a member for this process to train; "done" if it is
    trained, "elsewhere" while another instance of this script trains it. The lock goes
    when the file is closed or its holder dies, so a killed instance leaves no claim."""
    if stored_metrics(job, seed=seed, out=out) is not None:
        return "done"
    folder = member_folder(out, seed, job)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".training.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return "elsewhere"
    if stored_metrics(job, seed=seed, out=out) is not None:  # finished while we looked
        handle.close()
        return "done"
    return handle


def train_and_save(job: Job, seed: int, out: Path) -> dict[str, Any]:
    """Train one member in this process (see start_trainer) and write its metrics.json."""
    metrics = train_member(job, seed=seed, protocol=_TRAINER["protocol"], train=_TRAINER["train"],
                           test=_TRAINER["test"], data=_TRAINER["data"], quiet=_TRAINER["quiet"],
                           device=_TRAINER["device"])
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
    """Refuse a folder started with another protocol; a field its protocol.json lacks
    (written before the field existed) reads as the field's default."""
    path = out / "protocol.json"
    if path.is_file():
        stored = json.loads(path.read_text()).get("protocol")
        if {**Protocol().to_dict(), **(stored or {})} != protocol.to_dict():
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


def plateau_jobs(jobs: Sequence[Job]) -> list[Job]:
    """The members whose curves decide whether the protocol's epochs suffice (the ones
    reproduce_report.plateau reads): EfficientNet-B0, and the member with the most
    multiply-adds, the slowest to converge."""
    chosen = [job for job in jobs if job.member_id == f"{B0}/b0"]
    largest = max(jobs, key=lambda job: job.deploy_flops, default=None)
    if largest is not None and largest not in chosen:
        chosen.append(largest)
    return chosen


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The options; those a --protocol preset sets are None here unless given (see
    resolve_protocol)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=tuple(PRESETS), default="one-epoch",
                        help="preset of the values below (default one-epoch; see the module "
                        "docstring); an explicit flag overrides a preset's value")
    parser.add_argument("--out", help="run folder (default: runs/reference for one-epoch, "
                        "runs/converged for converged)")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="training seeds (default: 0 for one-epoch, 0 1 for converged); "
                        "each seed trains every member")
    parser.add_argument("--parts", type=int, nargs="+", default=[2, 3, 4], choices=[2, 3, 4])
    parser.add_argument("--bases", nargs="+", default=list(BASES), choices=BASES)
    parser.add_argument("--families", nargs="+", choices=FAMILY_ORDER,
                        help="train only these families (default: all the parts need)")
    parser.add_argument("--baseline", help="searched genome (default: the one a run in "
                        "--out copied; converged: runs/reference's; else "
                        f"{DEFAULT_BASELINE}, else the newest runs/*/best.json)")
    parser.add_argument("--subset", type=int, help="training images (default 4096; converged "
                        "10000)")
    parser.add_argument("--epochs", type=int, help="default 1; converged 15")
    parser.add_argument("--batch-size", type=int, help="default 32; converged 128")
    parser.add_argument("--test-size", type=int,
                        help="test images, 0 for all 10,000 (default 2000; converged 0)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction,
                        help="random crop and flip while training (default off; converged on)")
    parser.add_argument("--resolution", type=int,
                        help="proxy resolution of phi 0 in pixels (default 32)")
    parser.add_argument("--max-phi", type=int,
                        help="largest phi (multiplier 2^phi; default 3; converged 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores; on a "
                        "machine shared with other jobs, 1 avoids oversubscription)")
    parser.add_argument("--speed-rounds", type=int, default=2,
                        help="interleaved rounds of the part-3 runtime measurement (default 2)")
    parser.add_argument("--data", help="Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild results, tables and plots from finished members")
    parser.add_argument("--workers", type=int, default=1, help="members trained at once, each "
                        "in its own process with cores/workers torch threads (default 1)")
    parser.add_argument("--commit", action="store_true", help="commit each finished member's "
                        "metrics.json, results.json and summary.md to git, and the folder's "
                        "other small files at the end (a failed commit is a warning)")
    parser.add_argument("--plateau-check", action="store_true",
                        help="train only what decides whether --epochs is enough: "
                        "EfficientNet-B0 and the member with the most multiply-adds, under "
                        "the first seed, and report their last-third gain; the full run "
                        "later reuses both")
    parser.add_argument("--quiet", action="store_true", help="no per-step progress bar")
    parser.add_argument("--no-speed", action="store_true",
                        help="skip part 3's runtime measurement (on a machine whose CPU "
                        "timings will not be reported, such as a GPU host running trainings)")
    parser.add_argument("--device", default="cpu", help="where members train (default cpu; "
                        "cuda for a GPU, which several --workers share); part 3's runtimes "
                        "and every latency stay on the CPU")
    return parser.parse_args(argv)


def resolve_protocol(args: argparse.Namespace) -> tuple[Protocol, list[int], Path]:
    """The protocol, seeds and run folder: the --protocol preset's, with every flag given
    explicitly in its place."""
    preset = PRESETS[args.protocol]
    flags = {"subset": args.subset, "epochs": args.epochs, "batch_size": args.batch_size,
             "test_size": args.test_size, "resolution": args.resolution,
             "max_phi": args.max_phi, "threads": args.threads, "augment": args.augment}
    given = {key: value for key, value in flags.items() if value is not None}
    if "test_size" in given:
        given["test_size"] = given["test_size"] or None  # 0: all 10,000
    protocol = dataclasses.replace(preset["protocol"], **given)
    if protocol.subset < 2 or protocol.epochs < 1 or protocol.batch_size < 2 \
            or protocol.max_phi < 1 or args.workers < 1:
        raise UsageError("--subset >= 2, --epochs >= 1, --batch-size >= 2, --max-phi >= 1, "
                         "--workers >= 1")
    parse_device(args.device)  # refused here, not in a worker
    return protocol, list(args.seeds or preset["seeds"]), Path(args.out or preset["out"])


def commit_member(out: Path, job: Job, seed: int, metrics: dict[str, Any],
                  protocol: Protocol, bases: dict[str, str],
                  planned: Sequence[tuple[int, str]]) -> None:
    """--commit after a member: its metrics.json with the results it changes, in the
    git repository that holds ``out``."""
    report.write_results(out, protocol, bases, plots=False, planned=planned)
    accuracy = metrics.get("test_accuracy")
    outcome = "failed" if accuracy is None else f"test accuracy {accuracy:.4f}"
    commit_results([member_folder(out, seed, job) / "metrics.json", out / "results.json",
                    out / "summary.md"],
                   f"reproduce ({protocol.name}): {job.member_id} seed {seed}, {outcome}", out)


def commit_folder(out: Path, protocol: Protocol) -> None:
    """--commit at the end: every small file of the run folder (not checkpoints, which
    it has none of, nor the few large copies and pages; COMMIT_MAX_BYTES)."""
    small = [path for path in sorted(out.rglob("*"))
             if path.is_file() and path.stat().st_size <= COMMIT_MAX_BYTES]
    commit_results(small, f"reproduce ({protocol.name}): results, plots and family files of "
                   f"{out}", out)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the experiment; returns {"trained": n, "skipped": n, "failed": n, "summary": ...}."""
    args = parse_args(argv)
    protocol, seeds, out = resolve_protocol(args)
    if args.threads:
        torch.set_num_threads(args.threads)  # also for part 3's runtimes, measured here
    out.mkdir(parents=True, exist_ok=True)
    check_protocol(out, protocol)
    data = load_dataset("fashion-mnist", args.data)

    bases = Bases(out=out, wanted=args.bases, explicit=args.baseline,
                  preset=PRESETS[args.protocol]["baseline"])
    bases.load(announce=True)
    record_run(out, protocol, argv)
    specs = family_specs(args.parts, args.bases, args.families)

    def current_plan() -> list[Job]:
        for base, label, method, alpha, _ in specs:
            if base in bases.genomes:
                write_family_files(bases.genomes[base], bases.specs[base], method, alpha,
                                   protocol.max_phi, out / "families" / base / label,
                                   data.num_classes, data.in_channels)
        jobs = plan(bases.genomes, specs, protocol, data.num_classes, data.in_channels)
        return plateau_jobs(jobs) if args.plateau_check else jobs

    def planned(jobs: Sequence[Job]) -> list[tuple[int, str]]:
        return [(seed, job.member_id) for seed in seeds for job in jobs]

    if args.plateau_check:
        seeds = seeds[:1]
    jobs = current_plan()
    counts = {"trained": 0, "skipped": 0, "failed": 0, "elsewhere": 0}
    if not args.report_only:
        # Runtimes need no training, so part 3's are measured first: a run stopped for
        # time still has them for every multiplier.
        speed_jobs = [job for job in jobs
                      if 3 in job.parts and not (args.plateau_check or args.no_speed)]
        if speed_jobs and not (out / "speed.json").is_file():
            atomic_write_json(out / "speed.json", measure_speed(
                speed_jobs, train=take_subset(data.train, protocol.subset, protocol.data_seed),
                data=data, protocol=protocol, rounds=args.speed_rounds))
        progress = tqdm(total=len(seeds) * len(jobs), desc="members", unit="member",
                        dynamic_ncols=True, position=0)
        # Several single-thread processes beat one process with every core on these small
        # networks (two 1-thread trainers: 1.6x the images/s of one 2-thread trainer here).
        threads = args.threads or (max(1, len(os.sched_getaffinity(0)) // args.workers)
                                   if args.workers > 1 else None)
        setup = (args.data, protocol, threads, args.quiet or args.workers > 1, args.device)
        if args.workers > 1:
            executor = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"),
                                           initializer=start_trainer, initargs=(*setup, True))
        else:
            start_trainer(*setup)
            executor = _InProcess()
        queued: set[tuple[int, str]] = set()
        running: dict[Future, tuple[int, Job, Any]] = {}
        with executor:
            while True:
                for seed in seeds:
                    for job in jobs:
                        if (seed, job.member_id) in queued or len(running) >= args.workers:
                            continue
                        queued.add((seed, job.member_id))
                        claim = claim_member(out, seed, job)
                        if isinstance(claim, str):
                            counts["skipped" if claim == "done" else "elsewhere"] += 1
                            progress.update(1)
                            continue
                        progress.set_postfix(member=f"{job.member_id} s{seed}", refresh=True)
                        future = executor.submit(train_and_save, job, seed, out)
                        running[future] = (seed, job, claim)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    seed, job, claim = running.pop(future)
                    try:
                        metrics = future.result()
                    finally:
                        claim.close()
                    counts[_announce(job, seed, metrics, progress)] += 1
                    progress.update(1)
                    if args.commit:
                        commit_member(out, job, seed, metrics, protocol, bases.descriptions(),
                                      planned(jobs))
                # The search may finish while this runs: its members join the queue, by phi.
                if SEARCHED in args.bases and SEARCHED not in bases.genomes and bases.load():
                    jobs = current_plan()
                    progress.total = len(seeds) * len(jobs)
                    progress.refresh()
        progress.close()
    summary = report.write_results(out, protocol, bases.descriptions(), planned=planned(jobs))
    if args.commit:
        commit_folder(out, protocol)
    print((out / "summary.md").read_text())
    print(f"latency vs cost (Pearson r of logs): {summary['latency_correlations_log']}")
    elsewhere = (f", {counts['elsewhere']} in training by another instance"
                 if counts["elsewhere"] else "")
    print(f"trained {counts['trained']}, skipped {counts['skipped']} (already done){elsewhere}, "
          f"failed {counts['failed']}; wrote {out}/results.json, summary.md, {', '.join(summary['plots'])}")
    return {**counts, "summary": summary}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except NasError as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        sys.exit(2)
