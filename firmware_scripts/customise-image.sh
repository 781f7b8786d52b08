#!/usr/bin/env bash
# customise-image.sh - turn a Raspberry Pi OS Lite image into an edgewatch
# field-unit image, ready to flash (firmware_scripts/flash.sh).
#
# Mechanism: the one Raspberry Pi Imager uses for Raspberry Pi OS bookworm.
# A script, firstrun.sh, is put on the FAT boot partition and run once at the
# first boot by appending to cmdline.txt (the kernel command line, one line):
#
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
#   systemd.unit=kernel-command-line.target
#
# systemd then boots only as far as kernel-command-line.target (local file
# systems mounted read-write, no network, no logins), runs firstrun.sh as root
# and reboots when it succeeds. firstrun.sh sets the hostname and time zone,
# creates the key-only admin user, enables SSH (keys only), installs the
# one-shot edgewatch-setup.service and removes the systemd.run arguments from
# cmdline.txt and itself. At the next boot, once the network is up and the
# clock synchronised, edgewatch-setup.service runs install-unit.sh from the
# boot partition (packages, service user, virtual environment, hardening,
# keys) until provisioning has produced its request.
#
# Why this mechanism:
#   * Only the FAT boot partition is changed, and it is written WITHOUT
#     mounting it and without root, with mtools (mcopy -i IMAGE@@OFFSET): no
#     loop device, no ext4 driver, works on any Linux workshop PC and in
#     containers. The ext4 root partition is never touched here.
#   * The work that needs the target system (users, systemd units, apt) is
#     done by the target system itself, with its own tools, at first boot.
#   * It is the path Raspberry Pi Imager has used for bookworm images, so the
#     image's own first-boot machinery (root partition resize, SSH host keys)
#     runs as it does for any Imager-customised card.
#   (cloud-init, used by Imager for the later trixie images, is not present in
#   bookworm Lite images.)
#
# The boot partition must be at /boot/firmware on the running unit, as in
# Raspberry Pi OS bookworm (bullseye mounted it at /boot and is not supported;
# the boot partition alone does not say which release an image is, so use a
# bookworm image).
#
# Nothing is written to the source image: the customised copy is assembled in
# a temporary file beside --out and renamed to --out when complete.
set -euo pipefail
umask 022

PROG="customise-image.sh"
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
FIRMWARE_DIR="$ROOT/firmware_scripts"
SYSTEMD_DIR="$ROOT/deploy/systemd"
BOOT_MOUNT="/boot/firmware"
RUN_ARGS="systemd.run=$BOOT_MOUNT/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
# Raspberry Pi OS bookworm runs Python 3.11: wheels for another CPython are refused.
PI_PYTHON_TAG="cp311"

IMAGE=""
OUT=""
DEVICE_ID=""
SSH_KEY=""
UNIT_HOSTNAME=""
ADMIN_USER="fieldadmin"
TIMEZONE="UTC"
WHEEL=""
WHEELHOUSE=""
FORCE=0

WORK_DIR=""
TMP_OUT=""

