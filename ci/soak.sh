#!/usr/bin/env bash
# The soak (issue 14), two parts, one table each; see examples/soak.rs.
#
# Signatures: N signatures per backend (software key file, SoftHSM2, swtpm with a
# tpm:key= file and with a persistent handle) in one process, each key opened once, with
# open fds, VmRSS, live PKCS#11 sessions and TPM transient objects measured after the
# warm-up and at the end; then the SoftHSM2 key under the fault-injecting PKCS#11 proxy
# (tests/pkcs11/shim/faults.c): a fault every K-th C_Sign, the token pulled out five
# times. Fails if fds, sessions or TPM objects differ, RSS grew past its bound, any
# signature is wrong (each is checked with the RustCrypto rsa crate), or a fault was not
# recovered or reported as its typed error.
#
# Serve (examples/soak/serve.rs): the built `certassert serve` with two identities (a
# swtpm tpm:key= file, a SoftHSM2 key behind the proxy) against the built-in emulator
# (short-lived tokens), under 32 client threads (App Service and IMDS, negative controls
# among them) for S seconds, swtpm killed and restarted twice, the proxy failing every
# K-th C_Sign and pulling the token out three times. Fails on any wrong answer (each
# token's signature checked against the emulator's key, its client and resource), an
# error that is not a JSON {error, error_description}, a dropped or hung request, a
# recovery over 30 s, fd growth in the serve process, a PIN presented twice for one
# loss, or a TPM object left after SIGTERM.
#
#   ci/soak.sh                 # full: 10,000 signatures a backend, fault every 50 calls;
#                              #   serve for 600 s, fault every 10 C_Sign, tokens of 120 s
#   ci/soak.sh --short         # the CI step (about 60 s in a debug build): 300 signatures
#                              #   a backend, fault every 20; serve for 36 s, fault every 10
#                              #   C_Sign, tokens of 70 s (renewed every 10 s)
#   ci/soak.sh 2000 25         # N signatures, fault every K C_Sign calls (serve as in full)
#   SOAK_SERVE_SECONDS=120 ci/soak.sh --short   # the serve run's length, in seconds
#   SOAK_PROFILE=release ci/soak.sh   # an optimised build (default: debug)
#   SOAK_BACKENDS=softhsm2,faults ci/soak.sh --short   # some of software, softhsm2,
#                              #   tpm-key, tpm-handle, faults, serve (default: all)
#   SOAK_BACKENDS=serve ci/soak.sh --short   # the serve soak alone
#
# Needs softhsm2, opensc (pkcs11-tool), swtpm, tpm2-tools, openssl and gcc with
# libp11-kit-dev (ci/install-deps.sh pkcs11 tpm). Builds certassert itself (serve runs
# the binary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null

signatures=10000 every=50
serve_seconds=600 serve_every=10 lifetime=120
case "${1:-}" in
    --short) signatures=300 every=20 serve_seconds=36 serve_every=10 lifetime=70 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) signatures="$1"; every="${2:-$every}" ;;
esac
serve_seconds="${SOAK_SERVE_SECONDS:-$serve_seconds}"

profile=()
[[ "${SOAK_PROFILE:-debug}" == release ]] && profile=(--release)
backends=()
[[ -n "${SOAK_BACKENDS:-}" ]] && backends=(--backends "$SOAK_BACKENDS")

echo "== soak: $signatures signatures a backend, a fault every $every C_Sign calls; serve for $serve_seconds s, a fault every $serve_every C_Sign (${SOAK_PROFILE:-debug} build)"
start=$(date +%s)
cargo build --quiet "${profile[@]}" --bin certassert
cargo run --quiet "${profile[@]}" --example soak -- \
    --signatures "$signatures" --fault-every "$every" \
    --serve-seconds "$serve_seconds" --serve-fault-every "$serve_every" \
    --token-lifetime "$lifetime" "${backends[@]}"
echo "== soak: passed in $(($(date +%s) - start)) s"
