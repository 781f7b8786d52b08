#!/usr/bin/env bash
# flash.sh - write a (customised) Raspberry Pi OS image to an SD card, and
# check that the card holds exactly the image's bytes.
#
# The image (.img, or .img.xz decompressed on the fly) is written with dd and
# hashed (sha256) while it is written; the same number of bytes is then read
# back from the card, past the page cache (blockdev --flushbufs, then
# iflag=direct), and hashed again. A card that does not hold what was written
# (worn out, fake capacity, bad reader) fails here rather than in the field.
#
# Writing to the wrong disk destroys it, so flash.sh refuses anything that is
# not plainly an SD card or USB stick: see --help for the rules. The device
# facts come from lsblk --json and findmnt (util-linux 2.37 or later).
#
# --to-file writes the image into a regular file instead, through the same
# write-and-verify code: for testing this script (tests/test_firmware_images.py
# does) and for trying the image in an emulator.
set -euo pipefail
umask 022

PROG="flash.sh"
BLOCK_SIZE=$((4 * 1024 * 1024))
# Above this a "card" is more likely a backup disk: say so before writing.
LARGE_CARD=$((512 * 1024 * 1024 * 1024))

IMAGE=""
DEVICE=""
TO_FILE=""
YES=0
WORK_DIR=""
HASH_PID=""

usage() {
    cat <<USAGE
Usage: $PROG IMAGE DEVICE [--yes]
       $PROG IMAGE --to-file FILE

Write IMAGE (.img, or .img.xz: decompressed on the fly) to the SD card DEVICE
(e.g. /dev/sdb or /dev/mmcblk0) with a progress display, then verify it: the
sha256 of the image's bytes must equal the sha256 of as many bytes read back
from the card, read past the page cache (blockdev --flushbufs, iflag=direct).

Arguments:
  IMAGE            the image, e.g. the one customise-image.sh wrote
  DEVICE           the whole card (/dev/sdX, /dev/mmcblkN, or just sdX), not a
                   partition

Options:
  --yes, -y        do not ask: write without typing the device name
  --to-file FILE   write a flashed image file instead of a card, for testing
                   the image (e.g. in an emulator) and this script: FILE gets
                   the image's bytes, verified the same way (read back through
                   the page cache: a file has no card to bypass it for). FILE
                   is created or overwritten; no root needed. Not with DEVICE.
  -h, --help       show this help and exit

DEVICE is refused, with the reason, when:
  - it is not a block device, or not a whole disk (a partition such as
    /dev/sdb1: give /dev/sdb; a loop or other device);
  - it holds the file system of / or /boot of this computer;
  - any of its partitions is mounted (unmount them first: sudo umount ...);
  - it is not removable. Removable means: lsblk says RM=1 (removable media)
    or HOTPLUG=1 (can be unplugged: USB, FireWire, hot-plug slots), or its
    transport (TRAN) is usb or mmc, or it is a built-in SD slot (mmcblkN,
    which some laptops report as RM=0 and HOTPLUG=0) and not soldered-on eMMC
    (/sys/block/mmcblkN/device/type is MMC). Internal SATA, NVMe, SCSI and
    virtual disks are never written;
  - the image is larger than the card (or there is no card in the reader).

Unless --yes, it then shows the disk's model, size and transport and asks you
to type its name (e.g. sdb) to go on. Writing a card needs root (sudo).

Exit status: 0 written and verified, 1 write or verification failed or not
confirmed, 2 refused (bad argument, image or device).
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
    if [ -n "$HASH_PID" ]; then
        kill "$HASH_PID" 2> /dev/null || true
    fi
    if [ -n "$WORK_DIR" ]; then
        rm -rf -- "$WORK_DIR"
    fi
}
trap cleanup EXIT

need_tool() {
    command -v "$1" > /dev/null 2>&1 || die "$1 not found: install $2 (apt-get install $2)"
}

human_size() {
    numfmt --to=iec-i --suffix=B --format='%.1f' "$1"
}

# --------------------------------------------------------------- the image

# The image's bytes on stdout.
read_image() {
    case "$IMAGE" in
        *.xz) xz --decompress --stdout -- "$IMAGE" ;;
        *) cat -- "$IMAGE" ;;
    esac
}

