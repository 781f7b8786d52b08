#!/usr/bin/env bash
# harden-os.sh - keep edgewatch's biometric memory off the SD card.
#
# The appliance holds camera frames, face crops and face embeddings in memory.
# Two operating-system mechanisms would write that memory to disk, where it
# outlives the process and can be read from a lost or stolen SD card:
#
#   * swap: Raspberry Pi OS bookworm pages memory out to /var/swap through
#     dphys-swapfile. This script masks dphys-swapfile.service (a symlink to
#     /dev/null, which works on an image without running systemd), sets
#     CONF_SWAPSIZE=0 in /etc/dphys-swapfile and deletes /var/swap.
#     zram swap (systemd-zram-setup@zram0.service, if configured) is compressed
#     RAM, never touches the card, and is left alone.
#     Alternative, not used here: encrypted swap with a random key per boot
#     (/etc/crypttab "swap ... /dev/urandom swap"), which keeps swap but makes
#     it unreadable after power-off. With 2 GB or more of RAM the appliance
#     does not need disk swap, so off is simpler and easier to audit.
#   * core dumps: a crashing process would dump its whole memory. This script
#     sets a hard core limit of 0 for every login (limits.d), makes the kernel
#     discard dumps (kernel.core_pattern=|/bin/false, fs.suid_dumpable=0) and
#     tells systemd-coredump, if installed, to store nothing.
#
# The edgewatch service unit (deploy/systemd/edgewatch.service) adds the same
# protections for its own process (LimitCORE=0, MemorySwapMax=0), so either
# layer alone keeps face data off the disk.
#
# This script only changes these OS settings. Image customisation and
# provisioning (the edgewatch service user, the virtual environment,
# installing and enabling the unit) are done by other firmware scripts, which
# come in a later issue.
#
# It works on the running system (as root) or on a mounted image root given
# with --root (e.g. an SD card's root partition on a workshop PC). It is
# idempotent: a second run changes nothing and says so.
set -euo pipefail
umask 022

PROG="harden-os.sh"
ROOT_DIR="/"
TMP_PATH=""
CHANGES=0

usage() {
    cat <<USAGE
Usage: $PROG [--root DIR]

Apply the operating-system settings that keep edgewatch's biometric memory
(camera frames, face crops, embeddings) off the disk:

  - disable disk swap: mask dphys-swapfile.service, set CONF_SWAPSIZE=0 in
    /etc/dphys-swapfile, delete /var/swap (zram swap stays: it is RAM)
  - disable core dumps: /etc/security/limits.d/90-edgewatch-nocore.conf,
    /etc/sysctl.d/90-edgewatch-nocore.conf,
    /etc/systemd/coredump.conf.d/90-edgewatch.conf

Options:
  --root DIR   operate on the root file system mounted at DIR (e.g. an SD
               card's root partition) instead of the running system; DIR must
               contain etc/. Root is not needed for a DIR you can write to.
  -h, --help   show this help and exit

Without --root (or with --root /) the running system is changed: this needs
root, and additionally turns swap off now (swapoff -a) and reloads the sysctl
settings. Running the script again changes nothing.
USAGE
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 2
}

say() {
    printf '%s: %s\n' "$PROG" "$*"
}

cleanup() {
    if [ -n "$TMP_PATH" ]; then
        rm -f -- "$TMP_PATH"
    fi
}
trap cleanup EXIT

# The path of RELPATH inside the target root.
target() {
    printf '%s/%s' "${ROOT_DIR%/}" "$1"
}

is_root() {
    [ "$(id -u)" -eq 0 ]
}

# write_file RELPATH LABEL < CONTENT
# Install CONTENT as RELPATH (mode 0644, owned by root when run as root),
# atomically (temporary file in the same directory, then mv), and only when
# the content, mode or owner differ. Prints one line.
write_file() {
    local rel="$1" label="$2" dest dir
    dest="$(target "$rel")"
    dir="$(dirname -- "$dest")"
    # Read the content first, keeping trailing newlines (the "x" guard), so
    # that an unchanged file leaves its directory untouched (no temp file).
    local content
    content="$(cat; printf x)"
    content="${content%x}"
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s -- "$dest" <(printf '%s' "$content"); then
        local fixed=()
        if [ "$(stat -c %a -- "$dest")" != "644" ]; then
            chmod 0644 -- "$dest"
            fixed+=("mode 0644")
        fi
        if is_root && [ "$(stat -c %u:%g -- "$dest")" != "0:0" ]; then
            chown 0:0 -- "$dest"
            fixed+=("owner root")
        fi
        if [ "${#fixed[@]}" -gt 0 ]; then
            CHANGES=$((CHANGES + 1))
            say "$label /$rel: fixed ${fixed[*]}"
        else
            say "$label /$rel: already in place"
        fi
        return
    fi
    mkdir -p -- "$dir"
    TMP_PATH="$(mktemp "$dir/.${rel##*/}.XXXXXX")"
    printf '%s' "$content" > "$TMP_PATH"
    chmod 0644 -- "$TMP_PATH"
    if is_root; then
        chown 0:0 -- "$TMP_PATH"
    fi
    mv -f -- "$TMP_PATH" "$dest"
    TMP_PATH=""
    CHANGES=$((CHANGES + 1))
    say "$label /$rel: written"
}

mask_dphys_swapfile() {
    local rel="etc/systemd/system/dphys-swapfile.service" link dir
    link="$(target "$rel")"
    if [ -L "$link" ] && [ "$(readlink -- "$link")" = "/dev/null" ]; then
        say "swap: dphys-swapfile.service already masked"
        return
    fi
    dir="$(dirname -- "$link")"
    mkdir -p -- "$dir"
    # Replace whatever is there (a unit override would re-enable disk swap)
    # atomically: a new symlink renamed over the old path.
    TMP_PATH="$(mktemp -u "$dir/.dphys-swapfile.service.XXXXXX")"
    ln -s /dev/null "$TMP_PATH"
    mv -f -T -- "$TMP_PATH" "$link"
    TMP_PATH=""
    CHANGES=$((CHANGES + 1))
    say "swap: masked dphys-swapfile.service (/$rel -> /dev/null)"
}

set_swapsize_zero() {
    local rel="etc/dphys-swapfile" conf new
    conf="$(target "$rel")"
    if [ ! -f "$conf" ]; then
        say "swap: /$rel not present, nothing to set"
        return
    fi
    # Every active CONF_SWAPSIZE= line becomes CONF_SWAPSIZE=0; add one if the
    # file has none (dphys-swapfile would then size swap from the RAM size).
    new="$(awk '
        /^[[:space:]]*CONF_SWAPSIZE[[:space:]]*=/ { print "CONF_SWAPSIZE=0"; seen = 1; next }
        { print }
        END { if (!seen) print "CONF_SWAPSIZE=0" }
    ' "$conf")"
    write_file "$rel" "swap: CONF_SWAPSIZE=0 in" <<< "$new"
}

remove_swap_file() {
    local rel="var/swap" swapfile
    swapfile="$(target "$rel")"
    if [ -e "$swapfile" ] || [ -L "$swapfile" ]; then
        rm -f -- "$swapfile"
        CHANGES=$((CHANGES + 1))
        say "swap: removed /$rel"
    else
        say "swap: /$rel not present"
    fi
}

# ---------------------------------------------------------------- arguments
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --root)
            [ "$#" -ge 2 ] || die "--root needs a directory (see --help)"
            ROOT_DIR="$2"
            shift 2
            ;;
        --root=*)
            ROOT_DIR="${1#--root=}"
            shift
            ;;
        *)
            die "unknown option: $1 (see --help)"
            ;;
    esac
