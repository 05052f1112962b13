#!/usr/bin/env bash
# The CI job: install what is missing, build every feature set, test, document, lint.
# CI runs it as `bash .ci/run` with CI=true and no terminal on stdin; run it locally
# the same way, or as `ci/test.sh`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Nothing in the job may wait for input (a password prompt, a pager): behave as in CI.
exec </dev/null
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_TERM_PROGRESS_WHEN="${CARGO_TERM_PROGRESS_WHEN:-never}"

step() {
    printf '\n==> %s\n' "$*"
}

ensure_components() {
    if cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1; then
        return 0
    fi
    step "Adding the clippy and rustfmt components"
    if ! command -v rustup >/dev/null; then
        echo "error: cargo clippy / cargo fmt are missing and rustup is not installed;" >&2
        echo "       install the clippy and rustfmt components of your Rust toolchain." >&2
        exit 1
    fi
    if ! rustup component add clippy rustfmt; then
        echo "error: 'rustup component add clippy rustfmt' failed (offline?);" >&2
        echo "       install them once with network access, then re-run ci/test.sh." >&2
        exit 1
    fi
}

step "Installing system packages (ci/install-deps.sh)"
ci/install-deps.sh pkcs11 tpm

step "Toolchain"
rustc --version
cargo --version
ensure_components

step "cargo build --all-targets"
cargo build --all-targets

# Each feature set builds on its own: the library alone (software keys, token flows),
# each backend alone, the command line alone, and everything.
for features in "" pkcs11 tpm cli azure "pkcs11 tpm cli emulator"; do
    step "cargo build --no-default-features --features '$features'"
    cargo build --no-default-features --features "$features"
done
target/debug/certassert --version
target/debug/certassert --help >/dev/null

step "The README's systemd unit for certassert serve (ci/serve-unit.sh: systemd-analyze verify)"
ci/serve-unit.sh

step "The library alone has no front-end crates in its tree"
tree="$(cargo tree -e normal --no-default-features --prefix none)"
echo "cargo tree -e normal --no-default-features: $(wc -l <<<"$tree") lines"
for crate in clap hyper tokio-rustls rpassword azure_core; do
    if grep -q "^$crate v" <<<"$tree"; then
        echo "error: $crate is in the library's dependency tree (it belongs behind the cli or emulator feature)" >&2
        exit 1
    fi
done

step "cargo test --all-targets"
cargo test --all-targets

step "cargo test --doc"
cargo test --doc

step "The azure feature: the Rust Azure SDK's credential, against the emulator"
cargo test --test doors --features azure
cargo test --doc --features azure
cargo clippy --all-targets --features azure -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features azure

step "Soak, short (ci/soak.sh --short: 300 signatures a backend, the PKCS#11 fault run and 36 s of serve under 32 clients)"
ci/soak.sh --short

step "cargo test --no-default-features --features cli (software-only tool)"
cargo test --no-default-features --features cli --all-targets

step "Fuzzing: every target built with ASan, its regressions replayed, 10 s each (ci/fuzz.sh)"
ci/fuzz.sh 10

step "cargo doc --no-deps (warnings denied; all features, then the library alone)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --no-default-features

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo clippy --all-targets --no-default-features -- -D warnings (library alone)"
cargo clippy --all-targets --no-default-features -- -D warnings

step "cargo fmt --check"
cargo fmt --check

step "All checks passed"
