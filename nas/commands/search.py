"""``nas search``: find the genome with the best MnasNet reward under a compute target."""

from __future__ import annotations

import argparse

from ..common import UsageError, format_count, parse_count
from ..memory import max_jobs
from ..reward import REWARD_PRESETS
from ..run import RunFolder
from ..search_config import DEFAULT_TIMEOUT, SearchConfig
from ..settings import add_options, from_args, usage_errors
from ..signals import exit_code
from ..trial import TrialRecord
from .show import genome_table

EXAMPLES = """\
examples:
  nas search --target-flops 400M                          proxy training on Fashion-MNIST
  nas search --target-flops 400M --evaluator naswot --n-trials 300     zero-cost, minutes
  nas search --target-flops 300M --reward hard --n-trials 40
  nas search --target-flops 400M --objective multi        Pareto front of accuracy vs cost
  nas search --target-flops 400M --confirm-top 3          re-train the 3 best 5x longer,
      2 seeds, and choose best.json by that; --references none skips B0 and MnasNet-A1
  nas search --target-flops 400M --storage postgresql://user:pw@host/nas --study shared
      (start the same command on several machines: they share the study's trial budget)

The multiply-adds in the reward are the deployment cost: at the genome's resolution (224
unless --resolution says otherwise), with the dataset's class count and input channels.
Proxy training runs at --proxy-resolution (32 px) on a validation split of the training
set; the test set is never used. Running the same command again resumes the study.
"""

# The flag of a setting that no generated option carries, for the errors that name it.
_FLAGS = {"target": "--target-flops"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="search the space with Optuna for the best MnasNet reward",
        description="Search a MnasNet-style space with Optuna. Each trial samples a genome, "
                    "costs it analytically, scores it with the evaluator and records the "
                    "MnasNet reward ACC x (COST/T)^w. Writes runs/<study>/best.json, "
                    "trials.csv and the Optuna study (SQLite by default).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The target takes units, and --reward presets alpha and beta: parsed here, not fields.
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
    target.add_argument("--reward", choices=sorted(REWARD_PRESETS), default="soft",
                        help="soft: alpha=beta=-0.07 (MnasNet, EfficientNet); hard: alpha=0, "
                             "beta=-1")
    groups = add_options(parser, SearchConfig, groups={"target and reward": target},
                         defaults={"alpha": None, "beta": None, "n_trials": None})
    groups["study"].add_argument(
        "--jobs", type=int, default=1,
        help="trials in parallel: starts JOBS-1 more worker processes on the same study (for "
             "more machines, start more workers yourself)")
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The search the arguments ask for; bad values are usage errors naming their flags."""
    preset = dict(zip(("alpha", "beta"), REWARD_PRESETS[args.reward]))
    given = {name: preset[name] for name in preset if getattr(args, name) is None}
    if (args.target is None) == (args.target_latency is None):
        raise UsageError("give one target: --target-flops (e.g. 400M) or --target-latency "
                         "(e.g. 12ms)")
    given["metric"], given["target"] = _target(args)
    # A first search with no budget given must end on a slow laptop in minutes.
    if args.n_trials is None and args.timeout is None:
        given["timeout"] = DEFAULT_TIMEOUT
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    most, why = max_jobs()
    if args.jobs > most:
        raise UsageError(f"--jobs {args.jobs}: this machine runs at most {most} worker(s) "
                         f"side by side ({why}); use --jobs {most} or start workers on other "
                         "machines")
    with usage_errors(SearchConfig, flags=_FLAGS):
        return from_args(SearchConfig, args, **given)


def _target(args: argparse.Namespace) -> tuple[str, float]:
    """The metric and the target in its unit (seconds for latency)."""
    if args.target_latency is not None:
        from ..latency.use import parse_duration

        if args.metric not in ("flops", "latency"):
            raise UsageError(f"--target-latency sets the metric; drop --metric {args.metric}")
        return "latency", parse_duration(args.target_latency)
    if args.metric == "latency":
        from ..latency.use import parse_duration

        # plain numbers are milliseconds, as before units were accepted
        text = args.target + "ms" if args.target.replace(".", "", 1).isdigit() else args.target
        return "latency", parse_duration(text, "--target")
    return args.metric, parse_count(args.target, "--target-flops")


def run(args: argparse.Namespace) -> int:
    from ..search import run_search  # Optuna and torch: after the flags are checked

    config = config_from_args(args)
    with usage_errors(SearchConfig, flags=_FLAGS):
        result = run_search(config, jobs=args.jobs)
    print_summary(result, config)
    return exit_code() if result.interrupted else 0


def _references(counts: dict) -> str:
    n = counts.get("reference", 0)
    return f", {n} reference network{'s' if n != 1 else ''} outside the budget" if n else ""


def print_summary(result, config: SearchConfig) -> None:
    """What ``result`` (a :class:`nas.search.SearchResult`) found."""
    counts, files = result.counts, RunFolder(result.run_dir)
    prescreened = (f", {counts['prescreened']} in it by their {config.active_prescreen} score"
                   if config.active_prescreen else "")
    print(f"\nstudy {result.study_name}: {counts['complete']} complete "
          f"({counts['reused']} reused), {counts['pruned']} pruned, {counts['failed']} failed, "
          f"{counts['screened']} screened outside the target window{prescreened}"
          f"{_references(counts)}; {result.wall_seconds:.0f} s wall time")
    if result.out_of_time:
        print(f"stopped by the time budget ({config.timeout / 60:.0f} min) with "
              f"{counts['complete'] + counts['pruned'] + counts['failed']} of "
              f"{config.n_trials} trials done: run the same command again to continue the study")
    if result.best is None:
        print("no trial completed yet; run the same command again to continue")
        return
    attrs, genome = result.best.user_attrs, TrialRecord(result.best).genome
    unit = "multiply-adds" if config.metric == "flops" else config.metric
    print(f"best: trial {result.best.number}, reward {attrs['reward']:.4f}, "
          f"{'accuracy' if config.evaluator_is_accuracy else config.evaluator + ' score'} "
          f"{attrs['accuracy']:.4f}")
    print(f"costs at the deployment resolution {genome.resolution} px: multiply-adds "
          f"{attrs['flops']:,} ({format_count(attrs['flops'])}), parameters {attrs['params']:,}, "
          f"activations {attrs['activations']:,}; target "
          f"{f'{1e3 * config.target:g} ms' if config.metric == 'latency' else format_count(config.target)} "
          f"{unit}, "
          f"{100 * (attrs['cost'] / config.target - 1):+.1f}%")
    print(genome_table(genome))
    if result.selection is not None:
        print("\n" + "\n".join(result.selection.lines()))
    if result.latency_measured:
        from ..latency.use import measured_table

        print(f"\nlatency of the best trials, measured whole here "
              f"({files.latency_json}):\n{measured_table(result.latency_measured)}")
    if result.pareto:
        print(f"\nPareto front ({len(result.pareto)} trials, accuracy vs {unit}):")
        for trial in result.pareto:
            print(f"  trial {trial.number:4d}  {format_count(trial.user_attrs['cost']):>8}  "
                  f"accuracy {trial.user_attrs['accuracy']:.4f}")
        print(f"written: {files.pareto_json}")
    print(f"\nwritten: {files.best_json}, {files.selection_json}, {files.trials_csv}")
    print(f"next: nas scale --genome {files.best_json} --phi 0..7")
