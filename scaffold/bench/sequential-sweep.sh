#!/usr/bin/env bash
# The baseline the benchmark compares `repl orphans sweep` with: SkyREPL's OrbStack
# provider deletes machines one at a time: stop, a 1-second grace, delete.
# Usage: sequential-sweep.sh ORBCTL NAME...
set -u
orbctl="$1"; shift
for name in "$@"; do
  "$orbctl" stop "$name"
  sleep 1
  "$orbctl" delete -f "$name"
done