usage() {
    cat <<USAGE
Usage: $PROG --image FILE --out FILE.img --device-id ID --ssh-key FILE [options]

Write a customised copy of a Raspberry Pi OS Lite (bookworm, 64-bit) image for
one edgewatch field unit. The copy's FAT boot partition gets:

  firstrun.sh                   run once at first boot (through cmdline.txt):
                                hostname, time zone, admin user, SSH keys only,
                                enables edgewatch-setup.service
  edgewatch/unit.env            DEVICE_ID, HOSTNAME, ADMIN_USER, TIMEZONE
  edgewatch/authorized_keys     the admin's SSH public key(s)
  edgewatch/install-unit.sh     installs the appliance (run by the setup unit)
  edgewatch/harden-os.sh        swap and core dumps off (run by install-unit.sh)
  edgewatch/edgewatch.service   the appliance's systemd unit
  edgewatch/edgewatch-setup.service  one-shot unit that runs install-unit.sh
                                once network and time sync are up
  edgewatch/wheels/             the edgewatch wheel (and --wheelhouse wheels)

and cmdline.txt gets, on its single line:
  $RUN_ARGS

The partition is written with mtools without mounting it: no root needed.

Required:
  --image FILE       the downloaded Raspberry Pi OS Lite image, .img or .img.xz
                     (never modified). Its first partition must be FAT with a
                     cmdline.txt, not yet customised (no systemd.run= in
                     cmdline.txt, no firstrun.sh).
  --out FILE.img     where to write the customised, uncompressed image (flash
                     it with flash.sh). Must not exist, unless --force.
  --device-id ID     the unit's device id: 1 to 64 characters of A-Z a-z 0-9
                     . _ -, starting with a letter or digit (e.g. unit-0001).
  --ssh-key FILE     the admin's OpenSSH public key file (e.g. id_ed25519.pub;
                     several keys: one per line). The unit has no passwords:
                     SSH with this key is the only way to log in.

Options:
  --hostname NAME    the unit's host name (default: the device id). Letters,
                     digits and '-', at most 63, not starting or ending with
                     '-'; a device id with '.' or '_' needs --hostname.
  --admin-user NAME  the admin account (default: fieldadmin): lower-case
                     letters, digits, '_' and '-', starting with a letter, at
                     most 32. It takes over the image's first user (UID 1000),
                     has no password (locked), may sudo without one, and is in
                     the groups sudo, video and adm.
  --timezone ZONE    time zone, e.g. Europe/Berlin (default: UTC); checked
                     against this machine's /usr/share/zoneinfo when present.
  --wheel FILE       the edgewatch wheel to install (edgewatch-*.whl). Default:
                     build one from this checkout with
                     .venv/bin/python -m pip wheel --no-deps (about 10 s).
  --wheelhouse DIR   also copy every *.whl in DIR (the dependencies, for a unit
                     installed without internet; an edgewatch-*.whl in DIR is
                     skipped). They must be for the Pi: aarch64 or pure
                     Python, and CPython 3.11, e.g. made with
                       pip download --dest DIR --only-binary=:all: \\
                         --platform manylinux_2_28_aarch64 \\
                         --platform manylinux2014_aarch64 --python-version 3.11 \\
                         --implementation cp --abi cp311 edgewatch-*.whl
  --force            overwrite --out if it exists
  -h, --help         show this help and exit

Exit status: 0 when the image was written, 2 for a bad option or input (the
message says which), 1 for a failed tool. Next step: flash.sh --out's image.
USAGE
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 2
}

fail() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

say() {
    printf '%s: %s\n' "$PROG" "$*"
}

cleanup() {
    if [ -n "$TMP_OUT" ]; then
        rm -f -- "$TMP_OUT"
    fi
    if [ -n "$WORK_DIR" ]; then
        rm -rf -- "$WORK_DIR"
    fi
}
trap cleanup EXIT

need_tool() {
    command -v "$1" > /dev/null 2>&1 || die "$1 not found: install $2 (apt-get install $2)"
}

# need_value OPTION ARGC: an option's value must follow it.
need_value() {
    [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"
}

human_size() {
    numfmt --to=iec-i --suffix=B --format='%.1f' "$1"
}

# ------------------------------------------------------------- validation

valid_device_id() {
    [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]
}

valid_hostname() {
    [[ "$1" =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$ ]]
}

valid_admin_user() {
    [[ "$1" =~ ^[a-z][a-z0-9_-]{0,31}$ ]]
}

# Accounts that exist on Raspberry Pi OS for the system, or that edgewatch
# itself uses: never the admin.
reserved_user() {
    case "$1" in
        root | daemon | bin | sys | sync | games | man | lp | mail | news | uucp | proxy | \
            www-data | backup | list | irc | gnats | nobody | messagebus | sshd | \
            systemd-network | systemd-timesync | systemd-resolve | polkitd | avahi | edgewatch)
            return 0
            ;;
    esac
    return 1
}