done

[ -n "$ROOT_DIR" ] || die "--root needs a directory (see --help)"
[ -e "$ROOT_DIR" ] || die "--root $ROOT_DIR: no such directory"
[ -d "$ROOT_DIR" ] || die "--root $ROOT_DIR: not a directory"
[ -d "$ROOT_DIR/etc" ] || die "--root $ROOT_DIR: no etc/ directory, this does not look like a Debian root file system"
ROOT_DIR="$(cd -- "$ROOT_DIR" && pwd -P)"

LIVE=0
if [ "$ROOT_DIR" = "/" ]; then
    LIVE=1
    is_root || die "changing the running system needs root (run with sudo, or use --root DIR for a mounted image)"
fi

if [ "$LIVE" -eq 1 ]; then
    say "target: the running system (/)"
else
    say "target: root file system at $ROOT_DIR"
fi

# --------------------------------------------------------------------- swap
mask_dphys_swapfile
set_swapsize_zero
if [ "$LIVE" -eq 1 ]; then
    # Turn swap off now, before its file is deleted: masking only takes
    # effect at the next boot. This also pages zram back in until reboot.
    # dphys-swapfile's own swapoff may complain when its swap is already off
    # or gone (second run); swapoff -a and the /proc/swaps check decide.
    if command -v dphys-swapfile > /dev/null 2>&1; then
        dphys-swapfile swapoff > /dev/null 2>&1 || true
    fi
    swapoff -a || die "swapoff -a failed: disk swap may still be active"
    active="$(awk 'NR > 1 && $1 !~ /^\/dev\/zram/ { print $1 }' /proc/swaps)"
    [ -z "$active" ] || die "disk swap still active after swapoff -a: $active"
    say "swap: swapoff -a done, no disk swap active (live system)"
fi
remove_swap_file
say "swap: note: zram swap (systemd-zram-setup@zram0.service), if configured, is left enabled: it is compressed RAM, not disk"

# --------------------------------------------------------------- core dumps
write_file "etc/security/limits.d/90-edgewatch-nocore.conf" "core dumps: hard limit 0 in" <<'CONF'
# Installed by edgewatch firmware_scripts/harden-os.sh: login sessions may not
# write core dumps, which would put camera frames and face data on the SD card.
# (pam_limits does not apply "*" to root; 90-edgewatch-nocore.conf in
# /etc/sysctl.d makes the kernel discard every dump, root's included.)
* hard core 0
CONF

write_file "etc/sysctl.d/90-edgewatch-nocore.conf" "core dumps: kernel discards them, set in" <<'CONF'
# Installed by edgewatch firmware_scripts/harden-os.sh: the kernel hands core
# dumps to /bin/false (which discards them), and never dumps setuid processes.
kernel.core_pattern=|/bin/false
fs.suid_dumpable=0
CONF

write_file "etc/systemd/coredump.conf.d/90-edgewatch.conf" "core dumps: systemd-coredump stores none, set in" <<'CONF'
# Installed by edgewatch firmware_scripts/harden-os.sh: if systemd-coredump is
# installed, it neither stores nor processes any dump.
[Coredump]
Storage=none
ProcessSizeMax=0
CONF

if [ "$LIVE" -eq 1 ]; then
    sysctl --quiet --system > /dev/null ||
        die "sysctl --system failed: the core dump settings take effect at the next boot"
    say "core dumps: sysctl settings applied (live system)"
fi

# ------------------------------------------------------------------ summary
if [ "$CHANGES" -eq 0 ]; then
    say "done: nothing changed, the system was already hardened"
else
    say "done: $CHANGES change(s) made"
fi
