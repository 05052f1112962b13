#!/usr/bin/env bash
# Provision a throwaway SoftHSM2 token directory: certassert without hardware, for the
# tests, the demo, and anyone trying the PKCS#11 path.
#
#   softhsm/provision.sh DIR                 token "certassert" with random PINs, no key
#   softhsm/provision.sh DIR --key app       + an RSA-2048 key "app" (id %01) made by
#                                              pkcs11-tool, and a self-signed certificate
#                                              stored beside it by certassert
#   softhsm/provision.sh DIR --piv           + a YubiKey-PIV-like slot 9c: key id %02,
#                                              "Private key for Digital Signature",
#                                              CKA_ALWAYS_AUTHENTICATE, and its certificate
#   options: --label TOKEN (default certassert)  --certassert PATH (default: on PATH, else
#            target/debug/certassert)  --module PATH (default SoftHSM2's)
#
# DIR must be new or empty. The PINs are written to DIR/pin and DIR/so-pin (mode 0600)
# and handed to pkcs11-tool as env:VAR, never on a command line. The script prints the
# lines to source:  eval "$(softhsm/provision.sh /tmp/hsm --key app)"
set -euo pipefail

die() {
    echo "provision: error: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="" label="certassert" key="" piv=0 certassert="" module=""
while (($#)); do
    case "$1" in
        --key) key="${2:?--key needs a label}"; shift 2 ;;
        --piv) piv=1; shift ;;
        --label) label="${2:?--label needs a token label}"; shift 2 ;;
        --certassert) certassert="${2:?--certassert needs a path}"; shift 2 ;;
        --module) module="${2:?--module needs a path}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        -*) usage; die "unknown option $1" ;;
        *) [[ -z "$dir" ]] || die "one directory only (got $dir and $1)"; dir="$1"; shift ;;
    esac
done
[[ -n "$dir" ]] || { usage; die "name the token directory to create"; }

if [[ -z "$module" ]]; then
    for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
        /usr/lib64/pkcs11/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so \
        /opt/homebrew/lib/softhsm/libsofthsm2.so; do
        [[ -f "$m" ]] && { module="$m"; break; }
    done
fi
[[ -n "$module" && -f "$module" ]] ||
    die "SoftHSM2 is not installed (Debian/Ubuntu: sudo apt-get install softhsm2 opensc, or ci/install-deps.sh pkcs11)"
command -v pkcs11-tool >/dev/null || die "pkcs11-tool is missing (Debian/Ubuntu: sudo apt-get install opensc)"

if [[ -e "$dir" && -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
    die "$dir exists and is not empty; give a new directory (nothing was changed)"
fi
mkdir -p "$dir/tokens"
dir="$(cd "$dir" && pwd)"
chmod 700 "$dir"
sed "s|@TOKENDIR@|$dir/tokens|" "$here/softhsm2.conf.in" >"$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"

umask 077
# Random PINs: digits, as a card would take them.
od -An -N4 -tu4 /dev/urandom | tr -dc 0-9 | head -c 8 >"$dir/pin"
od -An -N4 -tu4 /dev/urandom | tr -dc 0-9 | head -c 8 >"$dir/so-pin"
CERTASSERT_PROVISION_PIN="$(cat "$dir/pin")"
CERTASSERT_PROVISION_SO_PIN="$(cat "$dir/so-pin")"
export CERTASSERT_PROVISION_PIN CERTASSERT_PROVISION_SO_PIN

p11() {
    pkcs11-tool --module "$module" "$@" >"$dir/pkcs11-tool.log" 2>&1 ||
        die "pkcs11-tool $* failed: $(tail -3 "$dir/pkcs11-tool.log")"
}

p11 --init-token --label "$label" --so-pin env:CERTASSERT_PROVISION_SO_PIN
p11 --token-label "$label" --login --login-type so --so-pin env:CERTASSERT_PROVISION_SO_PIN \
    --init-pin --pin env:CERTASSERT_PROVISION_PIN

find_certassert() {
    if [[ -n "$certassert" ]]; then
        printf '%s' "$certassert"
    elif command -v certassert >/dev/null; then
        command -v certassert
    elif [[ -x "$here/../target/debug/certassert" ]]; then
        printf '%s' "$here/../target/debug/certassert"
    else
        die "certassert is not built (cargo build), and --certassert PATH was not given"
    fi
}

query="module-path=$module&pin-source=file:$dir/pin"
key_uri=""
if [[ -n "$key" ]]; then
    p11 --token-label "$label" --login --pin env:CERTASSERT_PROVISION_PIN \
        --keypairgen --key-type rsa:2048 --label "$key" --id 01 --usage-sign
    key_uri="pkcs11:token=$label;object=$key?$query"
    "$(find_certassert)" cert create --key "$key_uri" --subject "CN=$key" --store 2>"$dir/certassert.log" ||
        die "certassert cert create --store failed: $(cat "$dir/certassert.log")"
fi
if ((piv)); then
    p11 --token-label "$label" --login --pin env:CERTASSERT_PROVISION_PIN \
        --keypairgen --key-type rsa:2048 --id 02 --label "Private key for Digital Signature" \
        --always-auth --usage-sign
    piv_uri="piv:9c?$query"
    "$(find_certassert)" cert create --key "$piv_uri" --subject "CN=piv-9c" --store 2>"$dir/certassert.log" ||
        die "certassert cert create --store (PIV 9c) failed: $(cat "$dir/certassert.log")"
    [[ -n "$key_uri" ]] || key_uri="$piv_uri"
fi

printf 'export SOFTHSM2_CONF=%q\n' "$SOFTHSM2_CONF"
printf 'export PKCS11_MODULE=%q\n' "$module"
if [[ -n "$key_uri" ]]; then
    printf 'export CERTASSERT_KEY=%q\n' "$key_uri"
fi
echo "provision: token \"$label\" in $dir (PIN in $dir/pin, mode 0600)" >&2
