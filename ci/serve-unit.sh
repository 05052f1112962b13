#!/usr/bin/env bash
# Check the systemd unit the README gives for `certassert serve` (the ```ini block after
# the line `<!-- unit: certassert-serve.service -->`) with `systemd-analyze verify`, and
# show its `systemd-analyze security` rating. The unit's /usr/local/bin/certassert is
# replaced by a binary that exists (certassert on PATH, else target/debug or
# target/release), since verify checks that ExecStart's program is there. A warning from
# verify (a misspelt directive) fails the check.
#
#   ci/serve-unit.sh [README]        exit 0: verified, or skipped where there is no systemd
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readme="${1:-README.md}"

if ! command -v systemd-analyze >/dev/null; then
    echo "serve-unit: systemd-analyze is not installed; skipped"
    exit 0
fi
bin="$(command -v certassert || true)"
for candidate in "$PWD/target/debug/certassert" "$PWD/target/release/certassert"; do
    [[ -n "$bin" ]] && break
    [[ -x "$candidate" ]] && bin="$candidate"
done
[[ -n "$bin" ]] || { echo "serve-unit: error: no certassert binary (cargo build first)" >&2; exit 1; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/certassert-unit.XXXXXX")"
trap 'rm -rf -- "$dir"' EXIT
unit="$dir/certassert-serve.service"
awk '/^<!-- unit: certassert-serve.service -->$/ { marked = 1; next }
     marked && /^```ini$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$readme" | sed "s#/usr/local/bin/certassert#$bin#g" >"$unit"
[[ -s "$unit" ]] || { echo "serve-unit: error: no unit after <!-- unit: certassert-serve.service --> in $readme" >&2; exit 1; }
grep -q '^ExecStart=' "$unit" || { echo "serve-unit: error: the unit in $readme has no ExecStart" >&2; exit 1; }

# verify exits 0 on an unknown or misspelt directive (it only warns): any output fails.
if ! out="$(systemd-analyze verify "$unit" 2>&1)" || [[ -n "$out" ]]; then
    printf '%s\n' "$out" >&2
    echo "serve-unit: error: systemd-analyze verify does not accept the unit in $readme" >&2
    exit 1
fi
echo "serve-unit: systemd-analyze verify: ok"
systemd-analyze security --offline=yes "$unit" 2>/dev/null | tail -1 || true