valid_timezone() {
    [[ "$1" =~ ^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$ ]]
}

# check_ssh_keys FILE OUT: every non-comment line of FILE must be one OpenSSH
# public key "TYPE BASE64 [COMMENT]" whose base64 blob really is a key of
# TYPE; the keys are written to OUT, one per line.
check_ssh_keys() {
    local file="$1" out="$2" line type blob comment n=0 keys=0 blobfile len
    blobfile="$WORK_DIR/key.blob"
    : > "$out"
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line="${line%$'\r'}"
        if [[ "$line" =~ ^[[:space:]]*(#.*)?$ ]]; then
            continue
        fi
        if [[ "$line" == *"PRIVATE KEY"* ]]; then
            die "--ssh-key $file: this is a PRIVATE key: give the public key (the .pub file), and keep the private key to yourself"
        fi
        read -r type blob comment <<< "$line"
        case "$type" in
            ssh-ed25519 | ssh-rsa | ecdsa-sha2-nistp256 | ecdsa-sha2-nistp384 | ecdsa-sha2-nistp521 | \
                sk-ssh-ed25519@openssh.com | sk-ecdsa-sha2-nistp256@openssh.com) ;;
            *)
                die "--ssh-key $file: line $n is not an OpenSSH public key (it starts with '${type:0:40}'; expected ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521 or an sk- key type; options before the key type are not accepted)"
                ;;
        esac
        [[ "$blob" =~ ^[A-Za-z0-9+/]+={0,2}$ ]] ||
            die "--ssh-key $file: line $n: the key data after '$type' is not base64"
        printf '%s' "$blob" | base64 -d > "$blobfile" 2> /dev/null ||
            die "--ssh-key $file: line $n: the key data after '$type' is not valid base64"
        # The blob starts with the key type as an SSH string: a 4-byte
        # big-endian length, then the name.
        len="$(od -An -tu4 --endian=big -N4 -- "$blobfile" | tr -d ' ')"
        if [ "$len" != "${#type}" ] || [ "$(dd if="$blobfile" bs=1 skip=4 count="${#type}" status=none)" != "$type" ]; then
            die "--ssh-key $file: line $n: the key data does not hold a $type key (damaged or mislabelled key)"
        fi
        if [ -n "$comment" ]; then
            printf '%s %s %s\n' "$type" "$blob" "$comment" >> "$out"
        else
            printf '%s %s\n' "$type" "$blob" >> "$out"
        fi
        keys=$((keys + 1))
    done < "$file"
    [ "$keys" -gt 0 ] || die "--ssh-key $file: no public key in the file"
    rm -f -- "$blobfile"
}

# check_wheel_for_pi FILE: refuse a wheel that cannot install on the Pi
# (aarch64, CPython 3.11). Wheel names: NAME-VER(-BUILD)?-PY-ABI-PLATFORM.whl
check_wheel_for_pi() {
    local name="${1##*/}" stem py abi plat part
    local -a parts plats
    stem="${name%.whl}"
    IFS=- read -r -a parts <<< "$stem"
    [ "${#parts[@]}" -ge 5 ] || die "--wheelhouse: $name is not a wheel file name (NAME-VERSION-PY-ABI-PLATFORM.whl)"
    plat="${parts[-1]}"
    abi="${parts[-2]}"
    py="${parts[-3]}"
    if [ "$plat" != "any" ]; then
        IFS=. read -r -a plats <<< "$plat"
        for part in "${plats[@]}"; do
            [[ "$part" == *aarch64* ]] ||
                die "--wheelhouse: $name is built for $plat, not for the Pi (aarch64): download the Pi's wheels (see --help)"
        done
    fi
    if [[ "$py" == cp3* ]] && [ "$abi" != "abi3" ] && [[ ".$py." != *".$PI_PYTHON_TAG."* ]]; then
        die "--wheelhouse: $name is built for Python $py, the Pi's Raspberry Pi OS bookworm has $PI_PYTHON_TAG (3.11): download with --python-version 3.11"
    fi
}

# ---------------------------------------------------------------- mtools

# The image with the offset of its boot partition, for mtools' -i.
MTOOLS_IMAGE=""

mt() {
    local tool="$1"
    shift
    "$tool" -i "$MTOOLS_IMAGE" "$@"
}

# ---------------------------------------------------------------- arguments
[ "$#" -gt 0 ] || {
    usage >&2
    exit 2
}
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --image | --out | --device-id | --ssh-key | --hostname | --admin-user | --timezone | --wheel | --wheelhouse)
            need_value "$1" "$#"
            case "$1" in
                --image) IMAGE="$2" ;;
                --out) OUT="$2" ;;
                --device-id) DEVICE_ID="$2" ;;
                --ssh-key) SSH_KEY="$2" ;;
                --hostname) UNIT_HOSTNAME="$2" ;;
                --admin-user) ADMIN_USER="$2" ;;
                --timezone) TIMEZONE="$2" ;;
                --wheel) WHEEL="$2" ;;
                --wheelhouse) WHEELHOUSE="$2" ;;
            esac
            shift 2
            ;;
        --image=* | --out=* | --device-id=* | --ssh-key=* | --hostname=* | --admin-user=* | --timezone=* | --wheel=* | --wheelhouse=*)
            set -- "${1%%=*}" "${1#*=}" "${@:2}"
            ;;
        --force)
            FORCE=1
            shift
            ;;
        *)
            die "unknown option: $1 (see --help)"
            ;;
    esac
