#!/usr/bin/env bash
# The README's "Install for production" on a fresh Debian 12, by hand: a debootstrap chroot (minbase + systemd, as a
# new server has), this checkout copied to root's home, and every line of the README's block run as written, as
# root and then (runuser) as the service user, against `docsync sandbox serve` started by root in its home. It ends
# green only when `docsync check` passed, the timer was enabled, the unit's first runs synced documents, `status`
# shows them, and no output anywhere holds a traceback. Then issue 22's first-hour failure is replayed on the real
# default paths: a state directory a root run took, and the service user's sync/status/check without
# DOCSYNC_STATE_DIR must give the owner, the fix and exit 4 (check: its red line), never a traceback.
#
# Run as root on a Debian machine (debootstrap is installed when missing); it downloads Debian 12 and the
# packages the README installs (Debian's mirror: DEBIAN_MIRROR, default deb.debian.org) and docsync's dependencies
# from PyPI. Takes several minutes. Without a running systemd in the chroot, `systemctl daemon-reload`,
# `list-timers` and `journalctl -f` print what they cannot do (or are skipped), `enable` works offline, and the
# timer's runs are the installed unit's ExecStart= as its User= with its Environment= and LoadCredential= files.
#
#   bash scripts/chroot-test.sh            # CHROOT_DIR=/path to keep the chroot (removed otherwise)
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEEP=${CHROOT_DIR:+yes}
DIR=${CHROOT_DIR:-$(mktemp -d /tmp/docsync-chroot-XXXXXX)}
chmod 0755 "$DIR" 2>/dev/null || true  # the chroot's /: mktemp made it 0700, which would lock the service user out
LOG=${CHROOT_LOG:-$DIR.log}
START=$(date +%s)

[ "$(id -u)" = 0 ] || { echo "chroot-test: run as root" >&2; exit 2; }
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap; }

cleanup() {
    if [ -s "$DIR/root/serve.pid" ]; then kill "$(cat "$DIR/root/serve.pid")" 2>/dev/null || true; sleep 1; fi
    for mount in dev/pts dev/shm dev proc sys; do
        mountpoint -q "$DIR/$mount" && umount -l "$DIR/$mount" || true
    done
    [ "$KEEP" = yes ] || rm -rf --one-file-system "$DIR"
}
trap cleanup EXIT

echo "chroot-test: debootstrap bookworm into $DIR (log: $LOG)"
if [ ! -x "$DIR/usr/bin/apt-get" ]; then
    debootstrap --variant=minbase --include=systemd,ca-certificates bookworm "$DIR" "$MIRROR" >"$LOG" 2>&1 \
        || { tail -20 "$LOG"; exit 1; }
fi
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$DIR/etc/ssl/certs/ca-certificates.crt"  # the host's CAs, for pip
mount -t proc proc "$DIR/proc"
mount -t sysfs sys "$DIR/sys"
mount --bind /dev "$DIR/dev"
mount --bind /dev/pts "$DIR/dev/pts"
mount -t tmpfs shm "$DIR/dev/shm"

# the checkout, as an admin's clone would be (no venv, no build output)
rm -rf "$DIR/root/docsync" && mkdir -p "$DIR/root/docsync"
tar -C "$HERE" --exclude=./.venv --exclude=./.git --exclude=./dist --exclude=./build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache -cf - . | tar -C "$DIR/root/docsync" -xf -
chmod 0700 "$DIR/root"

# the README's block, as written, split where it needs the emulators (the first line about /etc/docsync)
awk '/^## Install for production/{f=1} f&&/^```sh$/{b=1;next} b&&/^```$/{exit} b&&NF' "$HERE/README.md" \
    >"$DIR/root/readme-block.sh"
first_config=$(grep -n '/etc/docsync' "$DIR/root/readme-block.sh" | head -1 | cut -d: -f1)
head -n $((first_config - 1)) "$DIR/root/readme-block.sh" >"$DIR/root/phase1.sh"
tail -n +"$first_config" "$DIR/root/readme-block.sh" \
    | sed -e 's/^journalctl .* -f .*/: skipped, it follows forever: &/' \
          -e 's/^runuser .* docsync status .*/: run below, after the two runs of the unit: &/' >"$DIR/root/phase2.sh"

cat >"$DIR/root/driver.sh" <<'DRIVER'
set -euo pipefail
H=~root  # root's home: serve is started there, as in issue 22
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
run_lines() {  # each line as the README shows it, echoed first
    while IFS= read -r line <&3; do
        echo "+ $line"
        bash -euo pipefail -c "$line"
    done 3<"$1"
}
cd "$H/docsync"
echo "== the README, first half (as root)"
run_lines $H/phase1.sh

