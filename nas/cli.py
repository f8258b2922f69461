"""``nas``: find a small accurate network under a compute budget, then scale it.

Every subcommand lives in ``nas/commands/<name>.py`` with ``register(subparsers)``; the
registered handler receives the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from typing import Optional, Sequence

from space import NasError

from .outputs import command_outputs
from .redact import mask_url, masked_streams, register_url
from .signals import exit_code, handle_signals, stopped

# Order is the order of `nas --help`: the workflow from search to deployment.
COMMANDS = ("search", "scale", "train", "show", "dashboard", "report", "cam", "export",
            "latency", "supernet")

EXAMPLES = """\
examples:
  nas search --target-flops 400M             search on Fashion-MNIST (the default dataset)
  nas scale --genome runs/<study>/best.json --phi 0..7
  nas show --genome efficientnet-b0          Table 1 of the EfficientNet paper, with costs
  nas show --space                           the default search space and its size

environment:
  NAS_MALLOC=system                          keep glibc's malloc (default: tcmalloc where
                                             installed, up to 2.6x faster on CPU)
  NAS_HEARTBEAT_INTERVAL, NAS_HEARTBEAT_GRACE
                                             seconds (default 10, 30) before a dead
                                             worker's trial is failed and re-queued
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors become one line and exit code 2 (argparse prints the
    whole usage block first, which buries the message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, mask_url(f"{self.prog}: error: {message} (see {self.prog} --help)\n"))


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The parser of every command, or of only the command ``argv`` names: a command's
    module may import torch or optuna, which `nas show` and usage errors should not wait for."""
    parser = _Parser(prog="nas", description=__doc__.splitlines()[0].split(": ", 1)[1],
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND",
                                       parser_class=_Parser)
    # The top-level options take no values, so the first plain word is the command.
    first = next((word for word in argv or () if not word.startswith("-")), None)
    for name in [first] if first in COMMANDS else COMMANDS:
        importlib.import_module(f"nas.commands.{name}").register(subparsers)
    return parser


# argparse reads a word that starts with "-" as an option unless it is a plain negative
# number, so "--target-flops -5M" or "-1e3" failed as "expected one argument" instead of
# reaching the value's own check. No option of nas starts with a digit.
_NUMBER_WITH_A_DASH = re.compile(r"^-\.?[0-9]")
_PLAIN_NEGATIVE = re.compile(r"^-[0-9]+$|^-[0-9]*\.[0-9]+$")


def attach_dashed_values(argv: Sequence[str]) -> list[str]:
    """``["--target-flops", "-5M"]`` -> ``["--target-flops=-5M"]``, for argparse."""
    joined: list[str] = []
    for word in argv:
        previous = joined[-1] if joined else ""
        if (_NUMBER_WITH_A_DASH.match(word) and not _PLAIN_NEGATIVE.match(word)
                and previous.startswith("--") and previous != "--" and "=" not in previous):
            joined[-1] = f"{previous}={word}"
        else:
            joined.append(word)
    return joined


def main(argv: Optional[Sequence[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    argv = attach_dashed_values(argv)
    for word in argv:  # a storage URL's password: hidden from every message, usage errors too
        register_url(word.partition("=")[2] if word.startswith("-") else word)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        with handle_signals(graceful=False), masked_streams(), command_outputs():
            return int(args.handler(args) or 0)
    except NasError as error:
        print(mask_url(f"nas {args.command}: error: {error}"), file=sys.stderr)
        return 2
    except BaseException as error:
        if not stopped(error):
            raise
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return exit_code()