done

[ -n "$IMAGE" ] || die "--image is required: the downloaded Raspberry Pi OS Lite image (see --help)"
[ -n "$OUT" ] || die "--out is required: where to write the customised image (see --help)"
[ -n "$DEVICE_ID" ] || die "--device-id is required (see --help)"
[ -n "$SSH_KEY" ] || die "--ssh-key is required: the admin's OpenSSH public key; the unit has no passwords (see --help)"

valid_device_id "$DEVICE_ID" ||
    die "--device-id '$DEVICE_ID': use 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
if [ -z "$UNIT_HOSTNAME" ]; then
    valid_hostname "$DEVICE_ID" ||
        die "--device-id '$DEVICE_ID' is not a valid host name (letters, digits and '-' only, at most 63, not starting or ending with '-'): give --hostname"
    UNIT_HOSTNAME="$DEVICE_ID"
fi
valid_hostname "$UNIT_HOSTNAME" ||
    die "--hostname '$UNIT_HOSTNAME': use letters, digits and '-' only, at most 63 characters, not starting or ending with '-'"
valid_admin_user "$ADMIN_USER" ||
    die "--admin-user '$ADMIN_USER': use lower-case letters, digits, '_' and '-', starting with a letter, at most 32 characters"
if reserved_user "$ADMIN_USER"; then
    die "--admin-user '$ADMIN_USER' is a system or edgewatch account: choose another name"
fi
valid_timezone "$TIMEZONE" ||
    die "--timezone '$TIMEZONE': not a time zone name (e.g. UTC, Europe/Berlin)"
if [ -d /usr/share/zoneinfo ]; then
    [ -f "/usr/share/zoneinfo/$TIMEZONE" ] ||
        die "--timezone '$TIMEZONE': unknown time zone (not in /usr/share/zoneinfo; e.g. UTC, Europe/Berlin)"
else
    say "warning: /usr/share/zoneinfo not found on this machine, --timezone '$TIMEZONE' not checked (install tzdata to check it)"
fi

