"""``edgewatch fleet``: the back office's CA, device registry, recipient list and bundles."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgewatch.errors import ConfigError
from edgewatch.provisioning.fleet import Fleet, FleetSettings
from edgewatch.validation import validated

HELP = "back office: create a fleet, enrol and revoke units (CA, registry, recipients)"

DESCRIPTION = """\
The back office's side of provisioning (docs/provisioning.md). A fleet is a
directory: the fleet CA, the broker's files, the subscriber's device registry,
the watch-list issuer's recipient list and one folder per unit.

  init     create a fleet: CA, broker certificate and configuration (broker/,
           to install on the broker host), client certificates for the control
           room's reader and for the issuer (who sends commands)
  enrol    sign a unit's provisioning request: client certificate, registry,
           recipient list, and the bundle the unit installs
  revoke   refuse a unit everywhere in one step: its certificate on the CRL,
           revoked in the registry, out of the recipient list
  list     the fleet's units and their state
  crl      re-issue the CRL (do it monthly: an expired CRL locks every client out)
"""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "fleet",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    init = actions.add_parser("init", help="create a fleet directory")
    init.add_argument("--fleet", type=Path, required=True, metavar="DIR")
    init.add_argument("--name", required=True, help="the fleet's name, e.g. city-north")
    init.add_argument("--broker-host", required=True, metavar="HOST", help="name units dial")
    init.add_argument(
        "--broker-ip", action="append", default=[], metavar="IP", help="broker address (repeat)"
    )
    init.add_argument("--broker-port", type=int, default=8883, metavar="PORT")
    init.add_argument("--prefix", default="edgewatch", help="topic prefix (default %(default)s)")
    init.add_argument(
        "--issuer-key",
        type=Path,
        action="append",
        required=True,
        metavar="PUB",
        help="a watch-list issuer's public key the units will trust (repeat)",
    )
    init.add_argument("--crop-key", type=Path, metavar="PUB", help="control room's crop.pub")
    init.set_defaults(handler=run_init)

    enrol = actions.add_parser("enrol", help="sign a unit's request and make its bundle")
    enrol.add_argument("request", type=Path, metavar="REQUEST", help="the unit's request.json")
    enrol.add_argument("--fleet", type=Path, required=True, metavar="DIR")
    enrol.add_argument(
        "--replace",
        action="store_true",
        help="the unit was re-flashed: revoke its old certificate and enrol the new keys",
    )
    enrol.set_defaults(handler=run_enrol)

    revoke = actions.add_parser("revoke", help="refuse a unit at the broker, subscriber, issuer")
    revoke.add_argument("device_id", metavar="DEVICE")
    revoke.add_argument("--fleet", type=Path, required=True, metavar="DIR")
    revoke.add_argument("--reason", default="revoked", help="recorded with the revocation")
    revoke.set_defaults(handler=run_revoke)

    show = actions.add_parser("list", help="the fleet's units")
    show.add_argument("--fleet", type=Path, required=True, metavar="DIR")
    show.set_defaults(handler=run_list)

    crl = actions.add_parser("crl", help="re-issue the CRL (valid 30 days)")
    crl.add_argument("--fleet", type=Path, required=True, metavar="DIR")
    crl.set_defaults(handler=run_crl)


def _install_hint(fleet: Fleet) -> str:
    return (
        f"copy {fleet.crl} to the broker's /etc/mosquitto/edgewatch/crl.pem and run "
        "'systemctl restart mosquitto' (a reload only refuses new connections)"
    )


def run_init(args: argparse.Namespace) -> int:
    settings = validated(
        FleetSettings,
        {
            "name": args.name,
            "broker": {"host": args.broker_host, "port": args.broker_port, "prefix": args.prefix},
        },
        "fleet init: invalid option",
        ConfigError,
    )
    fleet = Fleet.create(
        args.fleet, settings, args.issuer_key, args.crop_key, [args.broker_host], args.broker_ip
    )
    print(f"fleet {settings.name} created in {fleet.dir}")
    print(f"  broker files: {fleet.broker_dir} (install in /etc/mosquitto/edgewatch)")
    for name in dict.fromkeys([*settings.readers, *settings.commanders]):
        print(f"  client certificate for {name}: {fleet.client_dir(name)}")
    print(f"  keep {fleet.ca_dir / 'ca.key'} offline: it signs every unit's certificate")
    return 0


def run_enrol(args: argparse.Namespace) -> int:
    fleet = Fleet(args.fleet)
    enrolled = fleet.enrol(args.request, replace=args.replace)
    print(f"unit {enrolled.device_id} enrolled (certificate serial {enrolled.serial:x})")
    print(f"  registered in {fleet.registry} and {fleet.recipients}")
    print(f"  bundle: {enrolled.bundle}")
    print("next: on the unit, 'sudo edgewatch provision install bundle.json'")
    if args.replace:
        print(f"  its old certificate is revoked: {_install_hint(fleet)}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    fleet = Fleet(args.fleet)
    for line in fleet.revoke(args.device_id, args.reason):
        print(f"revoked {args.device_id}: {line}")
    print(f"to make the broker refuse it now: {_install_hint(fleet)}")
    print("watch-lists built from now on with --recipients leave it out; end its deployments")
    return 0


def run_list(args: argparse.Namespace) -> int:
    fleet = Fleet(args.fleet)
    for device_id in fleet.device_ids():
        record = fleet.device_record(device_id)
        state = f"REVOKED {record['revoked_at']}" if record.get("revoked_at") else "active"
        print(f"{device_id:<24} enrolled {record['enrolled_at']}  {state}")
    return 0


def run_crl(args: argparse.Namespace) -> int:
    fleet = Fleet(args.fleet)
    print(f"CRL re-issued, valid 30 days: {fleet.write_crl()}; {_install_hint(fleet)}")
    return 0
