"""``edgewatch registry``: the control room's list of units and their signing keys."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgewatch.events.registry import DeviceRegistry
from edgewatch.security.keys import load_verify_key

HELP = "add, revoke and list the units whose events the control room accepts"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "registry",
        help=HELP,
        description="Maintain the device registry that 'edgewatch subscribe' verifies events "
        "against (format: docs/events.md). The file is created by the first 'add'.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="register a unit's event-signing key")
    add.add_argument("--registry", type=Path, required=True, metavar="TOML")
    add.add_argument("--device-id", required=True, metavar="ID")
    add.add_argument(
        "--signing-key", type=Path, required=True, metavar="PUB", help="the unit's signing.pub"
    )
    add.set_defaults(handler=run_add)
    revoke = actions.add_parser("revoke", help="reject all further events from a unit")
    revoke.add_argument("--registry", type=Path, required=True, metavar="TOML")
    revoke.add_argument("--device-id", required=True, metavar="ID")
    revoke.set_defaults(handler=run_revoke)
    show = actions.add_parser("list", help="list registered units")
    show.add_argument("--registry", type=Path, required=True, metavar="TOML")
    show.set_defaults(handler=run_list)


def _load(path: Path) -> DeviceRegistry:
    return DeviceRegistry.load(path) if path.exists() else DeviceRegistry()


def run_add(args: argparse.Namespace) -> int:
    registry = _load(args.registry)
    registry.add(args.device_id, load_verify_key(args.signing_key, "unit signing key"))
    registry.save(args.registry)
    device = registry.devices[args.device_id]
    print(f"{args.registry}: {device.device_id} registered with key id {device.kid}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    registry = DeviceRegistry.load(args.registry)
    registry.revoke(args.device_id)
    registry.save(args.registry)
    print(f"{args.registry}: {args.device_id} revoked; its events are now rejected")
    return 0


def run_list(args: argparse.Namespace) -> int:
    for device in sorted(
        DeviceRegistry.load(args.registry).devices.values(), key=lambda d: d.device_id
    ):
        print(f"{device.device_id:<24} {device.kid}  {'REVOKED' if device.revoked else 'active'}")
    return 0
