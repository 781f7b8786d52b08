#!/usr/bin/env bash
# install-unit.sh - install the edgewatch appliance into a Raspberry Pi OS root
# file system and generate the unit's keys and provisioning request.
#
# On a field unit it runs once, at first boot, from the SD card's boot partition
# (edgewatch-setup.service, enabled by firstrun.sh; see README.md here), once the
# network and the clock are up: apt and pip need the network, and the keys'
# certificates and signatures need the right time. It is also how the tests build
# a simulated unit: the same steps with --root DIR instead of /.
#
# Steps, each idempotent (a second run changes nothing that is already right):
#   1. apt: python3-venv, python3-picamera2 (which brings libcamera), and
#      systemd-timesyncd (live system only; skipped with --no-apt)
#   2. the 'edgewatch' system user and group, no login shell, in group 'video'
#      (the camera's device nodes)
#   3. the virtual environment /opt/edgewatch/venv, created with
#      --system-site-packages so that it sees the system's picamera2 and
#      libcamera (they come from apt, not PyPI), and edgewatch installed into it
#      from the wheel(s) on the card
#   4. the hardened systemd unit, enabled (it waits, by ConditionPathExists, for
#      the configuration that 'edgewatch provision install' writes), and time
#      synchronisation enabled
#   5. harden-os.sh: disk swap and core dumps off
#   6. the camera enabled in config.txt (camera_auto_detect=1)
#   7. /etc/edgewatch (root:edgewatch 0750) and, as the service user's files,
#      the unit's keys and its provisioning request:
#      'edgewatch provision init' writes /var/lib/edgewatch/provisioning/request.json,
#      copied to the boot partition (edgewatch/request.json) for the workshop.
set -euo pipefail
umask 022

PROG="install-unit.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="/"
DEVICE_ID=""
WHEELS=()
WHEEL_DIR=""
EXISTING_VENV=""
APT=1
SERVICE_USER="edgewatch"
VENV_REL="opt/edgewatch/venv"

usage() {
    cat <<USAGE
Usage: $PROG --device-id ID [--root DIR] [--wheel FILE ...] [--wheel-dir DIR]
                        [--venv DIR] [--no-apt]

Install the edgewatch appliance into a Raspberry Pi OS (bookworm) root file
system, harden it, and generate the unit's keys and provisioning request.

Options:
  --device-id ID   the unit's id (1-64 of A-Z a-z 0-9 . _ -, starting with a
                   letter or digit): its certificate's name and topic level
  --root DIR       install into the root file system at DIR instead of the
                   running system (default /)
  --wheel FILE     the edgewatch wheel to install (repeatable)
  --wheel-dir DIR  a folder of wheels: edgewatch and, for a unit without
                   internet access, all its dependencies (pip --find-links)
  --venv DIR       use this existing virtual environment instead of creating
                   one (linked as /opt/edgewatch/venv; for simulated units)
  --no-apt         do not install apt packages
  -h, --help       show this help and exit

Keys are generated here, by the unit itself: private keys never leave it.
Next steps are printed at the end (enrol the request in the back office, then
'edgewatch provision install bundle.json' on the unit).
USAGE
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 2
}

say() {
    printf '%s: %s\n' "$PROG" "$*"
}

target() {
    printf '%s/%s' "${ROOT_DIR%/}" "$1"
}

is_root() {
    [ "$(id -u)" -eq 0 ]
}

# The first of the given paths that exists (the repository's layout, or the
# flat folder on the boot partition).
first_existing() {
    local path
    for path in "$@"; do
        if [ -e "$path" ]; then
            printf '%s' "$path"
            return 0
        fi
    done
    return 1
}

# ---------------------------------------------------------------- arguments
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --device-id)
            [ "$#" -ge 2 ] || die "--device-id needs a value"
            DEVICE_ID="$2"
            shift 2
            ;;
        --root)
            [ "$#" -ge 2 ] || die "--root needs a directory"
            ROOT_DIR="$2"
            shift 2
            ;;
        --wheel)
            [ "$#" -ge 2 ] || die "--wheel needs a file"
            WHEELS+=("$2")
            shift 2
            ;;
        --wheel-dir)
            [ "$#" -ge 2 ] || die "--wheel-dir needs a directory"
            WHEEL_DIR="$2"
            shift 2
            ;;
        --venv)
            [ "$#" -ge 2 ] || die "--venv needs a directory"
            EXISTING_VENV="$2"
            shift 2
            ;;
        --no-apt)
            APT=0
            shift
            ;;
        *)
            die "unknown option: $1 (see --help)"
            ;;
    esac
