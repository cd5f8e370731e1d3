#!/usr/bin/env bash
# Fails on code that builds on Linux but not on macOS, or runs wrongly there:
#   - C types default-initialised (`posix_spawnattr_t()`): on Darwin several `_t` types
#     are opaque pointers with no empty initialiser;
#   - Linux-only code (Glibc, the proc file system, namespaces, mounts) outside
#     Sources/ReplPlatform/LinuxOnly.swift, the one place for it;
#   - date formatters made outside Sources/ReplCore/DateFormats.swift, which fixes the
#     locale (en_US_POSIX), the calendar and the time zone;
#   - argv[0] used as a path (launchd and the tests' products need the real executable).
# Comments are not checked; a line that must break a rule on purpose says why in a trailing
# `// portability: allowed, …` comment. Usage: check-portability.sh [ROOT] (default: the repository).
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/../.." && pwd)}"
cd "$root"

linux_only="Sources/ReplPlatform/LinuxOnly.swift"
date_formats="Sources/ReplCore/DateFormats.swift"
found=0

report() {  # FILE LINE RULE
  printf '%s:%s: %s\n' "$1" "$2" "$3"
  found=$((found + 1))
}

while IFS= read -r -d '' file; do
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    code="${line%%//*}"  # drop a trailing comment (and, harmlessly, a URL's tail)
    [[ "$code" =~ ^[[:space:]]*$ ]] && continue
    [[ "$line" == *"// portability: allowed"* ]] && continue
    if [[ "$code" =~ [A-Za-z0-9_]+_t\(\) ]]; then
      report "$file" "$n" "${BASH_REMATCH[0]}: a C type default-initialised; on Darwin it may be an opaque pointer (write an explicit value, or use ReplPlatform)"
    fi
    if [ "$file" != "$linux_only" ]; then
      if [[ "$code" =~ (import[[:space:]]+Glibc|Glibc\.|canImport\(Glibc\)|\"/proc/|\"/proc\"|[^A-Za-z_]unshare[^A-Za-z_]|[^A-Za-z_.]mount\(|sethostname|MS_BIND|MS_REC|CLONE_NEW) ]]; then
        report "$file" "$n" "${BASH_REMATCH[1]}: Linux-only; it belongs in $linux_only behind #if os(Linux)"
      fi
    fi
    if [ "$file" != "$date_formats" ]; then
      if [[ "$code" =~ (ISO8601DateFormatter\(|DateFormatter\(\)|\.formatted\(date|Date\.FormatStyle) ]]; then
        report "$file" "$n" "${BASH_REMATCH[1]}: a date formatter outside $date_formats (fixed en_US_POSIX locale, Gregorian calendar)"
      fi
    fi
    if [[ "$code" =~ CommandLine\.arguments\[0\] ]] && [[ ! "$code" =~ lastPathComponent ]]; then
      report "$file" "$n" "CommandLine.arguments[0] as a path: use Platform.executablePath()"
    fi
  done < "$file"
done < <(find Sources Tests -name '*.swift' -print0 2>/dev/null | sort -z)

if [ "$found" -gt 0 ]; then
  echo "portability check: $found problem(s)" >&2
  exit 1
fi
echo "portability check: clean"
