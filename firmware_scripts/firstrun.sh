#!/usr/bin/env bash
# firstrun.sh - the first boot of an edgewatch field unit.
#
# customise-image.sh puts this script on the SD card's FAT boot partition and
# appends to cmdline.txt (the one-line kernel command line)
#
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
#   systemd.unit=kernel-command-line.target
#
# which is how Raspberry Pi Imager customises Raspberry Pi OS bookworm: at the
# first boot systemd starts only the basic system (file systems mounted
# read-write; no network, no logins), runs this script as root and reboots
# when it exits 0. The script reads /boot/firmware/edgewatch/unit.env and
#
#   * sets the hostname (/etc/hostname, /etc/hosts) and the time zone;
#   * makes the admin account: it takes over the image's first user (UID 1000,
#     as Imager's userconf does) or is created; no password (locked), sudo
#     without one, groups sudo, video and adm, SSH keys from the card; the
#     image's interactive "rename user" wizard is switched off;
#   * enables SSH with keys only (sshd_config.d drop-in);
#   * installs and enables edgewatch-setup.service, which installs the
#     appliance at the next boot, once network and time are there;
#   * removes the systemd.run arguments from cmdline.txt (the rest of the line
#     stays as it was) and deletes itself from the boot partition.
#
# systemd is not fully up, so units are enabled with symlinks, not systemctl.
# Every step checks what is there first: an interrupted run (power cut) runs
# again at the next boot and finishes; a second run changes nothing. A failed
# run leaves cmdline.txt as it is, so it is retried at the next power-on; its
# log is /var/log/edgewatch-firstrun.log on the root partition.
#
# For testing, --root and --boot run it against a root file system and a boot
# directory other than / and /boot/firmware.
set -euo pipefail
umask 022

PROG="firstrun.sh"
ROOT_DIR="/"
BOOT_DIR="/boot/firmware"
LOG_REL="var/log/edgewatch-firstrun.log"
TMP_PATH=""
CHANGES=0

