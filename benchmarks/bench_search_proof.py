"""Proof on the real question (issue 22): does a search find a genome that beats the
hand-designed networks under a protocol the search never saw?

For each evaluator asked for, runs ``nas search --target-flops 400M --evaluator E`` within
a wall-clock budget (default one hour on this machine, the supernet's training included:
``nas supernet train`` runs first and its time is charged; ``--supernet FILE`` reuses an
artifact and charges the training time it records), then trains the search's best,
EfficientNet-B0 and MnasNet-A1 with the 15-epoch reference protocol of
``bench_reference_accuracy.py`` (the default proxy's settings with 5x the epochs, 10,000
training images) under seeds 0 and 1, scored on the 10,000 test images. Prints the table
(multiply-adds and parameters for the search's context, mean test accuracy +- standard
error over the seeds) and writes ``results/search_proof.json`` after every step.

    python3 benchmarks/bench_search_proof.py --evaluator supernet [--evaluator proxy-train]
        [--budget-seconds 3600] [--space FILE] [--supernet FILE] [--references NAMES]

Resumable: a finished search is not run again, and each finished training is kept. A
killed search resumes its study when run again, but its clock starts over: the recorded
seconds are then those of the last run only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Optional

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_proxy.py

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench_rank_fidelity import start_worker  # noqa: E402
from commit_results import commit_results  # noqa: E402
from bench_reference_accuracy import LONG_EPOCHS, SEEDS  # noqa: E402
from nas.common import atomic_write_json, format_table  # noqa: E402
from nas.data import load_dataset  # noqa: E402
from nas.evaluators import PROXY_DEFAULTS, make_evaluator  # noqa: E402
from nas.full_train import train_genome  # noqa: E402
from nas.run import RunFolder, locate_study, open_study  # noqa: E402
from nas.trial import TrialRecord, state_counts  # noqa: E402
from space import Genome, SearchContext, cost, presets  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "search_proof.json"
TARGET = "400M"
DATASET = "fashion-mnist"  # what `nas search` and the trainings below use by default
REFERENCES = ("efficientnet-b0", "mnasnet-a1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluator", action="append", choices=("supernet", "proxy-train"),
                        help="search(es) to prove (default: supernet)")
    parser.add_argument("--budget-seconds", type=float, default=3600.0,
                        help="wall-clock budget of a search, the supernet's training "
                             "included; 0: the search's own default (12 trials or 18 "
                             "minutes, what the README's command runs)")
    parser.add_argument("--space", help="space file of the search (default: the default space)")
    parser.add_argument("--supernet", help="reuse this supernet artifact (its recorded "
                                           "training time is charged to the budget)")
    parser.add_argument("--references", default=",".join(REFERENCES),
                        help="the search's --references (the table trains B0 and A1 anyway)")
    parser.add_argument("--runs-dir", default=str(Path(__file__).parent / "runs" / "proof"))
    parser.add_argument("--workers", type=int, default=2,
                        help="trainings at once, each in a single-thread process")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--train-only", action="store_true",
                        help="run no search: train the references and the bests of the "
                             "searches already recorded")
    parser.add_argument("--commit", action="store_true",
                        help="commit the results file to git after every step")
    args = parser.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("searches", {})
    results.setdefault("trainings", {})
    for evaluator in [] if args.train_only else args.evaluator or ["supernet"]:
        if not results["searches"].get(evaluator, {}).get("finished"):
            results["searches"][evaluator] = search(evaluator, args)
            save(out, results, f"Search proof: {evaluator} search finished" if args.commit else None)
    contenders = {f"searched ({name})": entry["best"]
                  for name, entry in results["searches"].items() if entry.get("best")}
    contenders.update({name: presets.get(name).to_dict() for name in REFERENCES})
    train_all(contenders, results, args, out)
    print(format_table(["network", "multiply-adds", "parameters", "test accuracy",
                        "vs EfficientNet-B0"], results["table"]))
    results["throughput"] = throughput(results["searches"])
    save(out, results)
    print(format_table(["search", "seconds (training charged)", "genomes scored in full",
                        "trials trained", "genomes / CPU-hour", "trials / CPU-hour"],
                       results["throughput"]))
    print(f"wrote {out}")
    return 0


def search(evaluator: str, args: argparse.Namespace) -> dict:
    """Run (or resume) the search of ``evaluator`` within the budget; returns its entry."""
    runs, study = Path(args.runs_dir), f"proof-{evaluator}"
    common = [sys.executable, "-m", "nas"]
    space = ["--space", args.space] if args.space else []
    charged, supernet = 0.0, []
    if evaluator == "supernet":
        artifact = Path(args.supernet) if args.supernet else runs / "supernet.pt"
        if not args.supernet:  # trained here and timed; reused when a rerun finds it
            subprocess.run([*common, "supernet", "train", *space, "--out", str(artifact)],
                           check=True)
        charged = _training_seconds(artifact)
        supernet = ["--supernet", str(artifact)]
    remaining = args.budget_seconds - charged
    default_budget = args.budget_seconds == 0
    if remaining <= 0 and not default_budget:
        return {"finished": True, "budget_seconds": args.budget_seconds,
                "charged_seconds": charged,
                "outcome": f"the supernet's training alone took {charged:.0f} s of the "
                           f"{args.budget_seconds:.0f} s budget"}
    command = [*common, "search", "--target-flops", TARGET, "--evaluator", evaluator,
               *space, *supernet, "--references", args.references, "--study", study,
               "--runs", str(runs)]
    if not default_budget:
        command += ["--n-trials", "100000", "--timeout", f"{remaining:.0f}"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    folder = RunFolder(runs / study)
    records = [TrialRecord(t) for t in open_study(locate_study(run_dir=folder.path)).get_trials()]
    counts = {state: n for state, n in state_counts(records).items() if n}
    total = charged + seconds
    return {"finished": True, "command": " ".join(command[2:]),
            "budget_seconds": args.budget_seconds or None,
            "charged_seconds": round(charged, 1), "search_seconds": round(seconds, 1),
            "total_seconds": round(total, 1), "trial_states": counts,
            # A budget spent before any genome was evaluated leaves no best.json.
            "best": (json.loads(folder.best_json.read_text())
                     if folder.best_json.exists() else None),
            "selection": (json.loads(folder.selection_json.read_text())
                          if folder.selection_json.exists() else None)}


def throughput(searches: dict[str, dict]) -> list[list[str]]:
    """Rows per finished search: its seconds (the supernet's training included), the
    genomes it scored in full, the trials it trained at all (a pruned proxy training
    stopped part-way counts here, not in full), each per CPU-hour of this machine."""
    rows = []
    for name, entry in searches.items():
        if not entry.get("total_seconds"):
            continue
        states = entry["trial_states"]
        full = states.get("complete", 0)
        trained = full + states.get("pruned", 0)
        cpu_hours = entry["total_seconds"] * os.cpu_count() / 3600
        rows.append([name, f"{entry['total_seconds']:.0f} ({entry['charged_seconds']:.0f})",
                     str(full), str(trained), f"{full / cpu_hours:.1f}",
                     f"{trained / cpu_hours:.1f}"])
    return rows


def _training_seconds(artifact: Path) -> float:
    payload = torch.load(artifact, map_location="cpu", weights_only=False)
    return float(json.loads(payload["training"])["seconds"])


def train_all(contenders: dict[str, dict], results: dict, args: argparse.Namespace,
              out: Path) -> None:
    """Train every contender under every seed that ``results`` lacks, then tabulate."""
    trainings = results["trainings"]
    pending = [(name, seed) for name in contenders for seed in SEEDS
               if f"{name}@{seed}" not in trainings]
    progress = tqdm(total=len(contenders) * len(SEEDS), initial=len(contenders) * len(SEEDS)
                    - len(pending), unit="training", desc="test accuracy", dynamic_ncols=True)
    threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"),
                             initializer=start_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(test_accuracy, contenders[name], seed): (name, seed)
                   for name, seed in pending}
        for future in as_completed(futures):
            name, seed = futures[future]
            trainings[f"{name}@{seed}"] = future.result()
            results["table"] = table(contenders, trainings)
            save(out, results, f"Search proof: {name} seed {seed} test accuracy "
                               f"{trainings[f'{name}@{seed}']['accuracy']:.4f}"
                 if args.commit else None)
            progress.set_postfix(last=f"{name}@{seed}", acc=trainings[f"{name}@{seed}"]["accuracy"])
            progress.update(1)
    progress.close()
    results["table"] = table(contenders, trainings)
    save(out, results)


def test_accuracy(genome_json: dict, seed: int) -> dict:
    """Test accuracy after the reference protocol's training (the 15-epoch proxy
    evaluator's training split and settings; scored on the test split instead)."""
    evaluator = make_evaluator("proxy-train", dataset=DATASET, seed=seed, subset=PROXY_DEFAULTS["subset"],
                               val_size=PROXY_DEFAULTS["val_size"], epochs=LONG_EPOCHS)
    genome = Genome.from_dict(genome_json)
    config = dataclasses.replace(evaluator.config, resolution=evaluator.input_resolution(genome))
    started = time.perf_counter()
    _, result = train_genome(genome, data=evaluator.data, train=evaluator.train,
                             scored_on=evaluator.data.test, config=config, quiet=True)
    return {"accuracy": float(result.val_accuracy), "test_images": len(evaluator.data.test),
            "seconds": round(time.perf_counter() - started, 1),
            "load_average": os.getloadavg()[0]}


def search_context(contenders: dict[str, dict]) -> SearchContext:
    """The channels and classes every row is costed for: those a search recorded in its
    best.json (so the table repeats the costs the search reported), else the dataset's."""
    for genome_json in contenders.values():
        context = Genome.from_dict(genome_json).context
        if context is not None:
            return context
    data = load_dataset(DATASET)
    return SearchContext(DATASET, data.in_channels, data.num_classes)


def table(contenders: dict[str, dict], trainings: dict) -> list[list[str]]:
    """Rows: network, multiply-adds, parameters, mean test accuracy +- standard error over
    the seeds trained so far, difference from EfficientNet-B0's mean."""
    def accuracies(name: str) -> list[float]:
        return [trainings[f"{name}@{seed}"]["accuracy"] for seed in SEEDS
                if f"{name}@{seed}" in trainings]

    def mean(name: str):
        values = accuracies(name)
        return statistics.fmean(values) if values else None

    baseline = mean("efficientnet-b0")
    context = search_context(contenders)
    rows = []
    for name, genome_json in contenders.items():
        genome = Genome.from_dict(genome_json)
        costs = cost(genome, num_classes=context.num_classes, in_channels=context.in_channels)
        values = accuracies(name)
        error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
        shown = "n/a" if not values else (f"{100 * mean(name):.2f}%" + (
            f" +- {100 * error:.2f} ({len(values)} seeds)" if error is not None
            else f" ({len(values)} seed)"))
        lead = ("" if baseline is None or not values or name == "efficientnet-b0"
                else f"{100 * (mean(name) - baseline):+.2f} points")
        rows.append([name, f"{costs.flops / 1e6:.1f} M", f"{costs.params / 1e6:.2f} M",
                     shown, lead])
    return rows


def save(out: Path, results: dict, commit_message: Optional[str] = None) -> None:
    """Write ``results`` (atomically); with a message, also commit the file."""
    results["protocol"] = {"epochs": LONG_EPOCHS, "seeds": list(SEEDS),
                           "train_images": PROXY_DEFAULTS["subset"],
                           "held_out_validation": PROXY_DEFAULTS["val_size"],
                           "scored_on": f"the whole {DATASET} test split",
                           "target": TARGET}
    results["machine"] = {"cores": os.cpu_count(), "torch": str(torch.__version__)}
    atomic_write_json(out, results)
    if commit_message:
        commit_results([out], commit_message, Path(__file__).resolve().parent.parent)


if __name__ == "__main__":
    sys.exit(main())
