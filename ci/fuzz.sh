#!/bin/sh
# Coverage-guided fuzzing (issue 14): build every target of fuzz/ with cargo-fuzz
# (libFuzzer, AddressSanitizer, debug assertions), replay the committed regression
# inputs, then fuzz each target for SECONDS (default 10), one at a time, at low
# priority. Prints executions, executions/s and crashes per target and exits 1 on any
# new crash (the input is left in fuzz/artifacts/TARGET/).
#   ci/fuzz.sh              # the CI step: 10 s per target
#   FUZZ_RUNS=10000000 ci/fuzz.sh 1800   # the long run: 10 M execs or 30 min per target
#   ci/fuzz.sh 60 jwt keyref   # some targets only
# On the stable toolchain RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the nightly flags it
# needs. The corpus grows in fuzz/corpus/TARGET (ignored by git), seeded from
# fuzz/seeds/TARGET and, for keyfile, from fuzz/make-seeds.sh (private keys are made
# fresh, never committed).
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-10}
[ $# -gt 0 ] && shift
export RUSTC_BOOTSTRAP=1
targets=${*:-"keyref keyfile certificate tss2_keyfile jwt token_answer emulator_request"}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz
fi

flags="-O --debug-assertions"
echo "== building the fuzz targets"
(cd fuzz && nice -n 19 cargo fuzz build $flags)

[ -d fuzz/corpus/keyfile ] || fuzz/make-seeds.sh fuzz/corpus/keyfile >/dev/null

failed=""
summary=""
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    if [ -d "fuzz/regressions/$t" ] && [ -n "$(ls "fuzz/regressions/$t")" ]; then
        # Every input that once crashed (fuzz/regressions/README.md) must run clean.
        echo "== $t: replaying fuzz/regressions/$t"
        for input in fuzz/regressions/"$t"/*; do
            case $input in *.md) continue ;; esac
            if ! (cd fuzz && nice -n 19 cargo fuzz run $flags "$t" "../$input" -- -runs=1) \
                >"fuzz/artifacts/$t/regressions.log" 2>&1; then
                echo "   crashes again: $input (log: fuzz/artifacts/$t/regressions.log)"
                failed="$failed $t:$(basename "$input")"
            fi
        done
    fi
    echo "== $t: fuzzing for ${seconds}s"
    log="fuzz/artifacts/$t/run.log"
    count() { ls "fuzz/artifacts/$t" | grep -c -E '^(crash|oom|timeout|leak|slow-unit)-' || true; }
    before=$(count)
    status=0
    (cd fuzz && nice -n 19 cargo fuzz run $flags "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} \
        -timeout=20 -rss_limit_mb=2048 -print_final_stats=1) \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    crashes=$(( $(count) - before ))
    line=$(printf '%-18s %12s execs %8s execs/s  %s crash(es)  exit %s' "$t" "${execs:-?}" "${rate:-?}" "$crashes" "$status")
    echo "   $line"
    summary="$summary
$line"
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed="$failed $t"
        grep -E -A30 '^==[0-9]+==|panicked at|SUMMARY' "$log" | head -60 || true
    fi
done

echo "== summary ($seconds s per target)$summary"
if [ -n "$failed" ]; then
    echo "FAILED:$failed (inputs and logs in fuzz/artifacts/)"
    exit 1
fi