usage() {
    cat <<USAGE
Usage: $PROG [--root DIR] [--boot DIR]

Run once, as root, at an edgewatch unit's first boot (customise-image.sh puts
it on the SD card and starts it through cmdline.txt). It reads
BOOT/edgewatch/unit.env (DEVICE_ID, HOSTNAME, ADMIN_USER, TIMEZONE) and

  - sets /etc/hostname, the 127.0.1.1 line of /etc/hosts, /etc/localtime and
    /etc/timezone
  - makes ADMIN_USER (renaming the image's UID 1000 user if there is one):
    locked, no password, groups sudo video adm, passwordless sudo
    (/etc/sudoers.d/010_edgewatch-admin), ~/.ssh/authorized_keys from
    BOOT/edgewatch/authorized_keys; disables the image's rename-user wizard
  - enables ssh.service with /etc/ssh/sshd_config.d/00-edgewatch.conf
    (PasswordAuthentication no, KbdInteractiveAuthentication no,
    PermitRootLogin no)
  - installs BOOT/edgewatch/edgewatch-setup.service in /etc/systemd/system
    and enables it (multi-user.target.wants symlink)
  - removes systemd.run=, systemd.run_success_action=,
    systemd.run_failure_action= and systemd.unit=kernel-command-line.target
    from BOOT/cmdline.txt, then deletes BOOT/firstrun.sh

Options:
  --root DIR   the root file system to change (default: /)
  --boot DIR   the boot partition (default: /boot/firmware)
  -h, --help   show this help and exit

Needs root. Logs to ROOT/$LOG_REL. Running it again changes
nothing; a failed run can be run again.
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

# put_file PATH MODE OWNER LABEL < CONTENT
# Install CONTENT at PATH (absolute) with MODE and OWNER (uid:gid),
# atomically (temporary file in the same directory, then mv) and only if the
# content, mode or owner differ. MODE and OWNER "-": not set (for the FAT boot
# partition, which has neither).
put_file() {
    local dest="$1" mode="$2" owner="$3" label="$4" dir content
    dir="$(dirname -- "$dest")"
    content="$(cat; printf x)"
    content="${content%x}"
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s -- "$dest" <(printf '%s' "$content") &&
        { [ "$mode" = - ] || [ "$(stat -c %a -- "$dest")" = "${mode#0}" ]; } &&
        { [ "$owner" = - ] || [ "$(stat -c %u:%g -- "$dest")" = "$owner" ]; }; then
        say "$label: already in place"
        return
    fi
    mkdir -p -- "$dir"
    TMP_PATH="$(mktemp "$dir/.${dest##*/}.XXXXXX")"
    printf '%s' "$content" > "$TMP_PATH"
    if [ "$mode" != - ]; then
        chmod "$mode" -- "$TMP_PATH"
    fi
    if [ "$owner" != - ]; then
        chown "$owner" -- "$TMP_PATH"
    fi
    mv -f -- "$TMP_PATH" "$dest"
    TMP_PATH=""
    CHANGES=$((CHANGES + 1))
    say "$label: written"
}

# put_link RELPATH TARGET LABEL: the symlink RELPATH (in the root) -> TARGET.
put_link() {
    local link dir
    link="$(target "$1")"
    if [ -L "$link" ] && [ "$(readlink -- "$link")" = "$2" ]; then
        say "$3: already in place"
        return
    fi
    dir="$(dirname -- "$link")"
    mkdir -p -- "$dir"
    TMP_PATH="$(mktemp -u "$dir/.${link##*/}.XXXXXX")"
    ln -s -- "$2" "$TMP_PATH"
    mv -f -T -- "$TMP_PATH" "$link"
    TMP_PATH=""
    CHANGES=$((CHANGES + 1))
    say "$3: /$1 -> $2"
}

remove_path() {
    local path
    path="$(target "$1")"
    if [ -e "$path" ] || [ -L "$path" ]; then
        rm -f -- "$path"
        CHANGES=$((CHANGES + 1))
        say "$2: removed /$1"
    fi
}

# The first field of the line of FILE (passwd, group) whose field N is VALUE.
field_of() {
    awk -F: -v n="$2" -v v="$3" -v want="$4" '$n == v { print $want; exit }' "$1"
}

# A unit file of the target system, as the absolute path systemctl would link to.
system_unit() {
    local dir
    for dir in lib/systemd/system usr/lib/systemd/system; do
        if [ -f "$(target "$dir/$1")" ]; then
            printf '/%s/%s' "$dir" "$1"
            return 0
        fi
    done
    return 1
}

# --------------------------------------------------------------- settings
load_settings() {
    local env="$BOOT_DIR/edgewatch/unit.env"
    [ -f "$env" ] || die "$env not found: this card was not made by customise-image.sh"
    # bash sets HOSTNAME itself: unset it so that only the file's value counts.
    unset DEVICE_ID HOSTNAME ADMIN_USER TIMEZONE
    # shellcheck source=/dev/null
    . "$env"
    UNIT_DEVICE_ID="${DEVICE_ID:-}"
    UNIT_HOSTNAME="${HOSTNAME:-}"
    UNIT_ADMIN="${ADMIN_USER:-}"
    UNIT_TIMEZONE="${TIMEZONE:-UTC}"
    # The same rules as customise-image.sh.
    [[ "$UNIT_DEVICE_ID" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "$env: DEVICE_ID '$UNIT_DEVICE_ID' is missing or invalid"
    [[ "$UNIT_HOSTNAME" =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$ ]] || die "$env: HOSTNAME '$UNIT_HOSTNAME' is missing or invalid"
    [[ "$UNIT_ADMIN" =~ ^[a-z][a-z0-9_-]{0,31}$ ]] && [ "$UNIT_ADMIN" != root ] && [ "$UNIT_ADMIN" != edgewatch ] ||
        die "$env: ADMIN_USER '$UNIT_ADMIN' is missing or invalid"
    [[ "$UNIT_TIMEZONE" =~ ^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$ ]] || die "$env: TIMEZONE '$UNIT_TIMEZONE' is invalid"
    say "unit $UNIT_DEVICE_ID: hostname $UNIT_HOSTNAME, admin $UNIT_ADMIN, time zone $UNIT_TIMEZONE"
}

# --------------------------------------------------------------- hostname
set_hostname() {
    local hosts new
    printf '%s\n' "$UNIT_HOSTNAME" | put_file "$(target etc/hostname)" 0644 0:0 "hostname: /etc/hostname"
    hosts="$(target etc/hosts)"
    # Debian names the host on a 127.0.1.1 line: replace it (or add one).
    if [ -f "$hosts" ]; then
        new="$(awk -v h="$UNIT_HOSTNAME" '
            $1 == "127.0.1.1" { if (!done) print "127.0.1.1\t" h; done = 1; next }
            { print }
            END { if (!done) print "127.0.1.1\t" h }
        ' "$hosts")"
    else
        new="$(printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s' "$UNIT_HOSTNAME")"
    fi
    printf '%s\n' "$new" | put_file "$hosts" 0644 0:0 "hostname: /etc/hosts"
}

# -------------------------------------------------------------- time zone
set_timezone() {
    if [ ! -f "$(target "usr/share/zoneinfo/$UNIT_TIMEZONE")" ]; then
        # Not worth failing the first boot for: the appliance keeps UTC times.
        say "time zone: WARNING: /usr/share/zoneinfo/$UNIT_TIMEZONE not found, time zone left unchanged"
        return
    fi
    put_link etc/localtime "/usr/share/zoneinfo/$UNIT_TIMEZONE" "time zone"
    printf '%s\n' "$UNIT_TIMEZONE" | put_file "$(target etc/timezone)" 0644 0:0 "time zone: /etc/timezone"
}

# ------------------------------------------------------------- admin user
make_admin() {
    local passwd group uid first old_group old_gid old_home home keys uid_gid group_name file
    local -a prefix=()
    passwd="$(target etc/passwd)"
    group="$(target etc/group)"
    [ -f "$passwd" ] && [ -f "$group" ] || die "$(target etc): no passwd or group file: not a Debian root file system"
    if [ "$ROOT_DIR" != "/" ]; then
        prefix=(--prefix "$ROOT_DIR")
    fi
    for group_name in sudo video adm; do
        [ -n "$(field_of "$group" 1 "$group_name" 1)" ] || die "group $group_name does not exist in /etc/group"
    done

    uid="$(field_of "$passwd" 1 "$UNIT_ADMIN" 3)"
    if [ -n "$uid" ]; then
        [ "$uid" -ge 1000 ] || die "user $UNIT_ADMIN exists as a system account (UID $uid): choose another admin name"
        say "admin: user $UNIT_ADMIN exists (UID $uid)"
    else
        first="$(field_of "$passwd" 3 1000 1)"
        if [ -n "$first" ]; then
            # Take over the image's first user, as Raspberry Pi Imager does:
            # Raspberry Pi OS would otherwise ask for a user on the console.
            old_gid="$(field_of "$passwd" 1 "$first" 4)"
            old_group="$(field_of "$group" 3 "$old_gid" 1)"
            old_home="$(field_of "$passwd" 1 "$first" 6)"
            usermod "${prefix[@]}" --login "$UNIT_ADMIN" "$first"
            if [ -n "$old_home" ] && [ -d "$(target "$old_home")" ]; then
                usermod "${prefix[@]}" --home "/home/$UNIT_ADMIN" --move-home "$UNIT_ADMIN"
            else
                usermod "${prefix[@]}" --home "/home/$UNIT_ADMIN" "$UNIT_ADMIN"
            fi
            if [ "$old_group" = "$first" ]; then
                groupmod "${prefix[@]}" --new-name "$UNIT_ADMIN" "$first"
            fi
            for file in etc/subuid etc/subgid; do
                if [ -f "$(target "$file")" ]; then
                    sed -i "s/^$first:/$UNIT_ADMIN:/" "$(target "$file")"
                fi
            done
            # The image's sudoers line for that user, replaced by ours below.
            if [ -f "$(target etc/sudoers.d/010_pi-nopasswd)" ] &&
                [ "$(awk '{ print $1; exit }' "$(target etc/sudoers.d/010_pi-nopasswd)")" = "$first" ]; then
                remove_path etc/sudoers.d/010_pi-nopasswd "admin: sudoers of the former $first"
            fi
            CHANGES=$((CHANGES + 1))
            say "admin: renamed the image's first user $first (UID 1000) to $UNIT_ADMIN"
        else
            useradd "${prefix[@]}" --create-home --user-group --shell /bin/bash \
                --comment "edgewatch field admin" "$UNIT_ADMIN"
            CHANGES=$((CHANGES + 1))
            say "admin: created user $UNIT_ADMIN"
        fi
    fi
    # Groups, and no password at all ("!": locked, and no hash left to unlock).
    # usermod rewrites the files even when nothing changes: only when needed.
    local missing=()
    for group_name in sudo video adm; do
        if ! awk -F: -v g="$group_name" -v u="$UNIT_ADMIN" '
            $1 == g { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) found = 1 }
            END { exit !found }' "$group"; then
            missing+=("$group_name")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        usermod "${prefix[@]}" --append --groups "$(IFS=,; printf '%s' "${missing[*]}")" "$UNIT_ADMIN"
        CHANGES=$((CHANGES + 1))
        say "admin: added $UNIT_ADMIN to the group(s) ${missing[*]}"
    fi
    if [ "$(field_of "$(target etc/shadow)" 1 "$UNIT_ADMIN" 2)" != '!' ]; then
        usermod "${prefix[@]}" --password '!' "$UNIT_ADMIN"
        CHANGES=$((CHANGES + 1))
        say "admin: password of $UNIT_ADMIN removed and locked"
    fi
    say "admin: $UNIT_ADMIN is in the groups sudo, video, adm and has no password (SSH keys only)"

    uid_gid="$(field_of "$passwd" 1 "$UNIT_ADMIN" 3):$(field_of "$passwd" 1 "$UNIT_ADMIN" 4)"
    home="$(target "$(field_of "$passwd" 1 "$UNIT_ADMIN" 6)")"
    mkdir -p -- "$home/.ssh"
    chown "$uid_gid" -- "$home" "$home/.ssh"
    chmod 0700 -- "$home" "$home/.ssh"
    keys="$BOOT_DIR/edgewatch/authorized_keys"
    [ -f "$keys" ] || die "$keys not found: the admin would have no way to log in"
    grep -Eq '^(ssh-|ecdsa-|sk-)' "$keys" || die "$keys holds no SSH public key: the admin would have no way to log in"
    put_file "$home/.ssh/authorized_keys" 0600 "$uid_gid" "admin: ~$UNIT_ADMIN/.ssh/authorized_keys" < "$keys"

    # With no password, sudo must not ask for one.
    printf '# Installed by edgewatch firstrun.sh: the admin has no password (SSH keys only).\n%s ALL=(ALL) NOPASSWD: ALL\n' "$UNIT_ADMIN" |
        put_file "$(target etc/sudoers.d/010_edgewatch-admin)" 0440 0:0 "admin: /etc/sudoers.d/010_edgewatch-admin"
}

# Raspberry Pi OS bookworm asks for a user name and password on the console
# at the first boot (userconf-pi's userconfig.service, which also disables
# getty@tty1) until a user has been set up; Imager's customisation switches it
# off (cancel-rename). The admin is set up, so: mask the wizard (a console
# user must not be able to create an account with a password), drop its
# sshd banner, bring back the console login prompt.
disable_rename_wizard() {
    local wants="etc/systemd/system/multi-user.target.wants/userconfig.service" getty
    if [ -e "$(target "$wants")" ] || [ -L "$(target "$wants")" ] || system_unit userconfig.service > /dev/null; then
        remove_path "$wants" "rename-user wizard"
        put_link etc/systemd/system/userconfig.service /dev/null "rename-user wizard: masked"
        remove_path etc/ssh/sshd_config.d/rename_user.conf "rename-user wizard"
        if getty="$(system_unit getty@.service)"; then
            put_link etc/systemd/system/getty.target.wants/getty@tty1.service "$getty" "console login on tty1"
        fi
    else
        say "rename-user wizard: not in this image"
    fi
}

# --------------------------------------------------------------------- ssh
enable_ssh() {
    local unit
    put_file "$(target etc/ssh/sshd_config.d/00-edgewatch.conf)" 0644 0:0 "ssh: /etc/ssh/sshd_config.d/00-edgewatch.conf" <<'CONF'
# Installed by edgewatch firstrun.sh: SSH with public keys only, never as
# root. sshd uses the first value it reads for each keyword, and Debian's
# sshd_config includes sshd_config.d/*.conf first, in name order: 00- wins.
PubkeyAuthentication yes
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no
# The admin's password is locked ("!"): without PAM, sshd would refuse a
# locked account even with a valid key. Debian's default, made explicit.
UsePAM yes
CONF
    unit="$(system_unit ssh.service)" || die "ssh.service not found in the image: openssh-server is not installed"
    put_link etc/systemd/system/multi-user.target.wants/ssh.service "$unit" "ssh: enabled"
    put_link etc/systemd/system/sshd.service "$unit" "ssh: alias sshd.service"
    # Debian's switch that keeps sshd from starting even when enabled.
    remove_path etc/ssh/sshd_not_to_be_run "ssh"
}

# ----------------------------------------------------------- setup service
install_setup_unit() {
    local unit="$BOOT_DIR/edgewatch/edgewatch-setup.service"
    [ -f "$unit" ] || die "$unit not found: the card is incomplete"
    put_file "$(target etc/systemd/system/edgewatch-setup.service)" 0644 0:0 \
        "setup: /etc/systemd/system/edgewatch-setup.service" < "$unit"
    put_link etc/systemd/system/multi-user.target.wants/edgewatch-setup.service \
        /etc/systemd/system/edgewatch-setup.service "setup: enabled"
}

# ------------------------------------------------------------- cmdline.txt
clean_cmdline() {
    local cmdline="$BOOT_DIR/cmdline.txt" line rest word
    local -a words kept=()
    line="$(head -n 1 -- "$cmdline")"
    rest="$(tail -n +2 -- "$cmdline")"
    read -r -a words <<< "$line"
    for word in "${words[@]}"; do
        case "$word" in
            systemd.run=* | systemd.run_success_action=* | systemd.run_failure_action=* | \
                systemd.unit=kernel-command-line.target) ;;
            *) kept+=("$word") ;;
        esac
    done
    if [ "${#kept[@]}" -eq "${#words[@]}" ]; then
        say "cmdline.txt: no systemd.run arguments"
        return
    fi
    [ "${#kept[@]}" -gt 0 ] || die "$cmdline would be empty without the systemd.run arguments: left as it is"
    # One line, as before; anything after it (there should be nothing) kept.
    {
        printf '%s\n' "${kept[*]}"
        if [ -n "$rest" ]; then
            printf '%s\n' "$rest"
        fi
    } | put_file "$cmdline" - - "cmdline.txt: systemd.run arguments removed"
}

main() {
    trap cleanup EXIT
    say "first boot of an edgewatch unit, $(date -u +%Y-%m-%dT%H:%M:%SZ); root $ROOT_DIR, boot $BOOT_DIR"
    load_settings
    set_hostname
    set_timezone
    make_admin
    disable_rename_wizard
    enable_ssh
    install_setup_unit
    # Last: cmdline.txt, then this script. Until then the next boot runs it
    # again; a power cut between the two leaves a harmless firstrun.sh.
    clean_cmdline
    if [ -e "$BOOT_DIR/firstrun.sh" ]; then
        rm -f -- "$BOOT_DIR/firstrun.sh"
        CHANGES=$((CHANGES + 1))
        say "removed $BOOT_DIR/firstrun.sh"
    fi
    sync
    if [ "$CHANGES" -eq 0 ]; then
        say "done: nothing changed, the first boot had already been completed"
    else
        say "done: $CHANGES change(s); edgewatch-setup.service installs the appliance after the reboot"
    fi
}

# ---------------------------------------------------------------- arguments
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --root | --boot)
            [ "$#" -ge 2 ] || die "$1 needs a directory (see --help)"
            if [ "$1" = --root ]; then ROOT_DIR="$2"; else BOOT_DIR="$2"; fi
            shift 2
            ;;
        --root=*)
            ROOT_DIR="${1#--root=}"
            shift
            ;;
        --boot=*)
            BOOT_DIR="${1#--boot=}"
            shift
            ;;
        *)
            die "unknown option: $1 (see --help)"
            ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "needs root (it creates users and writes /etc)"
[ -d "$ROOT_DIR" ] || die "--root $ROOT_DIR: no such directory"
[ -d "$ROOT_DIR/etc" ] || die "--root $ROOT_DIR: no etc/ directory, this does not look like a Debian root file system"
[ -d "$BOOT_DIR" ] || die "--boot $BOOT_DIR: no such directory"
[ -f "$BOOT_DIR/cmdline.txt" ] || die "--boot $BOOT_DIR: no cmdline.txt, this is not a Raspberry Pi boot partition"
ROOT_DIR="$(cd -- "$ROOT_DIR" && pwd -P)"
BOOT_DIR="$(cd -- "$BOOT_DIR" && pwd -P)"

LOG="$(target "$LOG_REL")"
mkdir -p -- "$(dirname -- "$LOG")"
touch -- "$LOG"
chmod 0640 -- "$LOG"
# Everything goes to the console (or the caller) and to the log; the exit
# status is main's (pipefail).
main 2>&1 | tee -a -- "$LOG"
