"""Command-line options shared by several commands, defined once.

``simulate`` and ``watchlist build`` must encode faces identically (templates
from different pipelines cannot be compared), so they take the model options
from one place; ``subscribe`` and ``command`` reach the broker the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cryptography.x509.oid import NameOID

from edgewatch.config import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, DEFAULT_LANDMARKER
from edgewatch.errors import ConfigError
from edgewatch.transport.mosquitto import ClientCredentials
from edgewatch.transport.pki import load_certificate


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument(
        "--detector", default=DEFAULT_DETECTOR, metavar="MODEL", help="detector model id"
    )
    group.add_argument(
        "--landmarker",
        default=DEFAULT_LANDMARKER,
        metavar="MODEL",
        help="landmark model that refines alignment and rejects unusable faces "
        "('none': align on the detector's keypoints, no gate)",
    )
    group.add_argument(
        "--embedder", default=DEFAULT_EMBEDDER, metavar="MODEL", help="embedder model id"
    )
    group.add_argument(
        "--min-face-px",
        type=float,
        default=40.0,
        metavar="PX",
        help="faces narrower than this are never embedded (default 40)",
    )
    group.add_argument(
        "--model-manifest",
        action="append",
        default=[],
        type=Path,
        metavar="TOML",
        help="extra model manifest (e.g. research-only models for comparison)",
    )


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration sections that :func:`add_model_arguments` sets."""
    return {
        "detector": {"model": args.detector},
        "landmarker": {"model": args.landmarker},
        "embedder": {"model": args.embedder},
        "quality": {"min_face_px": args.min_face_px},
        "model_manifests": args.model_manifest,
    }


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the broker is and this client's mutual-TLS identity."""
    parser.add_argument("--broker", required=True, metavar="HOST:PORT")
    parser.add_argument("--ca-cert", type=Path, required=True, metavar="PEM", help="fleet CA")
    parser.add_argument("--cert", type=Path, required=True, metavar="PEM", help="client cert")
    parser.add_argument("--key", type=Path, required=True, metavar="PEM", help="client key")


def broker_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--broker {value!r}: expected HOST:PORT, e.g. broker.example:8883")
    return host, int(port)


def broker_credentials(args: argparse.Namespace) -> ClientCredentials:
    credentials = ClientCredentials(args.ca_cert, args.cert, args.key)
    credentials.check()
    return credentials


def common_name(cert: Path) -> str:
    """The certificate's CN: the broker takes it as this client's identity and client id."""
    names = load_certificate(cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError(f"certificate {cert}: has no common name")
    return str(names[0].value)