# The number of bytes read_image gives.
image_size() {
    case "$IMAGE" in
        *.xz)
            xz --robot --list -- "$IMAGE" 2> /dev/null | awk -F'\t' '$1 == "file" { print $5 }'
            ;;
        *) stat -c %s -- "$IMAGE" ;;
    esac
}

# --------------------------------------------------------------- the disk

# describe_device PATH: facts about the disk at PATH, as KEY=VALUE lines:
# TYPE NAME PKNAME SIZE MODEL TRAN RM HOTPLUG (lsblk), MOUNTED (the mounted
# nodes in its tree, "node on mountpoint; ..."), SYSTEM (1 if its tree holds
# the file system of / or /boot), FOUND (0 if lsblk does not list it).
describe_device() {
    local dev="$1" system="" target line
    for target in / /boot; do
        line="$(findmnt --noheadings --raw --output MAJ:MIN,SOURCE --target "$target" 2> /dev/null || true)"
        system="$system $line"
    done
    lsblk --json --bytes --output NAME,PATH,MAJ:MIN,TYPE,RM,HOTPLUG,TRAN,SIZE,MODEL,MOUNTPOINTS,PKNAME |
        python3 -c '
import json, sys

dev, system = sys.argv[1], sys.argv[2].split()
# findmnt: "MAJ:MIN SOURCE" pairs; a btrfs source looks like /dev/sda2[/@].
system = {word.split("[")[0] for word in system}

def clean(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return " ".join(str(value).split())

def nodes(node):
    yield node
    for child in node.get("children") or []:
        yield from nodes(child)

found = None
for top in json.load(sys.stdin).get("blockdevices") or []:
    for node in nodes(top):
        if node.get("path") == dev and found is None:
            found = node
if found is None:
    print("FOUND=0")
    sys.exit(0)
mounted, holds_system = [], False
for node in nodes(found):
    path = node.get("path")
    for point in node.get("mountpoints") or []:
        if point:
            mounted.append(f"{path} on {point}")
    if node.get("maj:min") in system or node.get("path") in system:
        holds_system = True
print("FOUND=1")
for key in ("type", "name", "pkname", "size", "model", "tran", "rm", "hotplug"):
    print(f"{key.upper()}={clean(found.get(key))}")
print("MOUNTED=" + clean("; ".join(mounted)))
print("SYSTEM=" + ("1" if holds_system else "0"))
' "$dev" "$system"
}

# is_removable: the rule in --help, from the describe_device facts.
is_removable() {
    if [ "$D_RM" = 1 ] || [ "$D_HOTPLUG" = 1 ]; then
        return 0
    fi
    case "$D_TRAN" in
        usb | mmc) return 0 ;;
    esac
    if [[ "$D_NAME" =~ ^mmcblk[0-9]+$ ]]; then
        # Soldered-on eMMC reports itself as MMC, SD cards as SD.
        if [ "$(cat "/sys/block/$D_NAME/device/type" 2> /dev/null || true)" = "MMC" ]; then
            return 1
        fi
        return 0
    fi
    return 1
}

