"""``nas search``: find the genome with the best MnasNet reward under a compute target."""

from __future__ import annotations

import argparse

from space import Genome

from ..common import UsageError, format_count, parse_count, parse_seed
from ..evolution import POPULATION_SIZE
from ..memory import max_jobs
from ..protocol import EVALUATORS, PRESCREENS, PROXY_DEFAULTS
from ..reward import REWARD_PRESETS
from ..search import (DEFAULT_TIMEOUT, DEFAULT_TRIALS, METRICS, PRUNERS, SAMPLERS, SearchConfig,
                      SearchResult, run_search)
from ..signals import exit_code
from .show import genome_table

EXAMPLES = """\
examples:
  nas search --target-flops 400M                          proxy training on Fashion-MNIST
  nas search --target-flops 400M --evaluator naswot --n-trials 300     zero-cost, minutes
  nas search --target-flops 300M --reward hard --n-trials 40
  nas search --target-flops 400M --objective multi        Pareto front of accuracy vs cost
  nas search --target-flops 400M --storage postgresql://user:pw@host/nas --study shared
      (start the same command on several machines: they share the study's trial budget)

The multiply-adds in the reward are the deployment cost: at the genome's resolution (224
unless --resolution says otherwise), with the dataset's class count and input channels.
Proxy training runs at --proxy-resolution (32 px) on a validation split of the training
set; the test set is never used. Running the same command again resumes the study.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="search the space with Optuna for the best MnasNet reward",
        description="Search a MnasNet-style space with Optuna. Each trial samples a genome, "
                    "costs it analytically, scores it with the evaluator and records the "
                    "MnasNet reward ACC x (COST/T)^w. Writes runs/<study>/best.json, "
                    "trials.csv and the Optuna study (SQLite by default).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_argument_group("target and reward")
    target.add_argument("--target-flops", "--target", dest="target",
                        metavar="T", help="target cost T, e.g. 400M multiply-adds (with "
                        "--metric params/activations: that count; latency: 12ms or plain "
                        "milliseconds)")
    target.add_argument("--target-latency", metavar="T",
                        help="target latency on this machine, e.g. 12ms (us, ms, s): sets "
                             "--metric latency; genomes are priced by the latency table "
                             "(`nas latency build`), instantly, and the best are measured "
                             "whole at the end")
    target.add_argument("--latency-table", metavar="FILE",
                        help="latency table (default: this machine's, runs/latency/)")
    target.add_argument("--allow-foreign-table", action="store_true",
                        help="use a latency table measured on another machine (with a warning)")
    target.add_argument("--metric", choices=METRICS, default="flops",
                        help="cost in the reward: multiply-adds at deployment resolution "
                             "(default), parameters, activations, or latency predicted by "
                             "this machine's latency table (see --target-latency)")
    target.add_argument("--reward", choices=sorted(REWARD_PRESETS), default="soft",
                        help="soft: alpha=beta=-0.07 (MnasNet, EfficientNet); hard: alpha=0, "
                             "beta=-1")
    target.add_argument("--alpha", type=float, help="reward exponent at or below T (overrides --reward)")
    target.add_argument("--beta", type=float, help="reward exponent above T (overrides --reward)")
    target.add_argument("--objective", choices=("single", "multi"), default="single",
                        help="multi: NSGA-II on (accuracy, cost); reports the Pareto front")
    target.add_argument("--cost-window", type=float, default=0.1, metavar="F",
                        help="only evaluate genomes whose cost is within T x (1 +- F); the "
                             "rest are recorded as screened without training (default 0.1; "
                             "0 evaluates everything)")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--evaluator", default="proxy-train", metavar="NAME",
                            help=f"one of {', '.join(EVALUATORS)} (default proxy-train)")
    evaluation.add_argument("--dataset", default="fashion-mnist",
                            help="fashion-mnist (default), cifar10, cifar100 or imagefolder")
    evaluation.add_argument("--data", dest="data_dir", metavar="DIR",
                            help="dataset folder (default for Fashion-MNIST: "
                                 "/usr/share/datasets/fashion-mnist)")
    evaluation.add_argument("--resolution", type=int,
                            help="deployment resolution of the costs (default: the space's, 224)")
    evaluation.add_argument("--proxy-resolution", type=int, default=PROXY_DEFAULTS["resolution"],
                            help="input size of proxy training and zero-cost scoring (default %(default)s)")
    evaluation.add_argument("--proxy-subset", type=int, default=PROXY_DEFAULTS["subset"],
                            help="training images per proxy run (default %(default)s)")
    evaluation.add_argument("--proxy-epochs", type=int, default=PROXY_DEFAULTS["epochs"],
                            help="epochs per proxy run (default %(default)s)")
    evaluation.add_argument("--proxy-val-size", type=int, default=PROXY_DEFAULTS["val_size"],
                            metavar="N", help="training images held out to score proxy runs "
                                              "on, every epoch (default %(default)s)")
    evaluation.add_argument("--prescreen", choices=PRESCREENS, default="naswot",
                            help="with proxy-train: train a genome of the target window only "
                                 "if this zero-cost score reaches the median of the window's "
                                 "earlier candidates; the rest are recorded as screened "
                                 "(default naswot, which ranks genomes better than the "
                                 "3-epoch proxy; none trains every one)")
    study = parser.add_argument_group("study")
    study.add_argument("--space", dest="space_path", metavar="FILE",
                       help="search-space file (TOML/JSON); see `nas show --space`")
    study.add_argument("--n-trials", type=int,
                       help="total evaluated trials of the study, over all workers and "
                            "restarts (not in addition: a rerun finishes the remainder); "
                            f"default {DEFAULT_TRIALS}")
    study.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="time budget of this process: no trial starts that the median "
                            "trial so far says would overrun it. Given neither --n-trials "
                            f"nor --timeout, a search stops after {DEFAULT_TRIALS} trials or "
                            f"{DEFAULT_TIMEOUT // 60} minutes, whichever comes first")
    study.add_argument("--seed", type=parse_seed, default=0)
    study.add_argument("--sampler", choices=SAMPLERS,
                       help="default: tpe (seeded, multivariate); nsga2 with --objective "
                            "multi; evolution: regularized evolution (one objective)")
    study.add_argument("--population-size", type=int, default=POPULATION_SIZE, metavar="N",
                       help="evolution: the N most recent complete trials form the "
                            "population (default %(default)s)")
    study.add_argument("--tournament-size", type=int, metavar="N",
                       help="evolution: the best of N random members is mutated in one "
                            "choice (default: the whole population)")
    study.add_argument("--pruner", choices=PRUNERS, default="median",
                       help="prunes proxy training on per-epoch validation accuracy")
    study.add_argument("--study", help="study name (default: <dataset>-<target>-<evaluator>)")
    study.add_argument("--storage", metavar="URL",
                       help="Optuna storage: sqlite:///PATH, postgresql://USER:PW@HOST/DB or "
                            "journal:PATH (default: runs/<study>/study.db)")
    study.add_argument("--runs", dest="runs_dir", default="runs", help="output folder")
    study.add_argument("--jobs", type=int, default=1,
                       help="trials in parallel: starts JOBS-1 more worker processes on the "
                            "same study (for more machines, start more workers yourself)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    alpha, beta = REWARD_PRESETS[args.reward]
    alpha = alpha if args.alpha is None else args.alpha
    beta = beta if args.beta is None else args.beta
    if (args.target is None) == (args.target_latency is None):
        raise UsageError("give one target: --target-flops (e.g. 400M) or --target-latency "
                         "(e.g. 12ms)")
    if args.target_latency is not None:
        from ..latency.use import parse_duration

        if args.metric not in ("flops", "latency"):
            raise UsageError(f"--target-latency sets the metric; drop --metric {args.metric}")
        args.metric, target = "latency", parse_duration(args.target_latency)
    elif args.metric == "latency":
        from ..latency.use import parse_duration

        # plain numbers are milliseconds, as before units were accepted
        text = args.target + "ms" if args.target.replace(".", "", 1).isdigit() else args.target
        target = parse_duration(text, "--target")
    else:
        target = parse_count(args.target, "--target-flops")
    # A first search with no budget given must end on a slow laptop in minutes.
    timeout = (DEFAULT_TIMEOUT if args.n_trials is None and args.timeout is None
               else args.timeout)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    most, why = max_jobs()
    if args.jobs > most:
        raise UsageError(f"--jobs {args.jobs}: this machine runs at most {most} worker(s) "
                         f"side by side ({why}); use --jobs {most} or start workers on other "
                         "machines")
    return SearchConfig(
        target=target, metric=args.metric, alpha=alpha, beta=beta, objective=args.objective,
        evaluator=args.evaluator, dataset=args.dataset, data_dir=args.data_dir,
        resolution=args.resolution, proxy_resolution=args.proxy_resolution,
        proxy_subset=args.proxy_subset, proxy_epochs=args.proxy_epochs,
        proxy_val_size=args.proxy_val_size,
        prescreen=args.prescreen,
        n_trials=DEFAULT_TRIALS if args.n_trials is None else args.n_trials, timeout=timeout,
        seed=args.seed, sampler=args.sampler, population_size=args.population_size,
        tournament_size=args.tournament_size, pruner=args.pruner,
        cost_window=args.cost_window, study=args.study, storage=args.storage,
        runs_dir=args.runs_dir, space_path=args.space_path, latency_table=args.latency_table,
        allow_foreign_table=args.allow_foreign_table, quiet=args.quiet)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = run_search(config, jobs=args.jobs)
    print_summary(result, config)
    return exit_code() if result.interrupted else 0


def print_summary(result: SearchResult, config: SearchConfig) -> None:
    counts = result.counts
    prescreened = (f", {counts['prescreened']} in it by their {config.active_prescreen} score"
                   if config.active_prescreen else "")
    print(f"\nstudy {result.study_name}: {counts['complete'] + counts['reused']} complete "
          f"({counts['reused']} reused), {counts['pruned']} pruned, {counts['failed']} failed, "
          f"{counts['screened']} screened outside the target window{prescreened}; "
          f"{result.wall_seconds:.0f} s wall time")
    if result.out_of_time:
        print(f"stopped by the time budget ({config.timeout / 60:.0f} min) with "
              f"{counts['complete'] + counts['reused'] + counts['pruned'] + counts['failed']} of "
              f"{config.n_trials} trials done: run the same command again to continue the study")
    if result.best is None:
        print("no trial completed yet; run the same command again to continue")
        return
    attrs = result.best.user_attrs
    genome = Genome.from_dict(attrs["genome"])
    unit = "multiply-adds" if config.metric == "flops" else config.metric
    print(f"best: trial {result.best.number}, reward {attrs['reward']:.4f}, "
          f"{'accuracy' if config.evaluator == 'proxy-train' else config.evaluator + ' score'} "
          f"{attrs['accuracy']:.4f}")
    print(f"costs at the deployment resolution {genome.resolution} px: multiply-adds "
          f"{attrs['flops']:,} ({format_count(attrs['flops'])}), parameters {attrs['params']:,}, "
          f"activations {attrs['activations']:,}; target "
          f"{f'{1e3 * config.target:g} ms' if config.metric == 'latency' else format_count(config.target)} "
          f"{unit}, "
          f"{100 * (attrs['cost'] / config.target - 1):+.1f}%")
    print(genome_table(genome))
    if result.latency_measured:
        from ..latency.use import measured_table

        print(f"\nlatency of the best trials, measured whole here "
              f"({result.run_dir / 'latency.json'}):\n{measured_table(result.latency_measured)}")
    if result.pareto:
        print(f"\nPareto front ({len(result.pareto)} trials, accuracy vs {unit}):")
        for trial in result.pareto:
            print(f"  trial {trial.number:4d}  {format_count(trial.user_attrs['cost']):>8}  "
                  f"accuracy {trial.user_attrs['accuracy']:.4f}")
        print(f"written: {result.run_dir / 'pareto.json'}")
    best_path = result.run_dir / "best.json"
    print(f"\nwritten: {best_path}, {result.run_dir / 'trials.csv'}")
    print(f"next: nas scale --genome {best_path} --phi 0..7")
