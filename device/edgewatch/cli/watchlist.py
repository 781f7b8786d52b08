"""``edgewatch watchlist``: build, inspect and verify encrypted watch-lists."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag

from edgewatch.accuracy.budget import check_watchlist, issuing_threshold
from edgewatch.appliance import VisionParts, embedder_model_ref, load_vision
from edgewatch.cli.keys import passphrase_from_env
from edgewatch.cli.options import add_model_arguments, model_config
from edgewatch.config import parse_vision_config
from edgewatch.errors import ConfigError, InputError
from edgewatch.fileio import PUBLIC, read_bytes, write_atomic
from edgewatch.progress import ProgressLine
from edgewatch.security.keys import (
    key_id,
    load_recipient_key,
    load_sealing_key,
    load_signing_key,
    load_verify_key,
)
from edgewatch.security.process import protect_process
from edgewatch.watchlist.format import (
    Container,
    HeaderFields,
    Policy,
    WatchlistFormatError,
    open_body,
    parse,
    seal,
)
from edgewatch.watchlist.issue import (
    CSV_COLUMNS,
    PolicyOverride,
    RowOutcome,
    issue_templates,
    load_deployment,
    read_entries,
)

HELP = "build, inspect and verify encrypted watch-lists"

DESCRIPTION = """\
Watch-lists are built on the issuer's workstation from reference photos and
sent to units as one encrypted, signed file (docs/watchlist-format.md). Only
the units named as recipients can open it, only within its deployment's
validity window, and only with the model it was built for.
"""

BUILD_DESCRIPTION = f"""\
Build a watch-list: every photo goes through the device's own face models;
a photo is refused unless it shows exactly one face that is large, sharp and
frontal enough. The file holds templates and metadata, never the photos.

The entries CSV has a header row with the columns {", ".join(CSV_COLUMNS)}
(source and added_by may be empty); image paths are relative to the CSV
file, or to --photos. Categories: wanted, missing-person, vulnerable, other.
A subject may have several rows (several photos).

The deployment TOML gives watchlist_id, version, a [deployment] table (id,
purpose, location, authorised_by, not_before, expires, max_entries) and an
optional [policy]: threshold, margin and max_fpir, the authorised
false-positive identification rate per face searched (default and most
1e-3). Without a threshold, the model's default is raised as far as the
list's size needs; a list too large for its model at its threshold is
refused with the size or threshold that would fit. See
deploy/watchlist-deployment.example.toml.
"""

BUILD_EXAMPLE = """\
example:
  edgewatch keys issuer --out issuer/ --passphrase-env ISSUER_PASSPHRASE
  edgewatch watchlist build --deployment deployment.toml --entries entries.csv \\
      --issuer-key issuer/issuer.key --passphrase-env ISSUER_PASSPHRASE \\
      --recipients fleet/recipients --out hamilton-v1.ewl
