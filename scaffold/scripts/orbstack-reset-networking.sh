#!/usr/bin/env bash
# Recover OrbStack from machine-address exhaustion ("missing IP address").
#
# OrbStack's DHCP pool (238 addresses, 24 h leases) can be exhausted by rapid
# create/delete cycles; then every create fails, even across an OrbStack restart.
# Pivoting network.subnet4 to another /23 and back drops the stale leases.
#
# Run it yourself, on the macOS host. repl only ever points to this script; it never runs it.
# It refuses to run inside an OrbStack machine or anywhere but macOS.
set -euo pipefail

if [ "$(uname -s)" != "Darwin" ]; then
  echo "orbstack-reset-networking: run this on the macOS host that runs OrbStack, not on $(uname -s)" >&2
  exit 2
fi
in_machine=false
[ -e /opt/orbstack-guest ] && in_machine=true
if command -v mac >/dev/null 2>&1 && ! command -v orbctl >/dev/null 2>&1; then in_machine=true; fi
if [ "$in_machine" = true ]; then
  echo "orbstack-reset-networking: this looks like an OrbStack machine; run it on the macOS host instead" >&2
  exit 2
fi
command -v orbctl >/dev/null 2>&1 || { echo "orbstack-reset-networking: orbctl not found; install or relaunch OrbStack (https://orbstack.dev)" >&2; exit 3; }

if [ "${1:-}" != "--yes" ]; then
  printf 'This restarts OrbStack twice: every machine and container stops. Continue? [y/N] '
  read -r answer
  case "$answer" in y|Y|yes) ;; *) echo "nothing changed"; exit 1 ;; esac
fi

original=$(orbctl config get network.subnet4)
pivot="${PIVOT_SUBNET:-192.168.200.0/23}"
if [ "$original" = "$pivot" ]; then pivot="192.168.202.0/23"; fi
record="${TMPDIR:-/tmp}/orbstack-machines-$(date +%Y%m%d-%H%M%S).json"

echo "1/5 recording machines to $record"
orbctl list --format json > "$record"

echo "2/5 pivoting network.subnet4 $original -> $pivot"
orbctl config set network.subnet4 "$pivot"
orbctl stop >/dev/null 2>&1 || true   # deliberate: the network change needs OrbStack itself restarted
orbctl status >/dev/null 2>&1 || orbctl start >/dev/null 2>&1 || true

echo "3/5 pivoting back to $original"
orbctl config set network.subnet4 "$original"
orbctl stop >/dev/null 2>&1 || true
orbctl start >/dev/null 2>&1 || true

echo "4/5 verifying with a test machine"
name="reset-check-$$"
if orbctl create ubuntu "$name" >/dev/null; then
  orbctl stop "$name" >/dev/null
  orbctl delete -f "$name" >/dev/null
  echo "5/5 done: machines get addresses again (machines before the reset are listed in $record)"
else
  echo "5/5 the test machine still did not start; reboot the Mac, then try again" >&2
  exit 1
fi
