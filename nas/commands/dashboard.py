"""``nas dashboard``: optuna-dashboard on a study, on this machine only unless told."""

from __future__ import annotations

import argparse
import sys

from ..common import UsageError
from ..dashboard import LOOPBACK, serve
from ..run import open_study
from ..study_view import count_screened
from .location import add_location_arguments, locate

EXAMPLES = """\
examples:
  nas dashboard runs/<study>                       a free port on 127.0.0.1
  nas dashboard runs/<study> --port 8080
  nas dashboard --storage postgresql://USER:PASSWORD@HOST/DB --study NAME
  nas dashboard runs/<study> --host 0.0.0.0        other machines too (no authentication!)

Click a trial to see its genome, multiply-adds, parameters, activations, accuracy and
reward (user attributes), the note with its stage table, and its artifacts: the genome
JSON and an SVG diagram of the network. Ctrl-C stops the server.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="browse a study's trials in optuna-dashboard",
        description="Start optuna-dashboard on a study's storage, on 127.0.0.1 unless --host "
                    "says otherwise, and print its URL.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_location_arguments(parser)
    parser.add_argument("--host", default=LOOPBACK, help="address to listen on (default "
                        f"{LOOPBACK}: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number (1-65535, or 0 for a free one)")
    location = locate(args, "dashboard")
    screened = count_screened(open_study(location))

    def ready(url: str) -> None:
        # Only once the socket listens: a failed start prints its one error line alone.
        if args.host != LOOPBACK:
            print(f"warning: listening on {args.host}: anyone who can reach it can read and "
                  "change the study (optuna-dashboard has no authentication)", file=sys.stderr)
        print(f"optuna-dashboard for study {location.study_name!r}: {url}", flush=True)
        if screened.total:
            print(f"it lists the evaluated trials; the {screened.total:,} screened genomes "
                  "(never trained) are counted by `nas report` and listed in trials.csv",
                  flush=True)
        print("press Ctrl-C to stop", flush=True)

    serve(location, host=args.host, port=args.port, on_ready=ready)
    print("dashboard stopped", flush=True)
    return 0