[ -e "$IMAGE" ] || die "--image $IMAGE: no such file"
[ -f "$IMAGE" ] || die "--image $IMAGE: not a regular file"
[ -r "$IMAGE" ] || die "--image $IMAGE: not readable"
case "$IMAGE" in
    *.img.xz | *.xz) COMPRESSED=1 ;;
    *.img) COMPRESSED=0 ;;
    *) die "--image $IMAGE: expected a .img or .img.xz file (a Raspberry Pi OS Lite image)" ;;
esac

case "$OUT" in
    *.img) ;;
    *) die "--out $OUT: must end in .img (the customised image is written uncompressed; flash.sh writes it)" ;;
esac
OUT_DIR="$(dirname -- "$OUT")"
[ -d "$OUT_DIR" ] || die "--out $OUT: the directory $OUT_DIR does not exist"
[ -w "$OUT_DIR" ] || die "--out $OUT: the directory $OUT_DIR is not writable"
if [ -e "$OUT" ] || [ -L "$OUT" ]; then
    [ "$FORCE" -eq 1 ] || die "--out $OUT exists: choose another file or add --force to overwrite it"
    [ -f "$OUT" ] || die "--out $OUT exists and is not a regular file: not overwritten"
    [ "$(readlink -f -- "$OUT")" != "$(readlink -f -- "$IMAGE")" ] ||
        die "--out $OUT is the --image: the source image is never overwritten"
fi

[ -e "$SSH_KEY" ] || die "--ssh-key $SSH_KEY: no such file"
if [ ! -f "$SSH_KEY" ] || [ ! -r "$SSH_KEY" ]; then
    die "--ssh-key $SSH_KEY: not a readable file"
fi

if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || die "--wheel $WHEEL: no such file"
    case "${WHEEL##*/}" in
        edgewatch-*.whl) ;;
        *) die "--wheel $WHEEL: not an edgewatch wheel (expected edgewatch-VERSION-...whl)" ;;
    esac
fi
if [ -z "$WHEEL" ] && [ ! -x "$ROOT/.venv/bin/python" ]; then
    die "no --wheel given and $ROOT/.venv/bin/python not found to build one: run scripts/bootstrap first, or give --wheel FILE"
fi
WHEELHOUSE_FILES=()
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE: no such directory"
    shopt -s nullglob
    WHEELHOUSE_FILES=("$WHEELHOUSE"/*.whl)
    shopt -u nullglob
    [ "${#WHEELHOUSE_FILES[@]}" -gt 0 ] || die "--wheelhouse $WHEELHOUSE: no .whl files in it"
    kept=()
    for whl in "${WHEELHOUSE_FILES[@]}"; do
        case "${whl##*/}" in
            edgewatch-*)
                # pip download puts the wheel it was given there too; the
                # edgewatch wheel on the card is --wheel's (or the one built).
                say "--wheelhouse: skipping ${whl##*/} (the edgewatch wheel comes from --wheel or this checkout)"
                continue
                ;;
        esac
        check_wheel_for_pi "$whl"
        kept+=("$whl")
    done
    [ "${#kept[@]}" -gt 0 ] || die "--wheelhouse $WHEELHOUSE: no dependency wheels in it (only edgewatch's own)"
    WHEELHOUSE_FILES=("${kept[@]}")
fi

# The files that go onto the card from this checkout.
INSTALL_UNIT="$FIRMWARE_DIR/install-unit.sh"
[ -f "$INSTALL_UNIT" ] ||
    die "$INSTALL_UNIT not found: it installs the appliance on the unit and must go onto the card (it comes with issue 7's provisioning work; update this checkout)"
for file in "$FIRMWARE_DIR/firstrun.sh" "$FIRMWARE_DIR/harden-os.sh" \
    "$SYSTEMD_DIR/edgewatch.service" "$SYSTEMD_DIR/edgewatch-setup.service"; do
    [ -f "$file" ] || die "$file not found: this checkout is incomplete"
