#!/usr/bin/env bash
# Performance report. Each section is a function that measures one thing and adds rows
# to the table printed at the end; later backends append their own section functions
# (PKCS#11, TPM) and call them from main; section_token_cache times `certassert token`
# answered from its cache.
#
#   ci/bench.sh                 software RSA: certassert assertions/s vs openssl speed;
#                               PKCS#11 (SoftHSM2) and TPM (swtpm): certassert vs the raw
#                               library loop, and CLI cold start vs pkcs11-tool / tpm2_sign;
#                               token cache-hit latency against the emulator
#   ci/bench.sh --criterion     also run `cargo bench --bench assertion`
#   ci/bench.sh --seconds 5     measure each figure for 5 s (default 3; env BENCH_SECONDS)
#   ci/bench.sh --rounds 3      best of 3 rounds (default 2; env BENCH_ROUNDS)
#
# Exit status 0 whatever the numbers are (this is a report, not a gate); non-zero when a
# measurement fails or its output cannot be parsed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_RUN="${BENCH_SECONDS:-3}"
ROUNDS="${BENCH_ROUNDS:-2}"
RUN_CRITERION=0
LOAD_BEFORE="?"
TABLE=()
TMPDIRS=()
PIDS=()
# --only SECTION (repeatable): run just these sections after the build.
ONLY=""

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if ((${#TMPDIRS[@]})); then
        rm -rf -- "${TMPDIRS[@]}"
    fi
}
trap cleanup EXIT

# A scratch directory, deleted when the script exits. Sets the variable named by $1
# (not echoed: a command substitution would run in a subshell and lose TMPDIRS).
make_tmpdir() {
    local -n dest="$1"
    dest="$(mktemp -d "${TMPDIR:-/tmp}/certassert-bench.XXXXXX")"
    TMPDIRS+=("$dest")
}

usage() {
    echo "usage: $0 [--criterion] [--seconds N] [--rounds N] [--only SECTION...]" >&2
    echo "       sections: software cli pkcs11 tpm token_cache serve (default: all)" >&2
}

die() {
    echo "bench: error: $*" >&2
    exit 1
}

header() {
    printf '\n==> %s\n' "$*"
}

# A decimal number, or die naming what could not be parsed.
number() {
    local what="$1" value="$2"
    [[ "$value" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "cannot parse $what (got '${value}')"
    printf '%s' "$value"
}

# row LABEL VALUE [UNIT] [NOTE]; UNIT is one character wide (×), printed after the value.
row() {
    TABLE+=("$(printf '%-40s %10s%s  %s' "$1" "$2" "${3:- }" "${4:-}")")
}

# a / b with 2 decimals
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) exit 1; printf "%.2f", a / b }'
}

section_build() {
    header "Building release binaries and examples"
    cargo build --release --bins --examples
}

# The larger of two decimal numbers.
max() {
    awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 >= b + 0) ? a : b }'
}

# Software RSA-2048: complete client assertions vs OpenSSL's raw RSA signatures. The two
# alternate for $ROUNDS rounds and the best figure of each is kept, so that a burst of
# other load on a small (shared) machine does not decide the ratio.
section_software() {
    local out round rs256=0 ps256=0 openssl_sign=0 value

    for ((round = 1; round <= ROUNDS; round++)); do
        header "[$round/$ROUNDS] openssl speed -seconds $SECONDS_PER_RUN rsa2048 ($(openssl version | awk '{ print $1, $2 }'))"
        out="$(openssl speed -seconds "$SECONDS_PER_RUN" rsa2048 2>/dev/null)" || die "openssl speed failed"
        #                   sign    verify    sign/s verify/s
        # rsa 2048 bits 0.000849s 0.000026s   1177.8  39051.0
        printf '%s\n' "$out" | grep -E '^ +sign +verify|^rsa +2048 +bits' || true
        value="$(number "openssl rsa2048 sign/s" \
            "$(printf '%s\n' "$out" | awk '$1 == "rsa" && $2 == "2048" && $3 == "bits" { print $6; exit }')")"
        openssl_sign="$(max "$openssl_sign" "$value")"

        header "[$round/$ROUNDS] examples/throughput $SECONDS_PER_RUN (certassert::assertion::build, 2048-bit software key, one thread)"
        out="$(target/release/examples/throughput "$SECONDS_PER_RUN")" || die "the throughput example failed"
        printf '%s\n' "$out"
        value="$(number "certassert RS256 assertions/s" \
            "$(printf '%s\n' "$out" | awk '$1 == "certassert" && $2 == "RS256" && $3 == "assertions/s:" { print $4; exit }')")"
        rs256="$(max "$rs256" "$value")"
        value="$(number "certassert PS256 assertions/s" \
            "$(printf '%s\n' "$out" | awk '$1 == "certassert" && $2 == "PS256" && $3 == "assertions/s:" { print $4; exit }')")"
        ps256="$(max "$ps256" "$value")"
    done

    row "certassert RS256 assertions/s" "$rs256"
    row "certassert PS256 assertions/s" "$ps256"
    row "openssl rsa2048 sign/s" "$openssl_sign"
    row "ratio certassert RS256 / openssl" "$(ratio "$rs256" "$openssl_sign")" "×" "target ≥ 1.00×"
    row "ratio certassert PS256 / openssl" "$(ratio "$ps256" "$openssl_sign")" "×"
}

