#!/usr/bin/env bash
# Install the Debian packages certassert's build, tests and benchmarks need.
#
#   ci/install-deps.sh              base group only (build + software backend tests)
#   ci/install-deps.sh bench        base + benchmark tools
#   ci/install-deps.sh base tpm ... any list of groups
#
# Idempotent: only packages that are not installed yet are installed, and
# `apt-get update` runs at most once, only when something has to be installed.
set -euo pipefail

# --- package groups ---------------------------------------------------------------
# One list per feature group. A new backend adds its group here and passes the group
# name from the script that needs it (ci/test.sh, ci/bench.sh, ci/demo.sh).
# shellcheck disable=SC2034  # the lists are read through namerefs (GROUP_$name)
{
    # python3-jwt + python3-cryptography: PyJWT, the independent JWT verifier in tests/cli/;
    # python3-venv: the environment tests/common/python.rs installs azure-identity and MSAL in;
    # groff-base: tests/cli/generate.rs renders `certassert man` and fails on any groff warning
    GROUP_base=(openssl ca-certificates pkg-config build-essential python3 python3-jwt python3-cryptography python3-venv groff-base)
    GROUP_bench=(hyperfine)
    # Later backends (not installed by default; pass the group name to install them):
    # libp11-kit-dev: pkcs11.h for the fault-injecting proxy module tests/pkcs11/shim builds
    GROUP_pkcs11=(softhsm2 opensc libp11-kit-dev)
    GROUP_tpm=(swtpm swtpm-tools tpm2-tools tpm2-openssl libtss2-dev)
    GROUP_lint=(shellcheck)
}
# -----------------------------------------------------------------------------------

usage() {
    echo "usage: $0 [GROUP...]   groups: base bench pkcs11 tpm lint (base is always included)" >&2
}

is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

main() {
    local groups=(base) group pkg
    for group in "$@"; do
        case "$group" in
            -h | --help)
                usage
                return 0
                ;;
            base) ;;
            *)
                if ! declare -p "GROUP_$group" >/dev/null 2>&1; then
                    echo "install-deps: unknown group '$group'" >&2
                    usage
                    return 2
                fi
                groups+=("$group")
                ;;
        esac
    done

    if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
        echo "install-deps: dpkg/apt-get not found; this script supports Debian/Ubuntu only." >&2
        echo "install-deps: install these yourself: $(for g in "${groups[@]}"; do
            local -n l="GROUP_$g"
            printf '%s ' "${l[@]}"
        done)" >&2
        return 1
    fi

    local missing=()
    for group in "${groups[@]}"; do
        local -n list="GROUP_$group"
        for pkg in "${list[@]}"; do
            if ! is_installed "$pkg" && [[ " ${missing[*]} " != *" $pkg "* ]]; then
                missing+=("$pkg")
            fi
        done
        unset -n list
    done

    if ((${#missing[@]} == 0)); then
        echo "install-deps: all packages present (groups: ${groups[*]})"
        return 0
    fi

    local sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "install-deps: need root to install: ${missing[*]} (not root, and sudo is not available)" >&2
            return 1
        fi
    fi

    echo "install-deps: installing ${missing[*]} (groups: ${groups[*]})"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
    echo "install-deps: installed ${missing[*]}"
}

main "$@"