done

need_tool mcopy mtools
need_tool mtype mtools
need_tool mmd mtools
need_tool mdir mtools
need_tool minfo mtools
need_tool sfdisk fdisk
need_tool python3 python3
if [ "$COMPRESSED" -eq 1 ]; then
    need_tool xz xz-utils
fi
# Images are not formatted with mtools' idea of a floppy geometry.
export MTOOLS_SKIP_CHECK=1

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/edgewatch-customise.XXXXXX")"
STAGE="$WORK_DIR/stage"
mkdir -p -- "$STAGE/edgewatch/wheels"

check_ssh_keys "$SSH_KEY" "$STAGE/edgewatch/authorized_keys"

# ------------------------------------------------------- the other files
cp -- "$FIRMWARE_DIR/firstrun.sh" "$STAGE/firstrun.sh"
cp -- "$INSTALL_UNIT" "$STAGE/edgewatch/install-unit.sh"
cp -- "$FIRMWARE_DIR/harden-os.sh" "$STAGE/edgewatch/harden-os.sh"
cp -- "$SYSTEMD_DIR/edgewatch.service" "$STAGE/edgewatch/edgewatch.service"
cp -- "$SYSTEMD_DIR/edgewatch-setup.service" "$STAGE/edgewatch/edgewatch-setup.service"

# Every value was validated above (no quote, space or shell character can be
# in it); single quotes make that explicit for both the shell (firstrun.sh
# sources the file) and systemd (EnvironmentFile= in edgewatch-setup.service).
cat > "$STAGE/edgewatch/unit.env" <<ENV
# edgewatch unit settings, written by firmware_scripts/$PROG
# on $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(printf '%s' "${IMAGE##*/}" | tr -c 'A-Za-z0-9._+-' '_').
# Read by /boot/firmware/firstrun.sh (sourced) and edgewatch-setup.service
# (EnvironmentFile=). KEY='value' lines only.
DEVICE_ID='$DEVICE_ID'
HOSTNAME='$UNIT_HOSTNAME'
ADMIN_USER='$ADMIN_USER'
TIMEZONE='$TIMEZONE'
ENV

# ------------------------------------------------------- copy the image
TMP_OUT="$(mktemp "$OUT_DIR/.${OUT##*/}.XXXXXX")"
if [ "$COMPRESSED" -eq 1 ]; then
    say "decompressing $IMAGE"
    # dd conv=sparse leaves the image's runs of zeros as holes, as cp does.
    xz --decompress --stdout -- "$IMAGE" | dd of="$TMP_OUT" bs=1M iflag=fullblock conv=sparse status=none ||
        die "--image $IMAGE: xz could not decompress it (damaged or incomplete download?)"
else
    say "copying $IMAGE"
    cp --sparse=always --reflink=auto -- "$IMAGE" "$TMP_OUT" || fail "copying $IMAGE to $OUT_DIR failed"
fi

# ------------------------------------------------- find the boot partition
# sfdisk --json prints the partition table; the first partition of a
# Raspberry Pi OS image is the FAT boot partition.
if ! table="$(sfdisk --json -- "$TMP_OUT" 2> "$WORK_DIR/sfdisk.err")"; then
    die "--image $IMAGE: no partition table found ($(head -n 1 "$WORK_DIR/sfdisk.err")): not a Raspberry Pi OS image"
fi
part="$(printf '%s' "$table" | python3 -c '
import json, sys
table = json.load(sys.stdin)["partitiontable"]
parts = table.get("partitions") or []
if not parts:
    sys.exit(0)
first = parts[0]
print(table["label"], first["start"], first["size"], first["type"], table.get("sectorsize", 512))
')" || fail "could not read sfdisk's partition table of $IMAGE"
[ -n "$part" ] || die "--image $IMAGE: the partition table has no partitions: not a Raspberry Pi OS image"
read -r label start size ptype sector_size <<< "$part"
case "$label:${ptype^^}" in
    # MBR FAT types (FAT12, FAT16, FAT32, with and without LBA); GPT: EFI
    # system partition or Microsoft basic data.
    dos:1 | dos:4 | dos:6 | dos:B | dos:C | dos:E) ;;
    gpt:C12A7328-F81F-11D2-BA4B-00A0C93EC93B | gpt:EBD0A0A2-B9E5-4433-87C0-68B6B72699C7) ;;
    *) die "--image $IMAGE: its first partition is not a FAT partition (table $label, type $ptype): not a Raspberry Pi OS image" ;;
