"""``edgewatch provision``: the unit's side of provisioning (first-boot keys, the bundle)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgewatch.errors import ConfigError
from edgewatch.fileio import read_bytes
from edgewatch.provisioning.formats import parse_bundle
from edgewatch.provisioning.unit import init_unit, install_bundle, service_owner
from edgewatch.unit.layout import SERVICE_USER, UnitLayout

HELP = "on a unit: generate its keys and provisioning request, install its bundle"

DESCRIPTION = """\
The unit's side of provisioning (docs/provisioning.md).

  init      generate the unit's Ed25519 signing key, X25519 watch-list key and
            TLS key (0600, owned by the service user, never leave the unit) and
            write its provisioning request (device id, public keys, CSR) to
            /var/lib/edgewatch/provisioning/request.json. Run at first boot by
            firmware_scripts/install-unit.sh. Run again, it keeps the keys.
  install   check the bundle the back office made from that request
            ('edgewatch fleet enrol') and install it: certificates, the issuer
            keys to trust, the control room's crop key and, if there is none
            yet, /etc/edgewatch/edgewatch.toml. Then start the service:
            systemctl restart edgewatch.
"""


def _root_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="the unit's root file system (default /, the running unit)",
    )


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "provision",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="generate keys and the provisioning request")
    init.add_argument("--device-id", required=True, metavar="ID", help="the unit's id")
    _root_argument(init)
    init.set_defaults(handler=run_init)
    install = actions.add_parser("install", help="install the bundle from the back office")
    install.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle.json")
    _root_argument(install)
    install.set_defaults(handler=run_install)


def _layout(root: Path) -> UnitLayout:
    if not root.is_dir():
        raise ConfigError(f"--root {root}: not a directory")
    return UnitLayout(root)


def run_init(args: argparse.Namespace) -> int:
    layout = _layout(args.root)
    owner = service_owner(layout)
    if owner is None:
        print(
            f"edgewatch: warning: no user {SERVICE_USER!r} in {layout.under(Path('/etc/passwd'))}:"
            " files stay owned by the current user",
            file=sys.stderr,
        )
    done = init_unit(layout, args.device_id, owner)
    print(
        f"{'generated' if done.created_keys else 'kept'} the unit's keys in {layout.keys_dir}: "
        f"signing key id {done.signing_kid}, watch-list key id {done.watchlist_kid}"
    )
    print(f"provisioning request: {done.request}")
    print("next: 'edgewatch fleet enrol REQUEST' in the back office, then 'provision install'")
    return 0


def run_install(args: argparse.Namespace) -> int:
    layout = _layout(args.root)
    if not layout.request.exists():
        raise ConfigError(
            f"{layout.request}: no provisioning request; run 'edgewatch provision init' first"
        )
    bundle = parse_bundle(read_bytes(args.bundle, "bundle"), str(args.bundle))
    for line in install_bundle(layout, bundle, service_owner(layout)):
        print(f"installed: {line}")
    print(
        f"unit {bundle.device_id} is provisioned for fleet {bundle.fleet}; broker "
        f"{bundle.broker.host}:{bundle.broker.port}. Start it: systemctl restart edgewatch"
    )
    return 0