echo "== docsync sandbox serve, started by root in its home"
cd "$H"
setsid docsync sandbox serve --processing-delay 0 >$H/serve.out 2>$H/serve.err &
echo $! >$H/serve.pid
cd "$H/docsync"
for _ in $(seq 120); do grep -q 'stops the emulators' $H/serve.out 2>/dev/null && break; sleep 1; done
grep -q 'stops the emulators' $H/serve.out || { cat $H/serve.err; exit 1; }
value() { sed -n "s/^export $1=//p" $H/serve.out; }

echo "== the README, second half (root, then the service user); the keys typed at its prompts"
printf '%s\n%s\n%s\n' "$(value ESPOCRM_API_KEY)" "$(value XAI_API_KEY)" "$(value XAI_MANAGEMENT_KEY)" >$H/keys
while IFS= read -r line <&3; do
    echo "+ $line"
    case "$line" in
        "systemctl enable"*|"systemctl daemon-reload"*|"systemctl list-timers"*)
            # no running systemd in a chroot: enable works offline (checked below), the others say they cannot
            bash -euo pipefail -c "$line" </dev/null || echo "(exit $?: needs a running systemd)" ;;
        *) bash -euo pipefail -c "$line" <$H/keys ;;
    esac
    case "$line" in
        "install "*config.toml*)  # the admin's edit the block's comment asks for: here, the emulators' URLs
            sed -i -e "s|^url = .*|url = \"$(value ESPOCRM_URL)\"|" -e "s|^api_url = .*|api_url = \"$(value XAI_API_URL)\"|" \
                -e "s|^management_url = .*|management_url = \"$(value XAI_MANAGEMENT_URL)\"|" /etc/docsync/config.toml
            echo "(edited: [espocrm] url, [xai] api_url and management_url = the emulators')" ;;
    esac
done 3<$H/phase2.sh
rm $H/keys

echo "== the timer's first two runs: the installed unit's ExecStart= as its User=, Environment=, LoadCredential="
unit=/etc/systemd/system/docsync.service
[ -L /etc/systemd/system/timers.target.wants/docsync.timer ] || { echo "timer not enabled"; exit 1; }
creds=/run/credentials/docsync.service
install -d -m 0700 -o docsync -g docsync "$creds" /var/cache/docsync
sed -n 's/^LoadCredential=\(.*\):\(.*\)$/\1 \2/p' "$unit" | while read -r name source; do
    install -m 0400 -o docsync -g docsync "$source" "$creds/$name"
done
envs=$(sed -n 's/^Environment=//p' "$unit" | sed -e 's|%S|/var/lib|g' -e 's|%C|/var/cache|g' | tr '\n' ' ')
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
for run in 1 2; do
    set +e
    # shellcheck disable=SC2086  # the unit's words, split as systemd splits them
    runuser -u "$user" -- env -i PATH="$PATH" CREDENTIALS_DIRECTORY="$creds" $envs $exec_start
    code=$?
    set -e
    echo "(run $run: exit $code)"
    [ "$run" = 1 ] && [ "$code" != 1 ] && { echo "the first run should sync 19 and fail 2 seeded documents"; exit 1; }
    [ "$run" = 2 ] && [ "$code" != 0 ] && exit 1
done
echo "== watching the first runs, as the README says"
status_line=$(grep 'docsync status' $H/readme-block.sh | sed 's/ *#.*//')
echo "+ $status_line"
bash -euo pipefail -c "$status_line"

echo "== issue 22, item 1: a root run took the state directory; the service user, no DOCSYNC_STATE_DIR"
chown -R root:root /var/lib/docsync
for command in sync status check; do
    set +e
    runuser -u docsync -- env -i PATH="$PATH" CREDENTIALS_DIRECTORY=/etc/docsync/credentials docsync $command \
        >$H/out 2>&1
    code=$?
    set -e
    cat $H/out
    want=4; [ "$command" = check ] && want=2
    [ "$code" = "$want" ] || { echo "$command: exit $code, wanted $want"; exit 1; }
    grep -q 'chown -R docsync:docsync /var/lib/docsync' $H/out || { echo "$command: no fix named"; exit 1; }
done
chown -R docsync:docsync /var/lib/docsync
echo "== done"
DRIVER

echo "chroot-test: running the README in the chroot"
set +e
chroot "$DIR" /bin/bash -c 'bash ~root/driver.sh' >>"$LOG" 2>&1
code=$?
set -e
elapsed=$(( $(date +%s) - START ))
if grep -n 'Traceback' "$LOG"; then
    echo "chroot-test: FAILED: a traceback in the output (log: $LOG)"; exit 1
fi
if [ "$code" != 0 ]; then
    tail -40 "$LOG"; echo "chroot-test: FAILED (exit $code) after ${elapsed}s (log: $LOG)"; exit 1
fi
grep -E '^(\+ runuser .*docsync check|✓ state directory|.*synced, .* failed|\(run [12])' "$LOG" | head -20
echo "chroot-test: PASSED in ${elapsed}s: the README's production path, check green, timer enabled, documents synced (log: $LOG)"
