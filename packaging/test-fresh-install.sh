#!/bin/sh
# Inside a fresh Debian 12 root (../shared/tools/fresh-debian.sh run), as root, from
# the checkout: build the package with packaging/build-deb.sh, install it with apt
# (Depends only, no Recommends), then check what an operator gets:
#   - momd started as the unit's ExecStart would (systemd is not running here: the
#     RuntimeDirectory/StateDirectory/LogsDirectory are made as systemd would) answers
#     "momctl ping" over the default socket, no flags;
#   - the unit is enabled, man pages and completion are there;
#   - SIGTERM stops momd cleanly and removes its socket; purge removes /etc/mom.
# tests/distro/test_deb_fresh_root.py runs it. Prints "fresh-install: OK" at the end.
set -eu
say() { echo "fresh-install: $*"; }
fail() { echo "fresh-install: FAILED: $*" >&2; exit 1; }

# The KSM controller in the packaged configuration must not reach the host's KSM:
# fresh-debian.sh mounts /sys read-only (without --rw-sys). Refuse to go on otherwise.
awk '$2 == "/sys" { print $4 }' /proc/mounts | grep -q '^ro' || fail "/sys is writable here; refusing to start momd"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
t0=$(date +%s)
packaging/build-deb.sh                 # README's Install: dist/deb/mom-kvm_VERSION_all.deb
t1=$(date +%s)
say "built in $((t1 - t0)) s"
apt-get install -y -qq --no-install-recommends man-db bash-completion ./dist/deb/mom-kvm_*_all.deb >/dev/null
t2=$(date +%s)
say "installed in $((t2 - t1)) s"

dpkg -s mom-kvm | grep -q '^Status: install ok installed' || fail "mom-kvm is not installed"
[ -f /etc/mom/mom.conf ] && [ -f /etc/mom/policies/balloon.policy ] && [ -f /etc/mom/policies/ksm.policy ] ||
    fail "configuration or policies missing"
[ -L /etc/systemd/system/multi-user.target.wants/momd.service ] || fail "momd.service is not enabled"
bash packaging/check-completion.bash || fail "bash completion"
for page in momd momctl mom.conf; do
    man -P cat "$page" 2>/dev/null | grep -q "^NAME" || fail "man $page does not work"
done
say "man momd, momctl, mom.conf work; unit enabled"
/usr/sbin/momd --version
momctl --version
# What systemd would make: /run/mom (tmpfiles.d at install and boot, RuntimeDirectory
# at start); the package made /var/log/mom and /var/lib/mom.
[ -d /var/log/mom ] && [ -d /var/lib/mom ] || fail "the package did not make /var/log/mom, /var/lib/mom"
grep -q '^d /run/mom ' /usr/lib/tmpfiles.d/mom-kvm.conf || fail "no tmpfiles.d entry for /run/mom"
install -d -m 0750 /run/mom
/usr/sbin/momd --check || fail "momd --check on the packaged configuration"

unit=/lib/systemd/system/momd.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ -n "$exec_start" ] || fail "no ExecStart in $unit"
say "\$ $exec_start"
$exec_start >/root/momd.log 2>&1 &
pid=$!
i=0
until [ -S /run/mom/mom.sock ]; do
    kill -0 "$pid" 2>/dev/null || { cat /root/momd.log >&2; fail "momd exited"; }
    i=$((i + 1)); [ $i -lt 300 ] || { cat /root/momd.log >&2; fail "no socket after 30 s"; }
    sleep 0.1
done
momctl ping || { cat /root/momd.log >&2; fail "momctl ping"; }
momctl health >/dev/null || true   # without libvirtd some components are faulty: shown, not fatal
kill -TERM "$pid"
status=0; wait "$pid" || status=$?
[ "$status" = 0 ] || { cat /root/momd.log >&2; fail "momd exited $status after SIGTERM"; }
[ ! -e /run/mom/mom.sock ] || fail "the socket was left behind"
say "momd answered momctl ping over /run/mom/mom.sock and stopped cleanly"

apt-get purge -y -qq mom-kvm >/dev/null
[ ! -e /etc/mom/mom.conf ] || fail "purge left /etc/mom/mom.conf"
[ ! -e /var/log/mom ] || fail "purge left /var/log/mom"
say "OK"