# One `certassert assertion` process end to end (start, read key + certificate, sign,
# print), as a script or credential helper calling the CLI would see it.
section_cli() {
    local dir csv mean_ms
    make_tmpdir dir
    local bin="$PWD/target/release/certassert"
    "$bin" key generate --key "$dir/app.key.pem" >/dev/null 2>&1 || die "certassert key generate failed"
    "$bin" cert create --key "$dir/app.key.pem" --subject CN=certassert-bench --days 30 \
        --out "$dir/app.cert.pem" >/dev/null 2>&1 || die "certassert cert create failed"

    header "hyperfine: certassert assertion (one process per assertion, software key)"
    csv="$dir/hyperfine.csv"
    hyperfine --shell=none --warmup 3 --min-runs 30 --export-csv "$csv" \
        "'$bin' assertion --key '$dir/app.key.pem' --cert '$dir/app.cert.pem' --tenant contoso.onmicrosoft.com --client-id 11111111-2222-3333-4444-555555555555" \
        || die "hyperfine failed"
    # command,mean,stddev,median,user,system,min,max   (seconds)
    mean_ms="$(number "hyperfine mean" "$(awk -F, 'NR == 2 { printf "%.2f", $2 * 1000 }' "$csv")")"
    row "certassert assertion CLI latency, ms" "$mean_ms" " " "mean; process start to JWT"
}

# PKCS#11 on a throwaway SoftHSM2 token (softhsm/provision.sh): certassert's signer
# (session pool, mechanism choice, login handling) against a raw cryptoki loop that
# reuses one session per thread, with 1 and 2 threads, alternating for $ROUNDS rounds;
# then one `certassert assertion` process against one `pkcs11-tool --sign` process.
section_pkcs11() {
    local dir round mode threads out value csv
    local -A best=([certassert1]=0 [certassert2]=0 [raw1]=0 [raw2]=0)
    make_tmpdir dir
    local bin="$PWD/target/release/certassert"
    softhsm/provision.sh "$dir/hsm" --key bench --certassert "$bin" >"$dir/env" ||
        die "softhsm/provision.sh failed"
    export SOFTHSM2_CONF="$dir/hsm/softhsm2.conf"
    local module=/usr/lib/softhsm/libsofthsm2.so
    local uri="pkcs11:token=certassert;object=bench?module-path=$module&pin-source=file:$dir/hsm/pin"

    for ((round = 1; round <= ROUNDS; round++)); do
        for threads in 1 2; do
            for mode in raw certassert; do
                header "[$round/$ROUNDS] examples/pkcs11_bench $mode, $threads thread(s), ${SECONDS_PER_RUN} s (SoftHSM2, RS256)"
                out="$(target/release/examples/pkcs11_bench "$mode" "$threads" "$SECONDS_PER_RUN" "$uri")" ||
                    die "pkcs11_bench $mode failed"
                printf '%s\n' "$out"
                value="$(number "$mode $threads-thread signs/s" "$(awk '{ print $NF; exit }' <<<"$out")")"
                best[$mode$threads]="$(max "${best[$mode$threads]}" "$value")"
            done
        done
    done
    row "pkcs11 certassert signs/s, 1 thread" "${best[certassert1]}"
    row "pkcs11 raw cryptoki signs/s, 1 thread" "${best[raw1]}"
    row "ratio certassert / raw, 1 thread" "$(ratio "${best[certassert1]}" "${best[raw1]}")" "×" "target ≥ 0.95×"
    row "pkcs11 certassert signs/s, 2 threads" "${best[certassert2]}"
    row "pkcs11 raw cryptoki signs/s, 2 threads" "${best[raw2]}"
    row "ratio certassert 2 threads / 1 thread" "$(ratio "${best[certassert2]}" "${best[certassert1]}")" "×" "target ≥ 1.8× (needs 2 idle cores)"
    row "ratio raw 2 threads / 1 thread" "$(ratio "${best[raw2]}" "${best[raw1]}")" "×" "what the module allows"

    header "hyperfine: certassert assertion --key pkcs11:… vs pkcs11-tool --sign (one process each)"
    head -c 400 /dev/urandom >"$dir/msg"
    csv="$dir/hyperfine-pkcs11.csv"
    PIN_FILE="$dir/hsm/pin" hyperfine --warmup 3 --min-runs 20 --export-csv "$csv" \
        "'$bin' assertion --key '$uri' --tenant contoso.onmicrosoft.com --client-id 11111111-2222-3333-4444-555555555555" \
        "PIN=\$(cat \"\$PIN_FILE\") pkcs11-tool --module $module --token-label certassert --login --pin env:PIN --sign --mechanism SHA256-RSA-PKCS --label bench -i '$dir/msg' -o '$dir/sig'" \
        || die "hyperfine failed"
    local ours theirs
    ours="$(number "hyperfine mean" "$(awk -F, 'NR == 2 { printf "%.2f", $2 * 1000 }' "$csv")")"
    theirs="$(number "hyperfine mean" "$(awk -F, 'NR == 3 { printf "%.2f", $2 * 1000 }' "$csv")")"
    row "certassert assertion (pkcs11) CLI, ms" "$ours" " " "mean; process start to JWT"
    row "pkcs11-tool --sign CLI, ms" "$theirs" " " "mean; includes a shell for the PIN"
    row "ratio pkcs11-tool / certassert time" "$(ratio "$theirs" "$ours")" "×" "target > 1.00× (certassert faster)"
}

