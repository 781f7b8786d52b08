"""``edgewatch keys``: generate the key pairs of issuers, devices and the control room."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edgewatch.errors import ConfigError
from edgewatch.security.keys import PrivateKey, key_id, save_key_pair

HELP = "generate key pairs (issuer, device, control room)"

DESCRIPTION = """\
Generate key pairs. Private keys are written with mode 0600 and never
overwritten; public keys (.pub) are what you hand to others. Each key is
named by its RFC 7638 thumbprint (the "key id" printed and used in
watch-lists and events).

  issuer        Ed25519 key that signs watch-lists and commands (keep it on the
                issuer's workstation, encrypted with --passphrase-env).
  device        Ed25519 event-signing key and X25519 watch-list key of one unit
                (run on the unit itself: private keys never leave it).
  control-room  X25519 key to which units seal the face crop of a match.
"""

ROLES: dict[str, list[tuple[str, type[Ed25519PrivateKey] | type[X25519PrivateKey]]]] = {
    "issuer": [("issuer", Ed25519PrivateKey)],
    "device": [("signing", Ed25519PrivateKey), ("watchlist", X25519PrivateKey)],
    "control-room": [("crop", X25519PrivateKey)],
}


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "keys",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("role", choices=sorted(ROLES), help="whose keys to generate")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory to write the keys to"
    )
    parser.add_argument(
        "--passphrase-env",
        metavar="VAR",
        help="encrypt the private key(s) with the passphrase in environment variable VAR",
    )
    parser.set_defaults(handler=run)


def passphrase_from_env(variable: str | None) -> bytes | None:
    """The passphrase held in environment variable ``variable`` (never on the command line)."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"--passphrase-env {variable}: the variable is not set or empty")
    return value.encode()


def generate_role(role: str, out: Path, passphrase: bytes | None = None) -> list[str]:
    """Write ``role``'s key pairs into ``out``; one ``path  key id`` line per public key."""
    out.mkdir(parents=True, exist_ok=True)
    for name, _ in ROLES[role]:
        if (out / f"{name}.key").exists():
            raise ConfigError(f"{out / name}.key: already exists; refusing to overwrite a key")
    lines = []
    for name, kind in ROLES[role]:
        key: PrivateKey = kind.generate()
        save_key_pair(key, out / f"{name}.key", out / f"{name}.pub", passphrase)
        lines.append(f"{out / (name + '.pub')}  key id {key_id(key.public_key())}")
    return lines


def run(args: argparse.Namespace) -> int:
    for line in generate_role(args.role, args.out, passphrase_from_env(args.passphrase_env)):
        print(line)
    return 0