check_device() {
    local key value
    # "sdb" for /dev/sdb.
    if [[ "$DEVICE" != */* ]] && [ ! -e "$DEVICE" ] && [ -e "/dev/$DEVICE" ]; then
        DEVICE="/dev/$DEVICE"
    fi
    [ -e "$DEVICE" ] || die "$DEVICE: no such device (is the card reader plugged in? lsblk lists the disks)"
    DEVICE="$(readlink -f -- "$DEVICE")"
    [ -b "$DEVICE" ] || die "$DEVICE is not a block device: give the SD card's disk, e.g. /dev/sdb or /dev/mmcblk0 (lsblk lists them)"
    D_FOUND=0 D_TYPE="" D_NAME="" D_PKNAME="" D_SIZE="" D_MODEL="" D_TRAN="" D_RM="" D_HOTPLUG="" D_MOUNTED="" D_SYSTEM=""
    while IFS='=' read -r key value; do
        case "$key" in
            FOUND) D_FOUND="$value" ;;
            TYPE) D_TYPE="$value" ;;
            NAME) D_NAME="$value" ;;
            PKNAME) D_PKNAME="$value" ;;
            SIZE) D_SIZE="$value" ;;
            MODEL) D_MODEL="$value" ;;
            TRAN) D_TRAN="$value" ;;
            RM) D_RM="$value" ;;
            HOTPLUG) D_HOTPLUG="$value" ;;
            MOUNTED) D_MOUNTED="$value" ;;
            SYSTEM) D_SYSTEM="$value" ;;
        esac
    done < <(describe_device "$DEVICE" || echo "FOUND=error")
    [ "$D_FOUND" != error ] || fail "could not list the block devices with lsblk --json"
    [ "$D_FOUND" = 1 ] || die "$DEVICE is not listed by lsblk: not a disk this script can check"
    case "$D_TYPE" in
        disk) ;;
        part) die "$DEVICE is a partition of /dev/$D_PKNAME: give the whole card, /dev/$D_PKNAME" ;;
        *) die "$DEVICE is a ${D_TYPE:-unknown} device, not a whole disk: give the SD card's disk" ;;
    esac
    [ "$D_SYSTEM" != 1 ] ||
        die "$DEVICE holds this computer's own system (the file system of / or /boot): refusing to write it"
    if [ -n "$D_MOUNTED" ]; then
        local parts
        parts="$(printf '%s' "$D_MOUNTED" | tr ';' '\n' | awk '{ print $1 }' | sort -u | tr '\n' ' ')"
        die "$DEVICE has mounted file systems ($D_MOUNTED): unmount them first, e.g. sudo umount ${parts% } (or udisksctl unmount -b for each), then run again"
    fi
    is_removable ||
        die "$DEVICE does not look like an SD card or USB stick (removable ${D_RM:-?}, hotplug ${D_HOTPLUG:-?}, transport ${D_TRAN:-none}): only removable disks are written (see --help)"
    [[ "$D_SIZE" =~ ^[0-9]+$ ]] || fail "lsblk gave no size for $DEVICE"
    [ "$D_SIZE" -gt 0 ] || die "$DEVICE has size 0: no card in the reader?"
    [ "$IMAGE_SIZE" -le "$D_SIZE" ] ||
        die "the image ($(human_size "$IMAGE_SIZE")) is larger than $DEVICE ($(human_size "$D_SIZE")): use a larger card"
}

confirm() {
    local answer
    say "about to write $IMAGE ($(human_size "$IMAGE_SIZE")) to $DEVICE:"
    printf '  model      %s\n' "${D_MODEL:-unknown}"
    printf '  size       %s\n' "$(human_size "$D_SIZE")"
    printf '  transport  %s\n' "${D_TRAN:-unknown}"
    if [ "$D_SIZE" -gt "$LARGE_CARD" ]; then
        printf '  NOTE: larger than %s, more than SD cards usually are: is this a backup disk?\n' "$(human_size "$LARGE_CARD")"
    fi
    printf 'EVERYTHING ON %s WILL BE LOST. Type its name (%s) to go on, anything else to stop: ' "$DEVICE" "$D_NAME"
    if ! IFS= read -r answer; then
        answer=""
    fi
    printf '\n'
    if [ "$answer" != "$D_NAME" ] && [ "$answer" != "$DEVICE" ]; then
        fail "not confirmed ('$answer' is not $D_NAME): nothing written"
    fi
}

# ------------------------------------------------------- write and verify

# write_and_verify DEST KIND: write the image to DEST (KIND device or file)
# while hashing it, then read the same number of bytes back and compare.
write_and_verify() {
    local dest="$1" kind="$2" fifo written read_back
    local -a read_flags=("iflag=count_bytes")
    fifo="$WORK_DIR/image.fifo"
    mkfifo -- "$fifo"
    sha256sum < "$fifo" > "$WORK_DIR/written.sha256" &
    HASH_PID=$!

    say "writing $(human_size "$IMAGE_SIZE") to $dest"
    # conv=fsync: dd returns only once everything is on the medium.
    if ! read_image | tee -- "$fifo" | dd of="$dest" bs="$BLOCK_SIZE" iflag=fullblock conv=fsync status=progress; then
        wait "$HASH_PID" || true
        HASH_PID=""
        fail "writing $dest failed (see the message above): the card is incomplete, do not use it"
    fi
    wait "$HASH_PID" || fail "hashing the image failed"
    HASH_PID=""
    written="$(cut -d' ' -f1 < "$WORK_DIR/written.sha256")"

    sync
    if [ "$kind" = device ]; then
        # Drop the card's cached blocks, then read around the cache: the
        # check must see what the card returns, not what we wrote to memory.
        blockdev --flushbufs "$dest" || fail "blockdev --flushbufs $dest failed"
        if [ $((IMAGE_SIZE % 4096)) -eq 0 ]; then
            read_flags=("iflag=count_bytes,direct")
        fi
    fi
    say "verifying: reading $(human_size "$IMAGE_SIZE") back from $dest"
    read_back="$(dd if="$dest" bs="$BLOCK_SIZE" "${read_flags[@]}" count="$IMAGE_SIZE" status=progress | sha256sum | cut -d' ' -f1)" ||
        fail "reading $dest back failed"
    if [ "$read_back" != "$written" ]; then
        fail "VERIFICATION FAILED: $dest does not hold the image (written sha256 $written, read back $read_back): the card or reader is faulty, do not use it"
    fi
    say "verified: sha256 $written over $IMAGE_SIZE bytes"
}

# ---------------------------------------------------------------- arguments
POSITIONAL=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        -y | --yes)
            YES=1
            shift
            ;;
        --to-file)
            [ "$#" -ge 2 ] || die "--to-file needs a file (see --help)"
            TO_FILE="$2"
            shift 2
            ;;
        --to-file=*)
            TO_FILE="${1#--to-file=}"
            shift
            ;;
        --)
            shift
            POSITIONAL+=("$@")
            break
            ;;
        -*)
            die "unknown option: $1 (see --help)"
            ;;
        *)
            POSITIONAL+=("$1")
            shift
            ;;
    esac
done

if [ -n "$TO_FILE" ]; then
    [ "${#POSITIONAL[@]}" -eq 1 ] || die "with --to-file give only IMAGE, no DEVICE (see --help)"
else
    [ "${#POSITIONAL[@]}" -eq 2 ] || die "give IMAGE and DEVICE, e.g. $PROG unit-0001.img /dev/sdb (see --help)"
    DEVICE="${POSITIONAL[1]}"
fi
IMAGE="${POSITIONAL[0]}"

[ -e "$IMAGE" ] || die "$IMAGE: no such file"
[ -f "$IMAGE" ] || die "$IMAGE: not a regular file"
[ -r "$IMAGE" ] || die "$IMAGE: not readable"
case "$IMAGE" in
    *.img | *.img.xz | *.xz) ;;
    *) die "$IMAGE: expected a .img or .img.xz image" ;;
esac
need_tool dd coreutils
need_tool sha256sum coreutils
if [[ "$IMAGE" == *.xz ]]; then
    need_tool xz xz-utils
fi
IMAGE_SIZE="$(image_size || true)"
[[ "$IMAGE_SIZE" =~ ^[0-9]+$ ]] || die "$IMAGE: not a valid .xz file (xz --list cannot read it)"
[ "$IMAGE_SIZE" -gt 0 ] || die "$IMAGE: the image is empty"

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/edgewatch-flash.XXXXXX")"

if [ -n "$TO_FILE" ]; then
    if [ -e "$TO_FILE" ] && [ ! -f "$TO_FILE" ]; then
        die "--to-file $TO_FILE exists and is not a regular file (to write a card, give it as DEVICE)"
    fi
    [ -d "$(dirname -- "$TO_FILE")" ] || die "--to-file $TO_FILE: the directory $(dirname -- "$TO_FILE") does not exist"
    if [ -e "$TO_FILE" ] && [ "$(readlink -f -- "$TO_FILE")" = "$(readlink -f -- "$IMAGE")" ]; then
        die "--to-file $TO_FILE is the image itself"
    fi
    write_and_verify "$TO_FILE" file
    say "done: $TO_FILE holds the image"
    exit 0
fi

need_tool lsblk util-linux
need_tool findmnt util-linux
need_tool blockdev util-linux
need_tool python3 python3
check_device
[ "$(id -u)" -eq 0 ] || die "writing to $DEVICE needs root: run it with sudo"
if [ "$YES" -eq 0 ]; then
    confirm
fi
write_and_verify "$DEVICE" device
say "done: $DEVICE holds the image; it can be removed and put into the unit"
