#!/usr/bin/env bash
# Builds the libFuzzer harnesses under fuzz/ and runs each for a while on its committed seed corpus.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 30
#   TARGET              recipe (YAML -> Tree.parse -> Recipe), checkpoint (bytes -> Checkpoint.load);
#                       default both
# Examples: scripts/fuzz.sh; scripts/fuzz.sh 600 checkpoint
#
# Each harness is compiled with `swiftc -sanitize=fuzzer,address -parse-as-library` into the module
# it tests, against the package's own sources (a SwiftPM executable target built with
# -sanitize=fuzzer fails to link: SwiftPM renames `main`, and libFuzzer brings its own). Libraries
# under test are instrumented too (CYaml with clang's -fsanitize=fuzzer-no-link,address).
# Inputs that add coverage go to .build/fuzz/corpus/<target>/ (not committed). A crash in our code stops
# the script; crashes and hangs inside libhdf5 are counted and the run goes on (see in_libhdf5). Inputs
# that crashed are kept as .build/fuzz/<target>-crash-* or -timeout-* (rerun: .build/fuzz/bin/<target> FILE).
# fuzz/corpus/checkpoint/ was written by: QAT_FUZZ_SEEDS=fuzz/corpus/checkpoint .build/fuzz/bin/checkpoint
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(recipe checkpoint)

OUT=.build/fuzz
OBJ=$OUT/obj
mkdir -p "$OBJ" "$OUT/bin"
swift package resolve >/dev/null
YAMS=.build/checkouts/Yams/Sources
CFLAGS_H5BLAS=$(pkg-config --cflags hdf5 openblas)
LIBDIRS=$(pkg-config --libs-only-L hdf5 openblas)
SWIFTC=(swiftc -sanitize=fuzzer,address -O -g -parse-as-library -I "$OBJ" -I Sources/CBLAS -I Sources/CHDF5)
for f in $CFLAGS_H5BLAS; do SWIFTC+=(-Xcc "$f"); done

# One library module: Swift sources -> $OBJ/<name>.o + <name>.swiftmodule.
module() {
    local name=$1; shift
    "${SWIFTC[@]}" -wmo -module-name "$name" -emit-module -emit-module-path "$OBJ/$name.swiftmodule" -c -o "$OBJ/$name.o" "$@"
}

build_recipe() {
    mkdir -p "$OBJ/cyaml"
    for c in "$YAMS"/CYaml/src/*.c; do
        clang -fsanitize=fuzzer-no-link,address -O1 -g -DYAML_DECLARE_EXPORT -I "$YAMS/CYaml/include" \
            -c "$c" -o "$OBJ/cyaml/$(basename "$c" .c).o"
    done
    # Yams imports CYaml only `#if SWIFT_PACKAGE`.
    module Yams -D SWIFT_PACKAGE -I "$YAMS/CYaml/include" "$YAMS"/Yams/*.swift
    "${SWIFTC[@]}" -module-name Recipes -I "$YAMS/CYaml/include" Sources/Recipes/*.swift fuzz/recipe/*.swift \
        "$OBJ/Yams.o" "$OBJ"/cyaml/*.o -o "$OUT/bin/recipe"
}

build_checkpoint() {
    module Kernels Sources/Kernels/*.swift
    module Autodiff Sources/Autodiff/*.swift
    module NN Sources/NN/*.swift
    module Optim Sources/Optim/*.swift
    module Files Sources/Files/*.swift
    module HDF5 Sources/HDF5/*.swift
    # shellcheck disable=SC2086
    "${SWIFTC[@]}" -module-name Checkpoint Sources/Checkpoint/*.swift fuzz/checkpoint/*.swift \
        "$OBJ"/{Kernels,Autodiff,NN,Optim,Files,HDF5}.o $LIBDIRS -lhdf5 -lopenblas -o "$OUT/bin/checkpoint"
}

for t in "${TARGETS[@]}"; do
    echo "== building $t (log: $OUT/build-$t.log)"
    if ! "build_$t" > "$OUT/build-$t.log" 2>&1; then
        grep -E "error" "$OUT/build-$t.log" | head -20; exit 1
    fi
done
# Runs a target until its time is up. A crash, hang (over 5 s for one input) or huge allocation whose
# stack reaches libhdf5 before any frame of ours (Sources/, fuzz/, Yams, the Swift runtime) is a libhdf5
# bug on a file without our integrity trailer (docs/CHECKPOINTS.md): it is counted, its input kept, and
# the run goes on from the corpus so far. Anything else (our code, a broken property) stops the script.
in_libhdf5() {
    awk '/ERROR: (AddressSanitizer|libFuzzer)/ {on=1; next}
         on && /^ *#[0-9]+ / && /libhdf5/ {print "libhdf5"; exit}
         on && /^ *#[0-9]+ / && /\/Sources\/|\/fuzz\/|checkouts\/Yams|libswift/ {print "ours"; exit}' "$1" | grep -q libhdf5
}
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$OUT/corpus/$t"
    case $t in recipe) MAXLEN=8192 ;; checkpoint) MAXLEN=32768 ;; esac
    echo "== fuzzing $t for ${SECS}s (seeds: fuzz/corpus/$t, log: $OUT/$t.log)"
    : > "$OUT/$t.log"
    end=$((SECONDS + SECS)); runs=0; ours=0; hdf5=0
    while [ $SECONDS -lt $end ]; do
        # One thread for OpenBLAS and parallelFor, so exec/s is the harness's own.
        QAT_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 \
            "$OUT/bin/$t" -max_total_time=$((end - SECONDS)) -max_len=$MAXLEN -timeout=5 -print_final_stats=1 \
            -artifact_prefix="$OUT/$t-" "$OUT/corpus/$t" "fuzz/corpus/$t" > "$OUT/$t.run.log" 2>&1 || true
        cat "$OUT/$t.run.log" >> "$OUT/$t.log"
        n=$(awk '/stat::number_of_executed_units/ {print $2}' "$OUT/$t.run.log" | tail -1)
        runs=$((runs + ${n:-0}))
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$OUT/$t.run.log" | tail -1)
        [ -n "$artifact" ] || break
        if in_libhdf5 "$OUT/$t.run.log"; then
            hdf5=$((hdf5 + 1))
            echo "   inside libhdf5: $artifact ($(grep -m1 '^SUMMARY' "$OUT/$t.run.log"))"
        else
            ours=$((ours + 1))
            echo "   CRASH in our code or a failed property: $artifact"
            grep -m3 -E "^SUMMARY|Fatal error|ERROR:" "$OUT/$t.run.log" | sed 's/^/     /'
            break
        fi
    done
    echo "== $t: $runs inputs executed; crashes: $ours in our code, $hdf5 inside libhdf5"
    [ $ours -eq 0 ] || status=1
done
exit $status
