"""``nas scale``: grow a baseline genome into a family (B0..B7) and write it to disk."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

from scaling import (DEFAULT_CANDIDATES, METHODS, Coefficients, GridResult, Member,
                     coefficient_warning, family, grid_search, resolve_coefficients)
from space import Genome, presets

from ..common import (UsageError, check_writable_dir, format_count, format_table, load_genome,
                      parse_seed)
from ..outputs import publish

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

logger = logging.getLogger(__name__)

_PHI_ITEM = re.compile(r"^(\d+)(?:\.\.(\d+))?$")


def register(subparsers) -> None:
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
    parser.add_argument("--num-classes", type=int, default=1000,
                        help="classes for the reported costs (default 1000, as the papers)")
    parser.add_argument("--in-channels", type=int, default=3,
                        help="input channels for the reported costs (default 3)")
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
    grid.add_argument("--dataset", default="fashion-mnist",
                      help="dataset for the evaluator (default fashion-mnist)")
    grid.add_argument("--data", dest="data_dir", metavar="DIR",
                      help="dataset folder (default: the dataset's standard location)")
    grid.add_argument("--proxy-resolution", type=int, default=32,
                      help="evaluation pixels of the base genome; a member is evaluated at "
                           "this times its resolution multiplier (default 32)")
    grid.add_argument("--batch-size", type=int, help="images per zero-cost batch (default 64) "
                      "or proxy-training batch (default 256)")
    grid.add_argument("--proxy-subset", type=int, default=10000,
                      help="proxy-train: training images (default 10000)")
    grid.add_argument("--proxy-epochs", type=int, default=3,
                      help="proxy-train: epochs (default 3)")
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
    if args.num_classes < 1 or args.in_channels < 1:
        raise UsageError("--num-classes and --in-channels must be >= 1")
    if args.grid and (args.method != "compound" or any(
            value is not None for value in (args.alpha, args.beta, args.gamma))):
        raise UsageError("--grid searches the compound coefficients; drop --method, --alpha, "
                         "--beta and --gamma")
    genome = load_genome(args.genome)
    coefficients = resolve_coefficients(args.method, **_coefficient_args(args))
    out = Path(args.out) if args.out else _default_out(args.genome)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a folder")
    budgets = None
    if args.target_latency is not None:
        from ..latency.use import LatencyBudgets

        budgets = LatencyBudgets(genome, args.target_latency, table=args.latency_table,
                                 allow_foreign=args.allow_foreign_table, method=args.method,
                                 coefficients=coefficients, num_classes=args.num_classes,
                                 in_channels=args.in_channels)
        phis = budgets.phis
    files: dict[str, bytes] = {}
    if args.grid:
        result = _grid(args, genome)
        coefficients = result.coefficients.to_dict()
        files["coefficients.json"] = result.coefficients.to_json().encode()
        files["grid.csv"] = _grid_csv(result).encode()
    if phis is not None:
        members = family(genome, phis, args.method, **coefficients,
                         num_classes=args.num_classes, in_channels=args.in_channels)
        _print_family(genome, args, coefficients, members)
        files.update(_family_files(genome, args, coefficients, members))
    if budgets is not None:
        files["latency.json"] = budgets.report(members)
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


def _grid(args: argparse.Namespace, genome: Genome) -> GridResult:
    candidates = _parse_values(args.grid_values)
    evaluate = _make_evaluate(args)
    result = grid_search(genome, evaluate, candidates=candidates, tolerance=args.tolerance,
                         num_classes=args.num_classes, in_channels=args.in_channels,
                         progress=True)
    print(f"grid search at phi = 1 with the {args.evaluator} evaluator: {len(result.rows)} "
          f"triples with alpha*beta^2*gamma^2 within {args.tolerance:.0%} of 2")
    print(format_table(
        ["alpha", "beta", "gamma", "a*b^2*g^2", "multiply-adds", "score", ""],
        [[f"{row.alpha:g}", f"{row.beta:g}", f"{row.gamma:g}", f"{row.product:.3f}",
          format_count(row.flops), f"{row.score:.4f}", "<- chosen" if row == result.best else ""]
         for row in result.rows]))
    best = result.best
    print(f"chosen: alpha {best.alpha:g}, beta {best.beta:g}, gamma {best.gamma:g} "
          f"(alpha*beta^2*gamma^2 = {best.product:.3f}, score {best.score:.4f})\n")
    return result


def _make_evaluate(args: argparse.Namespace) -> Callable[[Genome], float]:
    # Imported here: the evaluators pull in the data and training code, which plain
    # scaling never needs.
    from ..evaluators import EvaluationFailed, make_evaluator

    evaluator = make_evaluator(args.evaluator, dataset=args.dataset, data_dir=args.data_dir,
                               resolution=args.proxy_resolution, subset=args.proxy_subset,
                               epochs=args.proxy_epochs, batch_size=args.batch_size,
                               seed=args.seed)

    def evaluate(genome: Genome) -> float:
        try:
            return evaluator.evaluate(genome)
        except EvaluationFailed as error:
            # One bad grid point should not end the search; NaN never wins (grid_search).
            logger.warning("%s: evaluation failed (%s); scored NaN", genome.name, error.reason)
            return math.nan

    return evaluate


def _grid_csv(result: GridResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["alpha", "beta", "gamma", "product", "flops", "score", "chosen"])
    for row in result.rows:
        writer.writerow([row.alpha, row.beta, row.gamma, f"{row.product:.6f}", row.flops,
                         row.score, int(row == result.best)])
    return buffer.getvalue()


# -- the family ---------------------------------------------------------------------------


def _describe(method: str, coefficients: dict[str, float]) -> str:
    if method == "compound":
        a, b, g = coefficients["alpha"], coefficients["beta"], coefficients["gamma"]
        return (f"compound scaling, alpha {a:g}, beta {b:g}, gamma {g:g} "
                f"(alpha*beta^2*gamma^2 = {a * b * b * g * g:.3f})")
    if method == "fast":
        return f"fast compound scaling, a = {coefficients['alpha']:g} (multiply-adds x2 per phi)"
    if method == "official":
        return "the official EfficientNet B0-B7 table"
    return f"{method} alone (multiply-adds x2 per phi)"


def _print_family(genome: Genome, args: argparse.Namespace, coefficients: dict[str, float],
                  members: Sequence[Member]) -> None:
    print(f"{genome.name or 'genome'} scaled with {_describe(args.method, coefficients)}; "
          f"costs per image at each member's resolution, {args.in_channels} input "
          f"channel(s), {args.num_classes} classes")
    if args.method == "compound":
        warning = coefficient_warning(**coefficients)
        if warning:
            print(f"warning: {warning}")
    print(format_table(
        ["phi", "name", "resolution", "depth", "width", "res", "multiply-adds", "params",
         "activations", "vs b0"],
        [[m.phi, m.name, m.resolution, f"{m.depth_multiplier:.3f}",
          f"{m.width_multiplier:.3f}", f"{m.resolution_multiplier:.3f}",
          format_count(m.cost.flops), format_count(m.cost.params),
          format_count(m.cost.activations), f"{m.flops_ratio:.2f}x"] for m in members]))


def _member_file(member: Member) -> str:
    return f"b{member.phi:g}.json"


def _family_files(genome: Genome, args: argparse.Namespace, coefficients: dict[str, float],
                  members: Sequence[Member]) -> dict[str, bytes]:
    files = {_member_file(m): (m.genome.to_json() + "\n").encode() for m in members}
    rows = [{"phi": m.phi, "name": m.name, "file": _member_file(m),
             "depth_multiplier": m.depth_multiplier, "width_multiplier": m.width_multiplier,
             "resolution_multiplier": m.resolution_multiplier, "resolution": m.resolution,
             "flops": m.cost.flops, "params": m.cost.params,
             "activations": m.cost.activations, "flops_ratio": m.flops_ratio}
            for m in members]
    summary = {"method": args.method, "coefficients": coefficients, "base": genome.to_dict(),
               "num_classes": args.num_classes, "in_channels": args.in_channels,
               "members": rows}
    files["family.json"] = (json.dumps(summary, indent=2) + "\n").encode()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files["family.csv"] = buffer.getvalue().encode()
    title = f"{genome.name or 'genome'}: {_describe(args.method, coefficients)}"
    files["family.png"] = _plot_png(members, title)
    files["family.html"] = _plot_html(members, title).encode()
    return files


_SERIES = (("multiply-adds", lambda m: m.cost.flops), ("parameters", lambda m: m.cost.params),
           ("activations", lambda m: m.cost.activations))


def _plot_png(members: Sequence[Member], title: str) -> bytes:
    # The Figure API without pyplot: no global figure state, no display backend needed.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.2), layout="constrained")
    phis = [m.phi for m in members]
    for axis, (label, value) in zip(figure.subplots(1, 3), _SERIES):
        axis.plot(phis, [value(m) for m in members], marker="o", label=label)
        if label == "multiply-adds":
            base = members[0].cost.flops / members[0].flops_ratio
            axis.plot(phis, [base * 2 ** phi for phi in phis], linestyle="--", color="grey",
                      label="2^phi x B0")
            axis.legend()
        axis.set_yscale("log")
        axis.set_xlabel("phi")
        axis.set_title(label)
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _plot_html(members: Sequence[Member], title: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=3, subplot_titles=[label for label, _ in _SERIES])
    phis = [m.phi for m in members]
    names = [f"{m.name} ({m.resolution}px)" for m in members]
    for column, (label, value) in enumerate(_SERIES, start=1):
        figure.add_trace(go.Scatter(x=phis, y=[value(m) for m in members], mode="lines+markers",
                                    name=label, text=names,
                                    hovertemplate="%{text}<br>phi %{x}<br>%{y:,}<extra>"
                                                  f"{label}</extra>"), row=1, col=column)
        figure.update_yaxes(type="log", row=1, col=column)
        figure.update_xaxes(title_text="phi", row=1, col=column)
    base = members[0].cost.flops / members[0].flops_ratio
    figure.add_trace(go.Scatter(x=phis, y=[base * 2 ** phi for phi in phis], mode="lines",
                                name="2^phi x B0", line={"dash": "dash", "color": "grey"}),
                     row=1, col=1)
    figure.update_layout(title_text=title, height=460)
    # include_plotlyjs=True embeds plotly.js, so the file opens offline.
    return figure.to_html(include_plotlyjs=True, full_html=True)
