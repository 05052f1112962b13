#!/usr/bin/env bash
# The soak (issue 14): N signatures per backend (software key file, SoftHSM2, swtpm with a
# tpm:key= file and with a persistent handle) in one process, each key opened once, with
# open fds, VmRSS, live PKCS#11 sessions and TPM transient objects measured after the
# warm-up and at the end; then the SoftHSM2 key under the fault-injecting PKCS#11 proxy
# (tests/pkcs11/shim/faults.c): a fault every K-th C_Sign, the token pulled out five
# times. Prints a table; exits 1 if fds, sessions or TPM objects differ, RSS grew past
# its bound, any signature is wrong (each is checked with the RustCrypto rsa crate), or
# a fault was not recovered or reported as its typed error. See examples/soak.rs.
#
#   ci/soak.sh                 # the full run: 10,000 signatures a backend, fault every 50 calls
#   ci/soak.sh --short         # the CI step: 300 signatures a backend, fault every 20 calls
#   ci/soak.sh 2000 25         # N signatures, fault every K C_Sign calls
#   SOAK_PROFILE=release ci/soak.sh   # an optimised build (default: debug)
#   SOAK_BACKENDS=softhsm2,faults ci/soak.sh --short
#
# Needs softhsm2, opensc (pkcs11-tool), swtpm, tpm2-tools, openssl and gcc with
# libp11-kit-dev (ci/install-deps.sh pkcs11 tpm). `serve` under 32 concurrent clients
# joins when `certassert serve` lands (examples/soak.rs, serve_soak).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null

signatures=10000 every=50
case "${1:-}" in
    --short) signatures=300 every=20 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) signatures="$1"; every="${2:-$every}" ;;
esac

profile=()
[[ "${SOAK_PROFILE:-debug}" == release ]] && profile=(--release)
backends=()
[[ -n "${SOAK_BACKENDS:-}" ]] && backends=(--backends "$SOAK_BACKENDS")

echo "== soak: $signatures signatures a backend, a fault every $every C_Sign calls (${SOAK_PROFILE:-debug} build)"
start=$(date +%s)
cargo run --quiet "${profile[@]}" --example soak -- \
    --signatures "$signatures" --fault-every "$every" "${backends[@]}"
echo "== soak: passed in $(($(date +%s) - start)) s"
