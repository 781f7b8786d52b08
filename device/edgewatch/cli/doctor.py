"""``edgewatch doctor``: what is wrong with this unit, in plain words."""

from __future__ import annotations

import argparse
from typing import Any

from edgewatch.cli.run import add_unit_arguments, layout, unit_config
from edgewatch.security.process import protect_process
from edgewatch.unit.doctor import Doctor, camera_hint

HELP = "check a unit: camera, models, keys, certificate, clock, broker, watch-list"

DESCRIPTION = """\
Check a field unit and print one line per finding: ok, WARNING or PROBLEM,
each saying what to do. Checks the models (present, hashes match), the keys
(present, private, owned by the service user), the client certificate (for
this unit's key and id, signed by the fleet CA, not expired), the clock
(synchronised), the broker (reachable, accepts this unit's certificate; no
MQTT session is opened, so a running service is not disturbed), the
watch-list the unit holds (its signed header only: issuer, recipient,
validity, model, accuracy budget; nothing is decrypted), the camera (opens
and delivers a frame, which is overwritten at once) and disk swap.
Exit code 0 when nothing is a PROBLEM, 1 otherwise.
"""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_unit_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="network timeout (default 5)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    protect_process()  # the camera check reads one frame
    findings = Doctor(unit_config(args), layout(args), args.timeout).run()
    for finding in findings:
        print(finding.line())
    hint = camera_hint(findings)
    if hint:
        print(f"        hint: {hint}")
    problems = sum(f.level == "problem" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    print(f"doctor: {problems} problem(s), {warnings} warning(s)")
    return 1 if problems else 0
