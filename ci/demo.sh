#!/usr/bin/env bash
# A first look at certassert with a software key, in a throwaway directory:
# key -> self-signed certificate -> thumbprints -> client assertion -> lint.
# Nothing talks to Entra ID; every file is deleted on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TENANT=contoso.onmicrosoft.com
CLIENT_ID=11111111-2222-3333-4444-555555555555

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

run() {
    printf '$ %s\n' "$*"
    "$@"
}

section "Preparing" "Installing missing system packages and building certassert (release)."
ci/install-deps.sh
cargo build --release
BIN="$PWD/target/release/certassert"

D="$(mktemp -d "${TMPDIR:-/tmp}/certassert-demo.XXXXXX")"
trap 'rm -rf -- "$D"' EXIT
cd "$D"
echo "Working in $D (deleted on exit)."
# Explicit flags below; make sure nothing from the caller's environment leaks in.
unset CERTASSERT_KEY CERTASSERT_CERT AZURE_CLIENT_CERTIFICATE_PATH AZURE_CLIENT_CERTIFICATE_PASSWORD

certassert() {
    "$BIN" "$@"
}

section "1. Generate an RSA key" \
    "A 2048-bit key in a PKCS#8 PEM file (mode 0600). With an HSM, smartcard or TPM," \
    "--key would be a pkcs11:, piv: or tpm: reference and the key would never leave it."
run certassert key generate --key app.key.pem

section "2. Create a self-signed certificate" \
    "This certificate (not the key) is what you upload to the app registration" \
    "under Certificates & secrets."
run certassert cert create --key app.key.pem --subject "CN=certassert-demo" \
    --days 365 --out app.cert.pem

section "3. Show the certificate" \
    "The hex SHA-1 thumbprint is what the Entra portal lists; x5t is the same hash" \
    "in base64url, as it appears in an RS256 assertion header."
run certassert cert show --cert app.cert.pem

section "4. Sign a client assertion" \
    "The JWT that is posted as client_assertion to the tenant's token endpoint" \
    "(aud = https://login.microsoftonline.com/$TENANT/oauth2/v2.0/token, iss = sub = client id)."
printf '$ %s\n' "certassert assertion --key app.key.pem --cert app.cert.pem --tenant $TENANT --client-id $CLIENT_ID"
JWT="$(certassert assertion --key app.key.pem --cert app.cert.pem \
    --tenant "$TENANT" --client-id "$CLIENT_ID")"
printf '%s\n' "$JWT"

section "5. Inspect the assertion" \
    "Decode it and check it against Entra's rules: x5t names the certificate, the" \
    "signature verifies with it, the claims and lifetimes are what Entra accepts."
printf '$ %s\n' "certassert inspect --cert app.cert.pem --client-id $CLIENT_ID - <<< \"\$JWT\""
certassert inspect --cert app.cert.pem --client-id "$CLIENT_ID" - <<<"$JWT"

section "Done" \
    "Next: upload app.cert.pem to your app registration and use" \
    "certassert assertion with your own tenant and client id."
