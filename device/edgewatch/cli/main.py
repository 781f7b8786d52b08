"""Entry point: parse arguments, set up logging, run a subcommand, map errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from edgewatch import __version__
from edgewatch.cli import (
    command,
    demo,
    doctor,
    evaluate,
    fleet,
    keys,
    provision,
    registry,
    run,
    simulate,
    subscribe,
    watchlist,
)
from edgewatch.errors import EdgewatchError

SUBCOMMANDS = (
    simulate,
    run,
    doctor,
    provision,
    fleet,
    command,
    subscribe,
    watchlist,
    keys,
    registry,
    demo,
    evaluate,
)

DESCRIPTION = """\
edgewatch: a privacy-preserving edge camera appliance.

Faces are detected and matched on the device against a watch-list; the
biometric data of anyone who does not match is overwritten as soon as the
decision is made, and only match decisions leave the device.
"""

EPILOG = """\
exit codes: 0 success, 1 error, 2 bad configuration or options, 3 bad input
file, 4 camera failure, 5 model failure.
Run 'edgewatch COMMAND --help' for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgewatch",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgewatch {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output on stderr (-v info, -vv debug); never contains biometric data",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        result: int = args.handler(args)
        return result
    except EdgewatchError as exc:
        print(f"edgewatch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # A full disk, a read-only mount, a missing permission: say which file and why,
        # not a traceback. (Files are written atomically, so nothing is left half-written.)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"edgewatch: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgewatch: interrupted", file=sys.stderr)
        return 130


def console_entry() -> None:
    """The ``edgewatch`` console script."""
    sys.exit(main())