# How many requests a `certassert emulator` at $1 has received.
emulator_requests() {
    python3 -c 'import json, sys, urllib.request
print(len(json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/requests"))))' "$1"
}

# `certassert token` answered from the cache: process start, key + certificate loaded and
# checked, cache file read, token printed — no signature, no request. A `certassert
# emulator` on loopback issues the first token; every timed run must then be a hit.
section_token_cache() {
    local dir csv mean_ms url="" i client=11111111-2222-3333-4444-555555555555
    make_tmpdir dir
    local bin="$PWD/target/release/certassert"
    "$bin" key generate --key "$dir/app.key.pem" >/dev/null 2>&1 || die "certassert key generate failed"
    "$bin" cert create --key "$dir/app.key.pem" --subject CN=certassert-bench --days 30 \
        --out "$dir/app.cert.pem" >/dev/null 2>&1 || die "certassert cert create failed"
    "$bin" emulator --listen 127.0.0.1:0 --register "$client=$dir/app.cert.pem" >"$dir/emulator.out" &
    PIDS+=("$!")
    for ((i = 0; i < 100; i++)); do
        url="$(head -n1 "$dir/emulator.out" 2>/dev/null || true)"
        [[ "$url" == http* ]] && break
        sleep 0.1
    done
    [[ "$url" == http* ]] || die "certassert emulator did not start"
    local -a token=("$bin" token --key "$dir/app.key.pem" --cert "$dir/app.cert.pem"
        --tenant contoso.onmicrosoft.com --client-id "$client" --authority-host "$url"
        --scope https://graph.microsoft.com/.default)
    export CERTASSERT_CACHE_DIR="$dir/cache"
    "${token[@]}" >/dev/null || die "the first certassert token failed"
    local sent
    sent="$(emulator_requests "$url")" || die "cannot read the emulator's request log"

    header "hyperfine: certassert token, cache hit (software key, token from the cache)"
    csv="$dir/hyperfine.csv"
    local quoted
    quoted="$(printf "'%s' " "${token[@]}")"
    hyperfine --shell=none --warmup 3 --min-runs 50 --export-csv "$csv" "$quoted" || die "hyperfine failed"
    unset CERTASSERT_CACHE_DIR
    local after
    after="$(emulator_requests "$url")" || die "cannot read the emulator's request log"
    [[ "$after" == "$sent" ]] || die "cache-hit runs sent $((after - sent)) request(s) to the emulator"
    mean_ms="$(number "hyperfine mean" "$(awk -F, 'NR == 2 { printf "%.2f", $2 * 1000 }' "$csv")")"
    row "certassert token cache-hit latency, ms" "$mean_ms" " " "mean; target ≤ 5 ms; 0 requests sent"
}

# TPM 2.0 on a private swtpm (no resource manager, like a raw TPM): certassert's
# TpmSigner against a bare tss-esapi TPM2_Sign loop with the key already loaded, both
# in one run of examples/tpm_raw (alternating rounds, best of each); then one
# `certassert assertion --key tpm:handle=…` process against one `tpm2_sign` process.
section_tpm() {
    local dir port tcti out raw ours alg handle=0x81000001 csv ours_ms sign_ms value
    make_tmpdir dir
    mkdir -p "$dir/state"
    # A free port pair (swtpm's control channel is the server port + 1).
    for port in $(shuf -i 20000-60000 -n 20); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
            ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; then
            break
        fi
    done
    swtpm socket --tpm2 --tpmstate "dir=$dir/state" \
        --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
        --flags not-need-init,startup-clear >"$dir/swtpm.log" 2>&1 &
    PIDS+=("$!")
    tcti="swtpm:host=127.0.0.1,port=$port"
    export TPM2TOOLS_TCTI="$tcti" TSS2_LOG="all+none"
    local waited=0
    until tpm2_getcap handles-transient >/dev/null 2>&1; do
        kill -0 "${PIDS[-1]}" 2>/dev/null || die "swtpm exited: $(cat "$dir/swtpm.log")"
        ((waited++ < 300)) || die "swtpm on $tcti did not answer within 30 s"
        sleep 0.1
    done
    header "swtpm on $tcti: RSA-2048 key persisted at $handle with tpm2-tools"
    # tpm2-tools leaves transient objects on a raw TPM: flush after each step.
    if ! {
        tpm2_createprimary -C o -c "$dir/primary.ctx" -Q && tpm2_flushcontext -t &&
            tpm2_create -C "$dir/primary.ctx" -G rsa2048 -u "$dir/key.pub" -r "$dir/key.priv" -Q &&
            tpm2_flushcontext -t &&
            tpm2_load -C "$dir/primary.ctx" -u "$dir/key.pub" -r "$dir/key.priv" -c "$dir/key.ctx" -Q &&
            tpm2_flushcontext -t &&
            tpm2_evictcontrol -C o -c "$dir/key.ctx" "$handle" >/dev/null &&
            tpm2_flushcontext -t
    }; then
        die "provisioning the swtpm key with tpm2-tools failed"
    fi

    header "examples/tpm_raw (certassert TpmSigner vs raw tss-esapi TPM2_Sign, $ROUNDS × ${SECONDS_PER_RUN} s each)"
    out="$(target/release/examples/tpm_raw "$tcti" "$handle" "$SECONDS_PER_RUN" "$ROUNDS")" || die "the tpm_raw example failed"
    printf '%s\n' "$out"
    for alg in RS256 PS256; do
        raw="$(number "raw tss-esapi $alg signatures/s" \
            "$(printf '%s\n' "$out" | awk -v a="$alg" '$1 == "raw" && $3 == a { print $5; exit }')")"
        ours="$(number "certassert $alg TPM signatures/s" \
            "$(printf '%s\n' "$out" | awk -v a="$alg" '$1 == "certassert" && $2 == a { print $4; exit }')")"
        value="$(number "certassert/raw $alg ratio" \
            "$(printf '%s\n' "$out" | awk -v a="$alg" '$1 == "certassert/raw" && $2 == a { print $NF; exit }')")"
        row "certassert TPM $alg signatures/s" "$ours" " " "best round"
        row "raw tss-esapi $alg signatures/s" "$raw" " " "best round"
        if [[ "$alg" == RS256 ]]; then
            row "ratio certassert / raw tss-esapi ($alg)" "$value" "×" "median of same-round ratios; target ≥ 0.95×"
        else
            row "ratio certassert / raw tss-esapi ($alg)" "$value" "×" "median of same-round ratios; incl. strict-salt check"
        fi
    done

    local bin="$PWD/target/release/certassert" key="tpm:handle=$handle?tcti=$tcti"
    "$bin" cert create --key "$key" --subject CN=certassert-tpm-bench --days 30 \
        --out "$dir/tpm.cert.pem" >/dev/null 2>&1 || die "certassert cert create (TPM) failed"
    printf 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0' >"$dir/msg"
    header "hyperfine: one process per signature: certassert assertion (TPM) vs tpm2_sign"
    csv="$dir/hyperfine-tpm.csv"
    # Named commands: the TCTI's comma would otherwise split the CSV's command column.
    hyperfine --shell=none --warmup 3 --min-runs 30 --export-csv "$csv" \
        --command-name "certassert assertion --key tpm:handle=$handle" \
        --command-name "tpm2_sign -c $handle" \
        "'$bin' assertion --key '$key' --cert '$dir/tpm.cert.pem' --tenant contoso.onmicrosoft.com --client-id 11111111-2222-3333-4444-555555555555" \
        "tpm2_sign -c $handle -g sha256 -s rsassa -o '$dir/msg.sig' '$dir/msg'" \
        || die "hyperfine (TPM) failed"
    # command,mean,stddev,median,user,system,min,max   (seconds)
    ours_ms="$(number "hyperfine mean (certassert)" "$(awk -F, 'NR == 2 { printf "%.2f", $2 * 1000 }' "$csv")")"
    sign_ms="$(number "hyperfine mean (tpm2_sign)" "$(awk -F, 'NR == 3 { printf "%.2f", $2 * 1000 }' "$csv")")"
    row "certassert assertion (TPM) CLI latency, ms" "$ours_ms" " " "mean; process start to JWT"
    row "tpm2_sign CLI latency, ms" "$sign_ms" " " "mean; one RSASSA signature"
    value="$(ratio "$sign_ms" "$ours_ms")"
    row "ratio tpm2_sign / certassert latency" "$value" "×" "target > 1.00× (certassert faster)"
    unset TPM2TOOLS_TCTI
}

# The same two measurements under criterion's statistics (optional: slower).
# `certassert serve` answering from memory (issue 10): cache-hit requests/s and p50/p99
# at 1 and 32 connections beside a bare hyper server (same runtime, a fixed JSON body of
# the same size, the same load generator: examples/serve_bench), a cold burst of 100
# concurrent requests (upstream POSTs counted), and the agent's RSS at start and after
# 100,000 requests.
section_serve() {
    local dir bin="$PWD/target/release/certassert" load="$PWD/target/release/examples/serve_bench"
    local emu_pid serve_pid bare_pid emu_url serve_url bare_url size conns out
    local -A rps p50 p99
    make_tmpdir dir
    "$bin" key generate --key "$dir/app.key.pem" >/dev/null 2>&1 || die "certassert key generate failed"
    "$bin" cert create --key "$dir/app.key.pem" --subject CN=certassert-bench --days 30 \
        --out "$dir/app.cert.pem" >/dev/null 2>&1 || die "certassert cert create failed"
    local client=11111111-2222-3333-4444-555555555555
    "$bin" emulator --listen 127.0.0.1:0 --register "$client=$dir/app.cert.pem" >"$dir/emu.out" 2>/dev/null &
    emu_pid=$!
    PIDS+=("$emu_pid")
    local secret
    secret="$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
    for _ in $(seq 100); do [[ -s "$dir/emu.out" ]] && break; sleep 0.05; done
    emu_url="$(head -1 "$dir/emu.out")"
    BENCH_IDENTITY_SECRET="$secret" "$bin" serve --listen 127.0.0.1:0 --key "$dir/app.key.pem" \
        --cert "$dir/app.cert.pem" --tenant contoso.onmicrosoft.com --client-id "$client" \
        --authority-host "$emu_url" --identity-header-source env:BENCH_IDENTITY_SECRET \
        >"$dir/serve.out" 2>/dev/null &
    serve_pid=$!
    PIDS+=("$serve_pid")
    for _ in $(seq 100); do [[ -s "$dir/serve.out" ]] && break; sleep 0.05; done
    serve_url="$(head -1 "$dir/serve.out")"
    [[ "$serve_url" == http://* ]] || die "certassert serve did not start"
    local path="/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net"
    local rss_start
    rss_start="$(awk '/^VmRSS/ { print $2 }' "/proc/$serve_pid/status")"

    header "serve: a cold burst of 100 concurrent requests for one resource"
    out="$("$load" count "$serve_url$path" 100 100 "X-IDENTITY-HEADER: $secret")" || die "serve_bench count failed"
    printf '%s\n' "$out"
    local posts
    posts="$(number "emulator requests" "$(emulator_requests "$emu_url")")"
    row "serve cold burst of 100: upstream POSTs" "$posts" " " "target 1 (one signature each)"

    size="$(curl -s -H "X-IDENTITY-HEADER: $secret" "$serve_url$path" | wc -c)"
    "$load" bare "$size" >"$dir/bare.out" &
    bare_pid=$!
    PIDS+=("$bare_pid")
    for _ in $(seq 100); do [[ -s "$dir/bare.out" ]] && break; sleep 0.05; done
    bare_url="$(head -1 "$dir/bare.out")"

    local round target
    for ((round = 1; round <= ROUNDS; round++)); do
        for conns in 1 32; do
            for target in bare serve; do
                header "[$round/$ROUNDS] serve_bench load $target, $conns connection(s), ${SECONDS_PER_RUN} s"
                if [[ "$target" == serve ]]; then
                    out="$("$load" load "$serve_url$path" "$SECONDS_PER_RUN" "$conns" "X-IDENTITY-HEADER: $secret")"
                else
                    out="$("$load" load "$bare_url$path" "$SECONDS_PER_RUN" "$conns")"
                fi || die "serve_bench load $target failed"
                printf '%s\n' "$out"
                # requests/s: N  p50_ms: N  p99_ms: N  errors: N
                local value
                value="$(number "$target requests/s" "$(awk '{ print $2 }' <<<"$out")")"
                if [[ "$(max "${rps[$target$conns]:-0}" "$value")" == "$value" ]]; then
                    rps[$target$conns]="$value"
                    p50[$target$conns]="$(number "$target p50" "$(awk '{ print $4 }' <<<"$out")")"
                    p99[$target$conns]="$(number "$target p99" "$(awk '{ print $6 }' <<<"$out")")"
                fi
                [[ "$(awk '{ print $8 }' <<<"$out")" == 0 ]] || die "serve_bench $target: errors: $out"
            done
        done
    done
    for conns in 1 32; do
        row "serve cache hits/s, $conns conn" "${rps[serve$conns]}" " " "p50 ${p50[serve$conns]} ms, p99 ${p99[serve$conns]} ms"
        row "bare hyper req/s, $conns conn" "${rps[bare$conns]}" " " "p50 ${p50[bare$conns]} ms, p99 ${p99[bare$conns]} ms"
        row "ratio serve / bare hyper, $conns conn" "$(ratio "${rps[serve$conns]}" "${rps[bare$conns]}")" "×" "target ≥ 0.80×"
    done

    header "serve: RSS after 100,000 more requests (32 connections)"
    out="$("$load" count "$serve_url$path" 100000 32 "X-IDENTITY-HEADER: $secret")" || die "serve_bench count failed"
    printf '%s\n' "$out"
    local rss_end
    rss_end="$(awk '/^VmRSS/ { print $2 }' "/proc/$serve_pid/status")"
    row "serve RSS at start, MiB" "$(awk -v k="$rss_start" 'BEGIN { printf "%.1f", k / 1024 }')"
    row "serve RSS after 100,000 requests, MiB" "$(awk -v k="$rss_end" 'BEGIN { printf "%.1f", k / 1024 }')" " " \
        "target: within 5 MiB of the start"
    kill "$serve_pid" "$bare_pid" "$emu_pid" 2>/dev/null || true
}

section_criterion() {
    header "cargo bench --bench assertion (criterion)"
    cargo bench --bench assertion
}

print_table() {
    header "Summary (best of $ROUNDS × ${SECONDS_PER_RUN} s per figure, $(nproc) CPU(s), load average before: $LOAD_BEFORE)"
    printf '%s\n' "${TABLE[@]}"
}

main() {
    while (($#)); do
        case "$1" in
            --criterion) RUN_CRITERION=1 ;;
            --only)
                (($# >= 2)) || { usage; exit 2; }
                ONLY+=" $2 "
                shift
                ;;
            --seconds | --rounds)
                (($# >= 2)) || { usage; exit 2; }
                if [[ "$1" == --seconds ]]; then SECONDS_PER_RUN="$2"; else ROUNDS="$2"; fi
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *)
                usage
                exit 2
                ;;
        esac
        shift
    done
    [[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]*$ ]] || die "--seconds/BENCH_SECONDS must be a whole number of seconds ≥ 1"
    [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds/BENCH_ROUNDS must be a whole number ≥ 1"

    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

    header "Installing missing system packages (ci/install-deps.sh bench)"
    ci/install-deps.sh bench pkcs11 tpm

    section_build
    local section
    for section in software cli pkcs11 tpm token_cache serve; do
        [[ -z "$ONLY" || "$ONLY" == *" $section "* ]] && "section_$section"
    done
    if ((RUN_CRITERION)); then
        section_criterion
    fi
    print_table
}

main "$@"
