"""``python -m edgewatch`` is the same as the ``edgewatch`` command."""

from edgewatch.cli.main import console_entry

console_entry()