esac
OFFSET=$((start * sector_size))
image_bytes="$(stat -c %s -- "$TMP_OUT")"
[ $(((start + size) * sector_size)) -le "$image_bytes" ] ||
    die "--image $IMAGE: its first partition ends beyond the end of the file: the image is truncated (incomplete download?)"
MTOOLS_IMAGE="$TMP_OUT@@$OFFSET"
mt minfo :: > /dev/null 2>&1 ||
    die "--image $IMAGE: the first partition (type $ptype) holds no FAT file system: not a Raspberry Pi OS image"

mt mtype ::/cmdline.txt > "$WORK_DIR/cmdline.orig" 2> /dev/null ||
    die "--image $IMAGE: no cmdline.txt on the boot partition: not a Raspberry Pi OS image"
for name in firstrun.sh edgewatch; do
    if mt mdir -b "::/$name" > /dev/null 2>&1; then
        die "--image $IMAGE: the boot partition already has $name: this image was customised before; start from the downloaded image"
    fi
done

# cmdline.txt is ONE line: the firmware passes only the first line to the
# kernel. Keep it, append the arguments, keep the file's final newline.
first_line="$(head -n 1 -- "$WORK_DIR/cmdline.orig" | tr -d '\r')"
if [ "$(tail -n +2 -- "$WORK_DIR/cmdline.orig" | tr -d ' \t\r\n' | wc -c)" -ne 0 ]; then
    die "--image $IMAGE: cmdline.txt has more than one line; the firmware reads only the first: fix it or use the downloaded image"
fi
first_line="$(printf '%s' "$first_line" | sed -e 's/[[:space:]]*$//' -e 's/^[[:space:]]*//')"
[ -n "$first_line" ] || die "--image $IMAGE: cmdline.txt is empty: not a usable Raspberry Pi OS image"
read -r -a words <<< "$first_line"
for word in "${words[@]}"; do
    case "$word" in
        systemd.run=* | systemd.run_success_action=* | systemd.unit=kernel-command-line.target)
            die "--image $IMAGE: cmdline.txt already has '$word': this image was customised before (by this script or Raspberry Pi Imager); start from the downloaded image"
            ;;
    esac
done
printf '%s %s\n' "$first_line" "$RUN_ARGS" > "$STAGE/cmdline.txt"

# ------------------------------------------------------------------ wheel
# Built only once the image has been found usable (it takes a while).
if [ -z "$WHEEL" ]; then
    VENV_PYTHON="$ROOT/.venv/bin/python"
    say "building the edgewatch wheel from $ROOT"
    mkdir -p -- "$WORK_DIR/wheel"
    if ! "$VENV_PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK_DIR/wheel" "$ROOT" > "$WORK_DIR/wheel.log" 2>&1; then
        cat -- "$WORK_DIR/wheel.log" >&2
        fail "building the edgewatch wheel failed (pip's output above)"
    fi
    shopt -s nullglob
    built=("$WORK_DIR"/wheel/edgewatch-*.whl)
    shopt -u nullglob
    [ "${#built[@]}" -eq 1 ] || fail "pip wheel did not produce exactly one edgewatch wheel in $WORK_DIR/wheel"
    WHEEL="${built[0]}"
