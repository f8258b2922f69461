"""``nas report``: a study as one self-contained HTML page with PNG copies of its figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import UsageError, check_writable_dir
from ..run import RunFolder
from ..outputs import check_target
from ..report import collect, write_report
from .location import add_location_arguments, locate

EXAMPLES = """\
examples:
  nas report runs/<study>                       writes runs/<study>/report.html
  nas report runs/<study> --out ~/b0-search.html
  nas report --storage postgresql://USER:PASSWORD@HOST/DB --study NAME --out report.html

The page opens offline (plotly.js is embedded). PNG copies of its figures, and the best
architecture as SVG, go to <report name>-figures/ beside it. Scaled families
(family.json from `nas scale --out runs/<study>/<name>`) in the run folder are plotted
against phi, with accuracy where members have a metrics.json from `nas train`.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a study, with PNG figures",
        description="Summarize a study: optimization history, accuracy and reward against "
                    "the cost with the target and the Pareto front, stage-choice importances, "
                    "the best architecture (diagram and table), trial states and durations, "
                    "and scaled families when the run folder holds any.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_location_arguments(parser)
    parser.add_argument("--out", metavar="FILE", help="the HTML file (default: "
                        "RUN_DIR/report.html)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    location = locate(args, "report")
    if args.out is not None:
        out = Path(args.out)
        if out.is_dir() or out.suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"--out {args.out!r} must be an .html file name")
    elif location.run_dir is not None:
        out = RunFolder(location.run_dir).report_html
    else:
        raise UsageError("this storage is not a run folder; say where the page goes with "
                         "--out FILE.html")
    check_writable_dir(out.parent, "report folder")
    check_target(out)  # a device or a FIFO is refused before the figures are drawn
    report = collect(location)
    written = write_report(report, out)
    print(f"report: {written[0]}")
    print(f"figures: {written[1].parent}/ ({', '.join(p.name for p in written[1:])})"
          if len(written) > 1 else "figures: none")
    return 0
