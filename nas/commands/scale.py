"""``nas scale``: grow a baseline genome into a family (B0..B7) and write it to disk."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Optional

from scaling import (DEFAULT_CANDIDATES, METHODS, Coefficients, GridResult, grid_search,
                     resolve_coefficients)
from space import Genome, presets

from ..common import UsageError, check_writable_dir, load_genome, parse_seed
from ..family import (CostContext, cost_context, family_files, family_table, grid_csv,
                      grid_table, grow, nan_on_failure)
from ..outputs import publish
from ..settings import ProxySettings, add_options, from_args, usage_errors

EXAMPLES = """\
examples:
  nas scale --genome efficientnet-b0 --phi 0..7 --method official
  nas scale --genome runs/<study>/best.json --phi 0..7          (compound, 1.2/1.1/1.15)
  nas scale --genome best.json --phi 0,2,4 --method fast --alpha 0.8 --out family/
  nas scale --genome best.json --phi 3 --method width            (width alone, 8x multiply-adds)
  nas scale --genome best.json --grid --evaluator naswot --out grid/
  nas scale --genome best.json --phi 0..7 --coefficients grid/coefficients.json
"""

# A phi past this cannot give a genome that space.Genome accepts with any method (the
# layer and channel limits are hit long before), so larger ranges are typos.
MAX_PHI = 64

_BATCH_FLAG = {"batch_size": "--batch-size"}  # the grid's batch flag has no proxy- prefix
_PHI_ITEM = re.compile(r"^(\d+)(?:\.\.(\d+))?$")


def register(subparsers) -> None:
    # Over 60 lines only because each option is declared here with its help text: one
    # declaration per flag reads better than groups split across helper functions.
    parser = subparsers.add_parser(
        "scale", help="grow a genome into a B0..B7 family (compound, official, fast scaling)",
        description="Scale a baseline genome into a family: compound scaling (depth "
                    "alpha^phi, width beta^phi, resolution gamma^phi; EfficientNet), the "
                    "published EfficientNet B0..B7 table, fast compound scaling (Dollar et "
                    "al. 2021) or one dimension alone. Writes b<phi>.json, family.json, "
                    "family.csv and a plot (family.png, family.html) into --out, and prints "
                    "each member's multipliers and costs. With --grid, searches alpha, "
                    "beta, gamma at phi = 1 with a proxy evaluator first and saves them "
                    "to coefficients.json.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", required=True, metavar="G",
                        help="preset name (efficientnet-b0, mnasnet-a1) or genome JSON file")
    parser.add_argument("--phi", metavar="PHIS",
                        help="members to build: 3, 0..7 or 0,2,4 (required unless --grid)")
    parser.add_argument("--method", choices=METHODS, default="compound",
                        help="default: compound")
    parser.add_argument("--alpha", type=float, help="compound: depth coefficient (default "
                        "1.2); fast: width share a in [0, 1] (default 0.8)")
    parser.add_argument("--beta", type=float, help="compound: width coefficient (default 1.1)")
    parser.add_argument("--gamma", type=float,
                        help="compound: resolution coefficient (default 1.15)")
    parser.add_argument("--coefficients", metavar="FILE",
                        help="compound alpha/beta/gamma from a JSON file (as --grid writes)")
    parser.add_argument("--num-classes", type=int,
                        help="classes for the reported costs (default: the genome's search "
                             "context, which a searched best.json records; else 1000, as "
                             "the papers)")
    parser.add_argument("--in-channels", type=int,
                        help="input channels for the reported costs (default: the genome's "
                             "search context; else 3)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: the genome "
                        "file's folder; runs/<preset>-family/ for a preset)")
    latency = parser.add_argument_group("scaling to latency budgets (instead of --phi)")
    latency.add_argument("--target-latency", metavar="LIST",
                         help="budgets on this machine, e.g. 10ms,20ms,40ms: per budget the "
                              "largest member (phi need not be whole) that the latency table "
                              "predicts to meet it, then measured whole; writes latency.json")
    latency.add_argument("--latency-table", metavar="FILE",
                         help="latency table (default: this machine's, runs/latency/); "
                              "entries a member lacks are measured into it")
    latency.add_argument("--allow-foreign-table", action="store_true",
                         help="use a table measured on another machine (with a warning)")
    grid = parser.add_argument_group("coefficient grid search (EfficientNet Section 4)")
    grid.add_argument("--grid", action="store_true",
                      help="search alpha, beta, gamma at phi = 1 before scaling")
    grid.add_argument("--grid-values", metavar="LIST",
                      help="values each coefficient may take (default "
                           f"{','.join(f'{v:g}' for v in DEFAULT_CANDIDATES)})")
    grid.add_argument("--tolerance", type=float, default=0.05,
                      help="keep triples with alpha*beta^2*gamma^2 within this fraction of 2 "
                           "(default 0.05)")
    grid.add_argument("--evaluator", default="naswot", metavar="NAME",
                      help="proxy evaluator that scores each phi = 1 model: naswot (default), "
                           "synflow, grad-norm or proxy-train")
    grid.add_argument("--dataset",
                      help="dataset for the evaluator (default: the one the genome was searched "
                           "on, which a searched best.json records; else fashion-mnist)")
    grid.add_argument("--data", dest="data_dir", metavar="DIR",
                      help="dataset folder (default: the dataset's standard location)")
    # The proxy protocol's options and defaults are ProxySettings', as in `nas search`.
    add_options(grid, ProxySettings, prefix="proxy-", only=("resolution", "subset", "epochs",
                                                            "val_size"),
                helps={"resolution": "evaluation pixels of the base genome; a member is "
                                     "evaluated at this times its resolution multiplier "
                                     "(default %(default)s)"})
    add_options(grid, ProxySettings, prefix="proxy-", only=("batch_size",),
                flags=_BATCH_FLAG, defaults={"batch_size": None},
                helps={"batch_size": "images per zero-cost batch (default 64) or "
                                     f"proxy-training batch (default {ProxySettings.batch_size})"})
    grid.add_argument("--seed", type=parse_seed, default=0, help="evaluator seed (default 0)")
    parser.set_defaults(handler=run)


def parse_phis(text: str) -> list[int]:
    """``"3"`` -> [3]; ``"0..7"`` -> [0, ..., 7]; ``"0,2,4"`` -> [0, 2, 4]; items may mix
    (``"0,3..5"``). Whole numbers from 0 to :data:`MAX_PHI`, each once; returned sorted."""
    phis: list[int] = []
    for item in str(text).split(","):
        item = item.strip()
        match = _PHI_ITEM.match(item)
        if not match:
            hint = (" (phi 0 is the base genome; negative phi would shrink it)"
                    if item.startswith("-") else "")
            raise UsageError(f"--phi {text!r}: {item!r} is not a whole number >= 0 or a range "
                             f"like 0..7{hint}")
        # Before int(): Python refuses to convert more than 4,300 digits.
        if any(len(number) > 6 for number in match.groups() if number):
            raise UsageError(f"--phi: {item[:20]}{'...' if len(item) > 20 else ''} is too "
                             f"large; the largest phi is {MAX_PHI}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise UsageError(f"--phi {text!r}: the range {item} runs backwards; write "
                             f"{last}..{first}")
        if last > MAX_PHI:
            raise UsageError(f"--phi {text!r}: phi {last} is too large; the largest is {MAX_PHI}")
        for phi in range(first, last + 1):
            if phi in phis:
                raise UsageError(f"--phi {text!r}: phi {phi} is listed twice")
            phis.append(phi)
    return sorted(phis)


def _default_out(spec: str) -> Path:
    if spec in presets.names():
        return Path("runs") / f"{spec}-family"
    return Path(spec).parent


def _coefficient_args(args: argparse.Namespace) -> dict[str, Optional[float]]:
    given = {"alpha": args.alpha, "beta": args.beta, "gamma": args.gamma}
    if args.coefficients is None:
        return given
    if args.method != "compound":
        raise UsageError("--coefficients holds compound-scaling coefficients; use it with "
                         "--method compound")
    if any(value is not None for value in given.values()) or args.grid:
        raise UsageError("give either --coefficients or --alpha/--beta/--gamma/--grid, not both")
    return Coefficients.from_json(args.coefficients).to_dict()


def _parse_values(text: Optional[str]) -> tuple[float, ...]:
    if text is None:
        return DEFAULT_CANDIDATES
    try:
        return tuple(float(item) for item in text.split(","))
    except ValueError:
        raise UsageError(f"--grid-values {text!r}: expected numbers separated by commas, "
                         "e.g. 1,1.1,1.2") from None


def run(args: argparse.Namespace) -> int:
    phis = parse_phis(args.phi) if args.phi is not None else None
    if args.target_latency is not None and (phis is not None or args.grid):
        raise UsageError("--target-latency chooses the members itself; drop --phi and --grid")
    if phis is None and not args.grid and args.target_latency is None:
        raise UsageError("--phi is required (e.g. --phi 0..7), unless --grid only searches "
                         "the coefficients or --target-latency chooses the members")
    if (args.num_classes is not None and args.num_classes < 1) or \
            (args.in_channels is not None and args.in_channels < 1):
        raise UsageError("--num-classes and --in-channels must be >= 1")
    if args.grid and (args.method != "compound" or any(
            value is not None for value in (args.alpha, args.beta, args.gamma))):
        raise UsageError("--grid searches the compound coefficients; drop --method, --alpha, "
                         "--beta and --gamma")
    genome = load_genome(args.genome)
    context = cost_context(genome, args.num_classes, args.in_channels)
    coefficients = resolve_coefficients(args.method, **_coefficient_args(args))
    out = Path(args.out) if args.out else _default_out(args.genome)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a folder")
    budgets = None
    if args.target_latency is not None:
        from ..latency.use import LatencyBudgets

        budgets = LatencyBudgets(genome, args.target_latency, table=args.latency_table,
                                 allow_foreign=args.allow_foreign_table, method=args.method,
                                 coefficients=coefficients, num_classes=context.num_classes,
                                 in_channels=context.in_channels)
        phis = budgets.phis
    files: dict[str, bytes] = {}
    if args.grid:
        result = _grid(args, genome, context)
        coefficients = result.coefficients.to_dict()
        files["coefficients.json"] = result.coefficients.to_json().encode()
        files["grid.csv"] = grid_csv(result).encode()
    if phis is not None:
        grown = grow(genome, phis, args.method, coefficients, context)
        print(family_table(grown))
        files.update(family_files(grown))
    if budgets is not None:
        files["latency.json"] = budgets.report(grown.members)
    _check_not_input(out, files, args.genome)
    check_writable_dir(out)
    # All files or none: a full disk or a signal never leaves a family mixed from two runs.
    publish({out / name: data for name, data in files.items()})
    print(f"\nwrote {', '.join(files)} to {out}/")
    return 0


def _check_not_input(out: Path, files: dict[str, bytes], genome_spec: str) -> None:
    source = Path(genome_spec)
    if genome_spec in presets.names() or not source.exists():
        return
    for name in files:
        target = out / name
        if target.exists() and target.resolve() == source.resolve():
            raise UsageError(f"writing {name} into {str(out)!r} would overwrite the input "
                             f"genome {genome_spec!r}; pass another --out")


# -- grid search -------------------------------------------------------------------------


def _grid(args: argparse.Namespace, genome: Genome, context: CostContext) -> GridResult:
    # Imported here: the evaluators pull in the data and training code, which plain
    # scaling never needs.
    from ..evaluators import make_evaluator

    with usage_errors(ProxySettings, prefix="proxy-", flags=_BATCH_FLAG):
        proxy = from_args(ProxySettings, args, prefix="proxy-")
    dataset = args.dataset or (genome.context.dataset if genome.context else "fashion-mnist")
    evaluator = make_evaluator(args.evaluator, dataset=dataset, data_dir=args.data_dir,
                               proxy=proxy, batch_size=args.proxy_batch_size, seed=args.seed)
    result = grid_search(genome, nan_on_failure(evaluator),
                         candidates=_parse_values(args.grid_values), tolerance=args.tolerance,
                         num_classes=context.num_classes, in_channels=context.in_channels,
                         progress=True)
    print(grid_table(result, args.evaluator, args.tolerance))
    return result