done

[ -n "$DEVICE_ID" ] || die "--device-id is required (see --help)"
[[ "$DEVICE_ID" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] ||
    die "--device-id $DEVICE_ID: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
[ -d "$ROOT_DIR/etc" ] || die "--root $ROOT_DIR: no etc/ directory, this does not look like a root file system"
ROOT_DIR="$(cd -- "$ROOT_DIR" && pwd -P)"
LIVE=0
if [ "$ROOT_DIR" = "/" ]; then
    LIVE=1
    is_root || die "installing on the running system needs root (run with sudo)"
fi
if [ -n "$EXISTING_VENV" ]; then
    [ -x "$EXISTING_VENV/bin/edgewatch" ] || die "--venv $EXISTING_VENV: no bin/edgewatch in it"
elif [ "${#WHEELS[@]}" -eq 0 ] && [ -z "$WHEEL_DIR" ]; then
    die "give the edgewatch wheel (--wheel FILE or --wheel-dir DIR), or --venv DIR"
fi
if [ -n "$WHEEL_DIR" ]; then
    [ -d "$WHEEL_DIR" ] || die "--wheel-dir $WHEEL_DIR: not a directory"
fi
for wheel in "${WHEELS[@]}"; do
    [ -f "$wheel" ] || die "--wheel $wheel: no such file"
done
SERVICE_FILE="$(first_existing "$SCRIPT_DIR/../deploy/systemd/edgewatch.service" "$SCRIPT_DIR/edgewatch.service")" ||
    die "edgewatch.service not found next to this script or in ../deploy/systemd/"
HARDEN="$(first_existing "$SCRIPT_DIR/harden-os.sh")" || die "harden-os.sh not found next to this script"

if [ "$LIVE" -eq 1 ]; then
    say "target: the running system (/), unit $DEVICE_ID"
else
    say "target: root file system at $ROOT_DIR, unit $DEVICE_ID"
fi

# ------------------------------------------------------------------ 1. apt
if [ "$LIVE" -eq 1 ] && [ "$APT" -eq 1 ]; then
    say "apt: installing python3-venv python3-picamera2 systemd-timesyncd"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-picamera2 systemd-timesyncd
else
    say "apt: skipped"
fi

# ---------------------------------------------------------- 2. service user
passwd_field() { # passwd_field USER FIELD -> value from the target's /etc/passwd
    awk -F: -v user="$1" -v field="$2" '$1 == user { print $field }' "$(target etc/passwd)"
}
if [ -n "$(passwd_field "$SERVICE_USER" 1)" ]; then
    say "user: $SERVICE_USER already exists"
else
    prefix=()
    [ "$LIVE" -eq 1 ] || prefix=(--prefix "$ROOT_DIR")
    groups=()
    if grep -q '^video:' "$(target etc/group)"; then
        groups=(--groups video)
    else
        say "user: warning: no 'video' group in this root; the service could not open the camera"
    fi
    useradd "${prefix[@]}" --system --user-group "${groups[@]}" --home-dir /var/lib/edgewatch \
        --no-create-home --shell /usr/sbin/nologin --comment "edgewatch appliance" "$SERVICE_USER"
    say "user: created system user $SERVICE_USER (no login)"
fi
SERVICE_UID="$(passwd_field "$SERVICE_USER" 3)"
SERVICE_GID="$(passwd_field "$SERVICE_USER" 4)"

# ------------------------------------------------------------------ 3. venv
VENV="$(target "$VENV_REL")"
mkdir -p -- "$(dirname -- "$VENV")"
if [ -n "$EXISTING_VENV" ]; then
    ln -sfn -- "$(cd -- "$EXISTING_VENV" && pwd -P)" "$VENV"
    say "venv: /$VENV_REL -> $EXISTING_VENV (existing virtual environment)"
else
    [ "$LIVE" -eq 1 ] || die "a virtual environment can only be built on the unit itself (or give --venv)"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv --system-site-packages "$VENV"
        say "venv: created /$VENV_REL (sees the system's picamera2 and libcamera)"
    fi
    pip_args=(--quiet --disable-pip-version-check)
    if [ -n "$WHEEL_DIR" ]; then
        pip_args+=(--find-links "$WHEEL_DIR")
        if [ "${#WHEELS[@]}" -eq 0 ]; then
            mapfile -t WHEELS < <(find "$WHEEL_DIR" -maxdepth 1 -name 'edgewatch-*.whl' | sort -V | tail -n 1)
            [ "${#WHEELS[@]}" -gt 0 ] || die "--wheel-dir $WHEEL_DIR: no edgewatch-*.whl in it"
        fi
    fi
    "$VENV/bin/python" -m pip install "${pip_args[@]}" "${WHEELS[@]}"
    say "venv: installed $(basename -- "${WHEELS[0]}")"
fi
EDGEWATCH="$VENV/bin/edgewatch"
"$EDGEWATCH" --version > /dev/null || die "$EDGEWATCH does not run"
mkdir -p -- "$(target usr/local/bin)"
ln -sfn "/$VENV_REL/bin/edgewatch" "$(target usr/local/bin/edgewatch)"
say "venv: /usr/local/bin/edgewatch -> /$VENV_REL/bin/edgewatch"

# --------------------------------------------------------- 4. systemd units
UNIT_DIR="$(target etc/systemd/system)"
mkdir -p -- "$UNIT_DIR"
install -m 0644 -- "$SERVICE_FILE" "$UNIT_DIR/edgewatch.service"
systemctl --root="$ROOT_DIR" enable edgewatch.service > /dev/null 2>&1 ||
    die "systemctl --root=$ROOT_DIR enable edgewatch.service failed"
say "systemd: edgewatch.service installed and enabled (starts once provisioned)"
if [ -e "$(target lib/systemd/system/systemd-timesyncd.service)" ] || [ -e "$(target usr/lib/systemd/system/systemd-timesyncd.service)" ]; then
    systemctl --root="$ROOT_DIR" enable systemd-timesyncd.service > /dev/null 2>&1 ||
        die "could not enable systemd-timesyncd.service"
    say "time: systemd-timesyncd enabled (signatures and expiry depend on the clock)"
else
    say "time: warning: systemd-timesyncd is not installed in this root; install a time sync service"
fi

# ------------------------------------------------------------- 5. hardening
"$HARDEN" --root "$ROOT_DIR" | sed "s/^/$PROG: /"

# ---------------------------------------------------------------- 6. camera
CONFIG_TXT="$(target boot/firmware/config.txt)"
if [ -f "$CONFIG_TXT" ]; then
    if grep -q '^camera_auto_detect=1' "$CONFIG_TXT"; then
        say "camera: already enabled (camera_auto_detect=1)"
    else
        sed -i 's/^camera_auto_detect=.*/camera_auto_detect=1/' "$CONFIG_TXT"
        grep -q '^camera_auto_detect=1' "$CONFIG_TXT" || printf 'camera_auto_detect=1\n' >> "$CONFIG_TXT"
        say "camera: enabled in /boot/firmware/config.txt (camera_auto_detect=1; takes effect at reboot)"
    fi
else
    say "camera: no /boot/firmware/config.txt in this root, nothing to enable"
fi

# -------------------------------------------------- 7. configuration, keys
ETC_DIR="$(target etc/edgewatch)"
mkdir -p -- "$ETC_DIR"
chmod 0750 -- "$ETC_DIR"
if is_root; then
    chown "0:$SERVICE_GID" -- "$ETC_DIR"
fi
say "config: /etc/edgewatch (root:$SERVICE_USER 0750)"
"$EDGEWATCH" provision init --root "$ROOT_DIR" --device-id "$DEVICE_ID" | sed "s/^/$PROG: /"
REQUEST="$(target var/lib/edgewatch/provisioning/request.json)"
BOOT_COPY_DIR="$(target boot/firmware/edgewatch)"
if [ -d "$BOOT_COPY_DIR" ]; then
    install -m 0644 -- "$REQUEST" "$BOOT_COPY_DIR/request.json"
    say "request: copied to the boot partition (edgewatch/request.json)"
fi
if is_root; then
    owner="$(stat -c %u -- "$(target var/lib/edgewatch/keys/signing.key)")"
    [ "$owner" = "$SERVICE_UID" ] || die "the keys are not owned by $SERVICE_USER (uid $SERVICE_UID)"
fi

cat <<NEXT
$PROG: done. Unit $DEVICE_ID is installed and has its keys; it is not yet provisioned.
Next:
  1. bring its request to the back office:  /var/lib/edgewatch/provisioning/request.json
     (also on the boot partition, edgewatch/request.json, readable from any PC)
  2. back office:  edgewatch fleet enrol request.json --fleet FLEET
  3. on the unit:  sudo edgewatch provision install bundle.json && sudo systemctl restart edgewatch
NEXT
