#!/bin/sh
# Private-key seeds for the keyfile fuzz target, made fresh by openssl (keys are never
# committed): PKCS#8 and PKCS#1, PEM and DER, encrypted PKCS#8 (password "fuzz", and a
# cheap PBKDF2 count so each run stays fast), a legacy encrypted PEM, PKCS#12 with the
# password "fuzz" and with an empty one, and a PEM bundling key and certificate.
# They go to fuzz/corpus/keyfile/ (ignored by git), which ci/fuzz.sh fuzzes.
#   fuzz/make-seeds.sh [OUT_DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/corpus/keyfile}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
o() { openssl "$@" 2>/dev/null; }

o genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/k.pem"
o req -x509 -new -key "$tmp/k.pem" -subj /CN=fuzz -days 30 -out "$tmp/c.pem"
cp "$tmp/k.pem" "$out/pkcs8.pem"
o pkey -in "$tmp/k.pem" -outform DER -out "$out/pkcs8.der"
o rsa -in "$tmp/k.pem" -traditional -out "$out/pkcs1.pem"
o rsa -in "$tmp/k.pem" -traditional -outform DER -out "$out/pkcs1.der"
o pkcs8 -topk8 -in "$tmp/k.pem" -v2 aes-256-cbc -iter 1 -passout pass:fuzz -out "$out/encrypted.pem"
o pkcs8 -topk8 -in "$tmp/k.pem" -v2 aes-256-cbc -iter 1 -passout pass:fuzz -outform DER -out "$out/encrypted.der"
o rsa -in "$tmp/k.pem" -traditional -aes128 -passout pass:fuzz -out "$out/legacy-encrypted.pem"
o pkcs12 -export -inkey "$tmp/k.pem" -in "$tmp/c.pem" -passout pass:fuzz -iter 1 -maciter -out "$out/fuzz.p12"
o pkcs12 -export -inkey "$tmp/k.pem" -in "$tmp/c.pem" -passout pass: -iter 1 -out "$out/empty-password.p12"
o pkcs12 -export -inkey "$tmp/k.pem" -in "$tmp/c.pem" -passout pass:fuzz -legacy -out "$out/legacy.p12" || true
cat "$tmp/k.pem" "$tmp/c.pem" > "$out/bundle.pem"
o genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ec.pem"
echo "keyfile seeds in $out: $(ls "$out" | wc -l) files"
