#!/usr/bin/env bash
# The README's first command: the whole certassert flow on this machine, nothing to set up.
# Builds certassert, then `certassert demo` makes a key (a throwaway SoftHSM2 token when
# SoftHSM2 is installed, else a software key file), a self-signed certificate, starts the
# Entra token-endpoint emulator on loopback with that certificate registered, gets an
# access token with a signed client assertion (then again from the cache), and prints the
# token's claims and the timings. Nothing talks to Entra ID; every file is deleted on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -t 1 ]]; then
    BOLD=$'\033[1m' PLAIN=$'\033[0m'
else
    BOLD='' PLAIN=''
fi

section() {
    printf '\n%s== %s%s\n' "$BOLD" "$1" "$PLAIN"
    shift
    local line
    for line in "$@"; do
        printf '   %s\n' "$line"
    done
}

section "Preparing" "Installing missing system packages and building certassert (release)."
ci/install-deps.sh pkcs11 tpm
cargo build --release
BIN="$PWD/target/release/certassert"

# The demo uses its own key, certificate, emulator and cache; nothing from the caller's
# environment may leak in.
unset CERTASSERT_KEY CERTASSERT_CERT AZURE_CLIENT_CERTIFICATE_PATH AZURE_CLIENT_CERTIFICATE_PASSWORD \
    AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_AUTHORITY_HOST

section "certassert demo" \
    "key -> self-signed certificate -> local Entra emulator -> access token"
printf '$ certassert demo\n'
"$BIN" demo

section "Done" \
    "Next, with your own app registration: upload the certificate shown by" \
    "  certassert cert show --cert app.cert.pem" \
    "then get tokens with" \
    "  certassert token --key KEY --cert app.cert.pem --tenant T --client-id C --scope https://graph.microsoft.com/.default" \
    "and if Entra refuses, ask" \
    "  certassert doctor --key KEY --cert app.cert.pem --tenant T --client-id C"