"""


def recipient_files(args: argparse.Namespace) -> list[Path]:
    """--recipient files and the keys in --recipients; at least one."""
    files = list(args.recipient)
    if args.recipients is not None:
        if not args.recipients.is_dir():
            raise ConfigError(f"--recipients {args.recipients}: not a directory")
        files += sorted(args.recipients.glob("*.pub"))
    if not files:
        raise ConfigError(
            "no recipient: give --recipient PUB (repeatable) or --recipients DIR with the "
            "units' watchlist.pub keys"
        )
    return files


def register(commands: Any) -> None:
    parser = commands.add_parser("watchlist", help=HELP, description=DESCRIPTION)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build",
        help="build and seal a watch-list from reference photos",
        description=BUILD_DESCRIPTION,
        epilog=BUILD_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("--deployment", type=Path, required=True, metavar="TOML")
    build.add_argument("--entries", type=Path, required=True, metavar="CSV")
    build.add_argument("--photos", type=Path, metavar="DIR", help="base folder of image paths")
    build.add_argument(
        "--issuer-key", type=Path, required=True, metavar="KEY", help="issuer's private key"
    )
    build.add_argument(
        "--passphrase-env", metavar="VAR", help="environment variable with the key's passphrase"
    )
    build.add_argument(
        "--recipient",
        type=Path,
        action="append",
        default=[],
        metavar="PUB",
        help="a unit's watch-list public key (watchlist.pub); repeat for each unit",
    )
    build.add_argument(
        "--recipients",
        type=Path,
        metavar="DIR",
        help="every unit's key in this folder: the fleet's recipient list "
        "(FLEET/recipients, kept by 'edgewatch fleet enrol' and 'revoke')",
    )
    build.add_argument("--out", type=Path, required=True, metavar="FILE")
    build.add_argument(
        "--skip-refused",
        action="store_true",
        help="write the file even if some photos were refused (they are left out)",
    )
    build.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    add_model_arguments(build)
    build.set_defaults(handler=run_build)

    inspect = actions.add_parser(
        "inspect",
        help="show a watch-list's header (decrypts nothing, checks no signature)",
        description="Show the unencrypted header: who issued it, for which deployment and "
        "until when, which model, how many entries, which units can open it. Nothing "
        "biometric is decrypted, and the signature is NOT checked: use 'verify' for that.",
    )
    inspect.add_argument("file", type=Path, metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="print the header as JSON")
    inspect.set_defaults(handler=run_inspect)

    verify = actions.add_parser(
        "verify",
        help="check a watch-list's signature (and, with --device-key, that a unit can open it)",
        description="Check that FILE was signed, unaltered, by the issuer key given. With "
        "--device-key, also check that this unit is a recipient and that the body decrypts "
        "(in memory; nothing is written).",
    )
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument("--issuer-key", type=Path, required=True, metavar="PUB")
    verify.add_argument("--device-key", type=Path, metavar="KEY", help="a unit's watchlist.key")
    verify.set_defaults(handler=run_verify)


def _report(outcome: RowOutcome) -> str:
    row = outcome.row
    verdict = "ok" if outcome.problem is None else f"REFUSED: {outcome.problem}"
    return f"line {row.line:>4}  {row.subject_ref:<24} {row.image.name:<28} {verdict}"


def _budgeted_policy(requested: PolicyOverride, parts: VisionParts, templates: int) -> Policy:
    """The list's policy: its threshold raised as far as its size needs, then budget-checked.

    An issuer-set threshold is never raised silently: if it is too low for
    the list's size, the list is refused with what would fit.
    """
    embedder = parts.encoder.embedder.spec
    threshold = requested.threshold
    if threshold is None:
        threshold = issuing_threshold(
            parts.manifest, embedder.model_id, templates, embedder.threshold, requested.max_fpir
        )
        if threshold > embedder.threshold:
            print(
                f"threshold {threshold} (the model's {embedder.threshold}, raised for "
                f"{templates} templates to stay within FPIR {requested.max_fpir:g})",
                file=sys.stderr,
            )
    predicted = check_watchlist(
        parts.manifest, embedder.model_id, templates, threshold, requested.max_fpir
    )
    print(
        f"predicted false-positive identification rate {predicted:.1e} per face "
        f"(authorised {requested.max_fpir:g})",
        file=sys.stderr,
    )
    return Policy(
        threshold=threshold,
        margin=parts.policy.margin,
        max_fpir=requested.max_fpir,
        predicted_fpir=float(f"{predicted:.3g}"),
    )


def run_build(args: argparse.Namespace) -> int:
    protect_process()  # face data is handled below: no core dumps, no ptrace
    deployment = load_deployment(args.deployment)
    rows = read_entries(args.entries, args.photos)
    issuer_key = load_signing_key(
        args.issuer_key, "issuer key", passphrase_from_env(args.passphrase_env)
    )
    recipients = [load_recipient_key(p, "recipient key") for p in recipient_files(args)]
    subjects = len({r.subject_ref for r in rows})
    if subjects > deployment.deployment.max_entries:
        raise InputError(
            f"{args.entries}: {subjects} subjects exceed the deployment's max_entries "
            f"{deployment.deployment.max_entries}"
        )
    config = parse_vision_config(
        {
            "matching": {
                "threshold": deployment.policy.threshold,
                "margin": deployment.policy.margin,
            },
            **model_config(args),
        },
        "command line",
    )
    parts = load_vision(config)
    progress = ProgressLine("photos", len(rows), enabled=not args.no_progress)

    def on_row(outcome: RowOutcome) -> None:
        progress.update(len(issued_rows) + 1)
        issued_rows.append(outcome)

    issued_rows: list[RowOutcome] = []
    issued = issue_templates(rows, parts.encoder, on_row=on_row)
    progress.finish()
    for outcome in issued.outcomes:
        print(_report(outcome))
    try:
        refused = issued.refused
        if refused and not args.skip_refused:
            raise InputError(
                f"{len(refused)} of {len(rows)} photos refused (see above); fix or remove them, "
                "or pass --skip-refused to leave them out; no file written"
            )
        if not issued.entries:
            raise InputError("no usable photo: nothing to put on the watch-list")
        fields = HeaderFields(
            watchlist_id=deployment.watchlist_id,
            version=deployment.version,
            deployment=deployment.deployment,
            model=embedder_model_ref(parts),
            policy=_budgeted_policy(deployment.policy, parts, int(issued.templates.shape[0])),
        )
        data = seal(fields, issued.entries, issued.templates, recipients, issuer_key)
    finally:
        issued.wipe()
    write_atomic(args.out, data, PUBLIC)
    categories = Counter(e.category for e in issued.entries)
    print(
        f"wrote {args.out}: watch-list {fields.watchlist_id} v{fields.version}, "
        f"{len(issued.entries)} entries ({', '.join(f'{n} {c}' for c, n in categories.items())}), "
        f"{issued.templates.shape[0]} templates, {len(recipients)} recipient(s), "
        f"{len(refused)} photo(s) refused",
        file=sys.stderr,
    )
    return 0


def _parsed(path: Path) -> Container:
    try:
        return parse(read_bytes(path, "watch-list"))
    except WatchlistFormatError as exc:
        raise InputError(f"{path}: {exc}") from None


def run_inspect(args: argparse.Namespace) -> int:
    header = _parsed(args.file).header
    if args.json:
        print(json.dumps(header.model_dump(mode="json"), indent=2, sort_keys=True))
        return 0
    d = header.deployment
    lines = [
        f"watch-list     {header.watchlist_id} version {header.version} (format {header.format})",
        f"issued         {header.issued_at.isoformat()} by issuer key {header.issuer_kid}",
        f"deployment     {d.id}: {d.purpose}",
        f"location       {d.location}",
        f"authorised by  {d.authorised_by}",
        f"valid          {d.not_before.isoformat()} to {d.expires.isoformat()}",
        f"entries        {header.entry_count} (max {d.max_entries}), "
        f"{header.template_count} templates of {header.dim} values",
        f"model          {header.model.id} sha256 {header.model.sha256}",
        f"policy         threshold {header.policy.threshold} margin {header.policy.margin}, "
        f"authorised FPIR {header.policy.max_fpir:g}"
        + (
            ""
            if header.policy.predicted_fpir is None
            else f" (predicted {header.policy.predicted_fpir:.1e})"
        ),
        f"recipients     {', '.join(r.kid for r in header.recipients)}",
        "signature      not checked (use 'edgewatch watchlist verify')",
    ]
    print("\n".join(lines))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    protect_process()  # face data is handled below: no core dumps, no ptrace
    container = _parsed(args.file)
    header = container.header
    issuer = load_verify_key(args.issuer_key, "issuer key")
    if key_id(issuer) != header.issuer_kid:
        raise InputError(
            f"{args.file}: signed by issuer key {header.issuer_kid}, not by {key_id(issuer)} "
            f"({args.issuer_key})"
        )
    try:
        container.verify(issuer)
    except InvalidSignature:
        raise InputError(f"{args.file}: BAD SIGNATURE: the file was altered or damaged") from None
    print(f"{args.file}: signature by issuer key {header.issuer_kid} is valid")
    if args.device_key is not None:
        device_key = load_sealing_key(args.device_key, "device key")
        try:
            plaintext = open_body(container, device_key)
        except LookupError:
            raise InputError(
                f"{args.file}: this unit (key {key_id(device_key.public_key())}) is not a recipient"
            ) from None
        except (InvalidTag, WatchlistFormatError):
            raise InputError(f"{args.file}: the body does not decrypt for this unit") from None
        count = len(plaintext.entries)
        plaintext.wipe()
        print(f"{args.file}: this unit can open it ({count} entries decrypted in memory)")
    now = datetime.now(UTC)
    d = header.deployment
    if now < d.not_before:
        print(f"note: not valid yet (from {d.not_before.isoformat()})")
    elif now >= d.expires:
        print(f"note: EXPIRED at {d.expires.isoformat()}; units will refuse it")
    return 0
