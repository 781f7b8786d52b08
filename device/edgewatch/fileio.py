"""Writing files so that a crash never leaves half a file, and secrets start private.

Keys, state and watch-list bookkeeping are written to a temporary file in the
same directory (created with the final permissions, so a secret is never
readable by others even for an instant), flushed to disk, then renamed over
the target: a reader sees the old file or the new one, never a mixture.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from edgewatch.errors import ConfigError

PRIVATE = 0o600
PUBLIC = 0o644


def write_atomic(path: Path, data: bytes, mode: int = PUBLIC, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``."""
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(f"{directory}: directory does not exist")
    if not overwrite and path.exists():
        raise ConfigError(f"{path}: already exists; refusing to overwrite it")
    temp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temp.chmod(mode)
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes, or a clear error saying which ``what`` could not be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path}: is a directory, expected a file") from None
    except PermissionError:
        raise ConfigError(f"{what} {path}: permission denied") from None


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's tables, or a clear error saying which ``what`` is missing or broken."""
    data = read_bytes(path, what)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: not valid TOML: {exc}") from None


def resolve_path(value: str, base: Path, root: Path | None = None) -> str:
    """A path from a configuration file, as this process must open it.

    Relative paths are relative to ``base`` (the file's directory), so a
    configuration can sit next to its keys. With ``root`` (a unit's file
    system mounted elsewhere, e.g. an SD card on a workshop PC, or a
    simulated unit), absolute paths are taken below it: ``/var/lib/x`` is
    ``<root>/var/lib/x``.
    """
    path = Path(value)
    if path.is_absolute():
        return str(root / path.relative_to("/")) if root is not None else value
    return str(base / path)