fi
cp -- "$WHEEL" "$STAGE/edgewatch/wheels/"
for whl in "${WHEELHOUSE_FILES[@]}"; do
    cp -- "$whl" "$STAGE/edgewatch/wheels/"
done

# ------------------------------------------------------------- free space
free="$(mt mdir ::/ 2> /dev/null | sed -n 's/ bytes free.*//p' | tr -d ' ')"
needed="$(du -s --block-size=1 --apparent-size -- "$STAGE" | cut -f1)"
files="$(find "$STAGE" -type f | wc -l)"
# One cluster of slack per file (at most 64 KiB on FAT32) and 1 MiB spare.
needed=$((needed + files * 65536 + 1048576))
if [[ "$free" =~ ^[0-9]+$ ]] && [ "$free" -lt "$needed" ]; then
    die "the boot partition has $(human_size "$free") free, the files need about $(human_size "$needed") (fewer --wheelhouse wheels?)"
fi

# ---------------------------------------------------------- write the FAT
say "writing the boot partition (FAT at byte offset $OFFSET)"
mt mmd ::/edgewatch ::/edgewatch/wheels || fail "mmd could not create edgewatch/ on the boot partition"
mt mcopy -o -- "$STAGE/firstrun.sh" ::/firstrun.sh || fail "mcopy firstrun.sh failed"
for name in unit.env authorized_keys install-unit.sh harden-os.sh edgewatch.service edgewatch-setup.service; do
    mt mcopy -o -- "$STAGE/edgewatch/$name" "::/edgewatch/$name" || fail "mcopy edgewatch/$name failed"
done
for whl in "$STAGE"/edgewatch/wheels/*.whl; do
    mt mcopy -o -- "$whl" "::/edgewatch/wheels/${whl##*/}" || fail "mcopy ${whl##*/} failed (boot partition full?)"
done
# cmdline.txt last: an image is only marked for first-run once all is there.
mt mcopy -o -- "$STAGE/cmdline.txt" ::/cmdline.txt || fail "mcopy cmdline.txt failed"

# Read back what matters most.
mt mtype ::/cmdline.txt > "$WORK_DIR/cmdline.check"
cmp -s -- "$STAGE/cmdline.txt" "$WORK_DIR/cmdline.check" || fail "cmdline.txt read back from the image differs from what was written"
mt mtype ::/firstrun.sh | cmp -s -- "$STAGE/firstrun.sh" - || fail "firstrun.sh read back from the image differs from what was written"

sync -- "$TMP_OUT"
mv -f -- "$TMP_OUT" "$OUT"
TMP_OUT=""

# ---------------------------------------------------------------- summary
wheel_count="$(find "$STAGE/edgewatch/wheels" -name '*.whl' | wc -l)"
key_count="$(grep -c . "$STAGE/edgewatch/authorized_keys")"
say "done: $OUT ($(human_size "$(stat -c %s -- "$OUT")"))"
cat <<SUMMARY
  device id      $DEVICE_ID
  hostname       $UNIT_HOSTNAME
  admin user     $ADMIN_USER (SSH keys only: $key_count key(s) from $SSH_KEY)
  time zone      $TIMEZONE
  wheels         $wheel_count ($(basename -- "$WHEEL")$([ "$wheel_count" -gt 1 ] && printf ' and %d from %s' "$((wheel_count - 1))" "$WHEELHOUSE"))
  cmdline.txt    $(cat -- "$STAGE/cmdline.txt")

Next step: write it to the unit's SD card (as root; it asks before writing):
  sudo $FIRMWARE_DIR/flash.sh $OUT /dev/sdX
At its first boot the unit runs firstrun.sh and reboots, then installs
edgewatch (edgewatch-setup.service) once it has network and the time; follow
it with: ssh $ADMIN_USER@$UNIT_HOSTNAME.local journalctl -fu edgewatch-setup
SUMMARY
