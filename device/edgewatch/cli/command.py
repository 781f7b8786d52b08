"""``edgewatch command``: the issuer sends a unit a watch-list or the end of a deployment."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

from edgewatch.cli.keys import passphrase_from_env
from edgewatch.cli.options import (
    add_broker_arguments,
    broker_address,
    broker_credentials,
    common_name,
)
from edgewatch.errors import ConfigError
from edgewatch.fileio import read_bytes
from edgewatch.security.keys import load_signing_key
from edgewatch.transport.oneshot import publish_retained
from edgewatch.transport.topics import DEFAULT_PREFIX, check_identity, check_prefix, command_topic
from edgewatch.unit.commands import MAX_VALIDITY, is_watchlist, sign_command
from edgewatch.watchlist.format import WatchlistFormatError, parse

HELP = "issuer: send a unit a watch-list, or end a deployment, over MQTT"

DESCRIPTION = """\
Send one unit a message on its command topic, <prefix>/<unit>/command
(docs/commands.md), retained so that a unit offline now gets it when it next
connects. Needs a client certificate that the broker's ACL lets send commands
(the fleet's 'issuer' client).

  watchlist        the encrypted, signed watch-list file as issued ('watchlist
                   build'); the unit checks it exactly as one installed by file
  end-deployment   a command signed with the issuer's key: the unit overwrites
                   the deployment's templates, deletes its watch-list file,
                   refuses that deployment's lists from then on and reports it
                   in a signed audit event (watchlist_ended)
"""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "command",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    send = actions.add_parser("watchlist", help="send a watch-list file as issued")
    send.add_argument("file", type=Path, metavar="FILE", help="the .ewl file")
    _common(send)
    send.set_defaults(handler=run_watchlist)
    end = actions.add_parser("end-deployment", help="end a deployment on a unit")
    end.add_argument("--deployment", required=True, metavar="ID", help="the deployment id")
    end.add_argument("--reason", required=True, help="why, for the audit trail")
    end.add_argument("--issuer-key", type=Path, required=True, metavar="KEY")
    end.add_argument("--passphrase-env", metavar="VAR", help="the issuer key's passphrase")
    end.add_argument(
        "--valid-days",
        type=float,
        default=7.0,
        metavar="D",
        help=f"how long a unit may still act on it (default 7, at most {MAX_VALIDITY.days})",
    )
    _common(end)
    end.set_defaults(handler=run_end)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", required=True, metavar="ID", help="the unit's device id")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (%(default)s)")
    add_broker_arguments(parser)


def _send(args: argparse.Namespace, payload: bytes) -> str:
    host, port = broker_address(args.broker)
    topic = command_topic(check_prefix(args.prefix), check_identity(args.unit, "--unit"))
    credentials = broker_credentials(args)
    publish_retained(host, port, credentials, common_name(args.cert), topic, payload)
    return topic


def run_watchlist(args: argparse.Namespace) -> int:
    data = read_bytes(args.file, "watch-list")
    if not is_watchlist(data):
        raise ConfigError(f"{args.file}: not a watch-list file (built by 'watchlist build')")
    try:
        header = parse(data).header
    except WatchlistFormatError as exc:
        raise ConfigError(f"{args.file}: {exc}") from None
    topic = _send(args, data)
    print(
        f"sent watch-list {header.watchlist_id} v{header.version} (deployment "
        f"{header.deployment.id}) to {topic}, retained; the unit reports it in an audit event"
    )
    return 0


def run_end(args: argparse.Namespace) -> int:
    key = load_signing_key(args.issuer_key, "issuer key", passphrase_from_env(args.passphrase_env))
    message = sign_command(
        key,
        "end_deployment",
        check_identity(args.unit, "--unit"),
        check_identity(args.deployment, "--deployment"),
        args.reason,
        timedelta(days=args.valid_days),
    )
    topic = _send(args, message)
    print(
        f"sent end of deployment {args.deployment} to {topic}, retained; the unit reports "
        "watchlist_ended in a signed audit event"
    )
    return 0
