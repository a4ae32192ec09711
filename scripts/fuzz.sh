#!/usr/bin/env bash
# Builds the libFuzzer harnesses under fuzz/ and runs each on its committed seed corpus, one target at
# a time.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET | --runs N] [TARGET...]
#   SECONDS_PER_TARGET  default 30
#   --runs N            run each target for N inputs instead (N executed inputs in all, across restarts)
#   TARGET              recipe (YAML -> Tree.parse -> Recipe), checkpoint (bytes -> Checkpoint.load),
#                       coco (COCO JSON -> COCODataset.parse, validation), dota (DOTA label -> DOTALabel.parse,
#                       Tiling.tiles), png and jpeg (ImageCodec.decode), hdf5_chips (bytes ->
#                       HDF5ClassificationSource); default all
# Environment: QAT_FUZZ_BUILD_ONLY=1 builds and stops.
# Examples: scripts/fuzz.sh; scripts/fuzz.sh 600 checkpoint; scripts/fuzz.sh --runs 100000 png jpeg
#
# Each harness is compiled with `swiftc -sanitize=fuzzer,address -parse-as-library` against the
# package's own sources (a SwiftPM executable target built with -sanitize=fuzzer fails to link:
# SwiftPM renames `main`, and libFuzzer brings its own). recipe and checkpoint are compiled into the
# module they test (they use internal API); the Datasets targets import one instrumented Datasets
# module. Libraries under test are instrumented too (CYaml with clang's -fsanitize=fuzzer-no-link,
# address); the system libpng, libjpeg and libhdf5 are not (no coverage feedback from inside them, but
# ASan checks every buffer we hand them through its interceptors and redzones). Modules are rebuilt
# only when a source is newer than their object (.build/fuzz/obj); targets build in parallel, one per
# core. From scratch on 2 shared cores, building all seven took 101 s and `scripts/fuzz.sh 8` (what
# .ci/run runs) 3 min 1 s in all.
# Leaks are checked (LeakSanitizer) for every target; fuzz/lsan.supp suppresses the ones libhdf5 makes
# inside its metadata cache on corrupt files (never handed to us) and what one-time Swift global
# initializers allocate. Inputs that add coverage go to .build/fuzz/corpus/<target>/ (not committed).
# A crash, hang (over 5 s for one input, and again in three reruns of it alone: libFuzzer's timeout is
# wall time) or leak in our code stops that target and fails the script; a crash or hang whose stack
# reaches libhdf5 first is counted and the run goes on (see in_libhdf5). Inputs that crashed are kept as .build/fuzz/<target>-crash-*, -timeout-* or -leak-*
# (rerun: .build/fuzz/bin/<target> FILE).
# Dictionaries (tokens libFuzzer splices into inputs): fuzz/<target>.dict where one exists.
# Seeds: fuzz/corpus/<target>/. checkpoint, png, jpeg and hdf5_chips were written by their harness:
#   QAT_FUZZ_SEEDS=fuzz/corpus/<target> ASAN_OPTIONS=detect_leaks=0 .build/fuzz/bin/<target>
# png and jpeg also have seeds our encoders cannot make (16-bit, palette, interlaced PNGs; progressive
# JPEGs): python3 fuzz/make_seeds.py. coco and dota seeds are hand-written files.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$0")/.."
SECS=30; RUNS=""
if [ "${1:-}" = "--runs" ]; then RUNS=$2; shift 2
elif [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then SECS=$1; shift; fi
ALL=(recipe checkpoint coco dota png jpeg hdf5_chips)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
    [[ " ${ALL[*]} " == *" $t "* ]] || { echo "unknown target '$t'; targets: ${ALL[*]}" >&2; exit 2; }
done

OUT=.build/fuzz
OBJ=$OUT/obj
mkdir -p "$OBJ" "$OUT/bin"
# The toolchain must link libFuzzer (Swift's Linux toolchains do; a missing runtime is an error here,
# not a silent skip).
printf '@_cdecl("LLVMFuzzerTestOneInput") public func f(_ d: UnsafePointer<UInt8>, _ n: Int) -> CInt { 0 }\n' > "$OUT/probe.swift"
if ! swiftc -sanitize=fuzzer,address -parse-as-library "$OUT/probe.swift" -o "$OUT/probe" > "$OUT/probe.log" 2>&1; then
    echo "fuzz.sh: this Swift toolchain cannot link a libFuzzer harness (swiftc -sanitize=fuzzer,address):" >&2
    grep -m3 -i error "$OUT/probe.log" >&2 || tail -3 "$OUT/probe.log" >&2
    exit 3
fi
swift package resolve >/dev/null
YAMS=.build/checkouts/Yams/Sources
SYSLIBS=(hdf5 openblas libpng libjpeg)
LIBDIRS=$(pkg-config --libs-only-L "${SYSLIBS[@]}")
SWIFTC=(swiftc -sanitize=fuzzer,address -O -g -parse-as-library -I "$OBJ"
        -I Sources/CBLAS -I Sources/CHDF5 -I Sources/CPNG -I Sources/CJPEG)
for f in $(pkg-config --cflags "${SYSLIBS[@]}"); do SWIFTC+=(-Xcc "$f"); done

# Whether $1 is missing or older than any of the other files.
stale() {
    local out=$1; shift
    [ -e "$out" ] || return 0
    local f
    for f in "$@" "$SELF"; do [ "$f" -nt "$out" ] && return 0; done
    return 1
}

# One library module: `module NAME "DEPS" SOURCES...` -> $OBJ/NAME.o + NAME.swiftmodule, rebuilt when a
# source or a dependency's object changed. Targets build in parallel: the module's lock makes a second
# build of the same module wait for the first and then find it fresh.
module() {
    local name=$1 deps=$2; shift 2
    local inputs=("$@") d fd
    for d in $deps; do inputs+=("$OBJ/$d.o"); done
    exec {fd}>"$OBJ/$name.lock"
    flock "$fd"
    if stale "$OBJ/$name.o" "${inputs[@]}"; then
        echo "   module $name"
        "${SWIFTC[@]}" -wmo -module-name "$name" -emit-module -emit-module-path "$OBJ/$name.swiftmodule" -c -o "$OBJ/$name.o" "$@"
        touch "$OBJ/$name.o"   # swiftc keeps an identical output's old time
    fi
    exec {fd}>&-
}

# A fuzzer binary: `binary TARGET MODULE "OBJECTS" SOURCES... [-- LINK FLAGS]`: SOURCES compiled as module
# MODULE with the harness, linked with $OBJ/<object>.o for each of OBJECTS.
binary() {
    local target=$1 name=$2 objs=$3; shift 3
    local srcs=() flags=() o
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do srcs+=("$1"); shift; done
    [ $# -gt 0 ] && shift && flags=("$@")
    local objects=()
    for o in $objs; do objects+=("$OBJ/$o.o"); done
    stale "$OUT/bin/$target" "${srcs[@]}" "${objects[@]}" || return 0
    echo "   binary $target"
    # shellcheck disable=SC2086
    "${SWIFTC[@]}" -module-name "$name" "${srcs[@]}" "${objects[@]}" "${flags[@]}" $LIBDIRS -o "$OUT/bin/$target"
    touch "$OUT/bin/$target"
}

build_yams() {
    mkdir -p "$OBJ/cyaml"
    local c o
    for c in "$YAMS"/CYaml/src/*.c; do
        o=$OBJ/cyaml/$(basename "$c" .c).o
        stale "$o" "$c" || continue
        clang -fsanitize=fuzzer-no-link,address -O1 -g -DYAML_DECLARE_EXPORT -I "$YAMS/CYaml/include" -c "$c" -o "$o"
        touch "$o"
    done
    # Yams imports CYaml only `#if SWIFT_PACKAGE`.
    module Yams "" -D SWIFT_PACKAGE -I "$YAMS/CYaml/include" "$YAMS"/Yams/*.swift
}

build_recipe() {
    build_yams
    module UserPaths "" Sources/UserPaths/*.swift
    binary recipe Recipes "Yams UserPaths" Sources/Recipes/*.swift fuzz/recipe/*.swift -- -I "$YAMS/CYaml/include" "$OBJ"/cyaml/*.o
}

build_checkpoint() {
    module Kernels "" Sources/Kernels/*.swift
    module Autodiff "Kernels" Sources/Autodiff/*.swift
    module NN "Kernels Autodiff" Sources/NN/*.swift
    module Optim "Kernels Autodiff NN" Sources/Optim/*.swift
    module UserPaths "" Sources/UserPaths/*.swift
    module Files "UserPaths" Sources/Files/*.swift
    module HDF5 "Files" Sources/HDF5/*.swift
    binary checkpoint Checkpoint "Kernels Autodiff NN Optim UserPaths Files HDF5" Sources/Checkpoint/*.swift fuzz/checkpoint/*.swift -- -lhdf5 -lopenblas
}

# The Datasets targets share one instrumented Datasets module.
build_datasets_target() {
    local target=$1
    module UserPaths "" Sources/UserPaths/*.swift
    module Kernels "" Sources/Kernels/*.swift
    module Files "UserPaths" Sources/Files/*.swift
    module HDF5 "Files" Sources/HDF5/*.swift
    module Datasets "UserPaths Files Kernels HDF5" Sources/Datasets/*.swift
    binary "$target" "fuzz_$target" "Datasets UserPaths Files Kernels HDF5" fuzz/"$target"/*.swift -- -lhdf5 -lopenblas -lpng16 -ljpeg
}
build_coco() { build_datasets_target coco; }
build_dota() { build_datasets_target dota; }
build_png() { build_datasets_target png; }
build_jpeg() { build_datasets_target jpeg; }
build_hdf5_chips() { build_datasets_target hdf5_chips; }

# Builds one target into its log; leaves $OUT/build-<target>.ok when it succeeds.
build_target() {
    local t=$1 start=$SECONDS
    rm -f "$OUT/build-$t.ok"
    if "build_$t" > "$OUT/build-$t.log" 2>&1; then
        touch "$OUT/build-$t.ok"
        echo "   built $t in $((SECONDS - start)) s"
    else
        echo "   building $t failed (log: $OUT/build-$t.log):"
        grep -E "error" "$OUT/build-$t.log" | head -20
    fi
}
# As many targets at once as there are cores (swiftc -wmo compiles a module on one core).
echo "== building ${TARGETS[*]} (logs: $OUT/build-<target>.log)"
build_start=$SECONDS
for t in "${TARGETS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
    build_target "$t" &
done
wait
for t in "${TARGETS[@]}"; do [ -e "$OUT/build-$t.ok" ] || exit 1; done
echo "   all built in $((SECONDS - build_start)) s"
[ -z "${QAT_FUZZ_BUILD_ONLY:-}" ] || exit 0

# Whether a finding's stack reaches libhdf5 before any frame of ours (Sources/, fuzz/, Yams, the Swift
# runtime): a libhdf5 bug on a file without our integrity trailer (docs/CHECKPOINTS.md). It is
# counted, its input kept, and the run goes on from the corpus so far. Anything else (our code, a
# broken property) stops the script.
# Leaks are not: the ones libhdf5 makes on corrupt files are suppressed by function (fuzz/lsan.supp), so
# any other leak needs a look.
in_libhdf5() {
    awk '/ERROR: (AddressSanitizer|libFuzzer)/ {on=1; next}
         on && /^ *#[0-9]+ / && /libhdf5/ {print "libhdf5"; exit}
         on && /^ *#[0-9]+ / && /\/Sources\/|\/fuzz\/|checkouts\/Yams|libswift/ {print "ours"; exit}' "$1" | grep -q libhdf5
}
# Runs a harness (arguments: the command), then removes its scratch folder (the HDF5 harnesses'
# qat-fuzz-<target>-<pid>), which a crashed process leaves behind; returns the harness's status.
run_harness() {
    local pid status=0
    QAT_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$@" &
    pid=$!
    wait $pid || status=$?
    rm -rf /dev/shm/qat-fuzz-*-"$pid" "${TMPDIR:-/tmp}"/qat-fuzz-*-"$pid"
    return $status
}
# Whether an input that timed out runs within the timeout in one of three reruns on its own.
reproduces_quickly() {
    local k
    for k in 1 2 3; do
        ASAN_OPTIONS=detect_leaks=0 run_harness "$OUT/bin/$1" -timeout=5 "$2" > /dev/null 2>&1 && return 0
    done
    return 1
}
maxlen() {
    case $1 in recipe|dota) echo 8192 ;; coco) echo 16384 ;; *) echo 32768 ;; esac
}
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$OUT/corpus/$t"
    if [ -n "$RUNS" ]; then what="$RUNS inputs"; else what="${SECS}s"; fi
    echo "== fuzzing $t for $what (seeds: fuzz/corpus/$t, log: $OUT/$t.log)"
    : > "$OUT/$t.log"
    start=$SECONDS; end=$((SECONDS + SECS)); runs=0; ours=0; hdf5=0; slow=0
    dict=()
    [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
    while true; do
        if [ -n "$RUNS" ]; then
            [ "$runs" -lt "$RUNS" ] || break
            limit=(-runs=$((RUNS - runs)))
        else
            [ $SECONDS -lt $end ] || break
            limit=(-max_total_time=$((end - SECONDS)))
        fi
        # One thread for OpenBLAS and parallelFor, so exec/s is the harness's own. The HDF5 targets need
        # full malloc stacks for the suppressions (libhdf5 has no frame pointers).
        asan=detect_leaks=1
        case $t in checkpoint|hdf5_chips) asan=$asan:fast_unwind_on_malloc=0 ;; esac
        ASAN_OPTIONS=$asan LSAN_OPTIONS=suppressions=fuzz/lsan.supp \
            run_harness "$OUT/bin/$t" "${limit[@]}" -max_len="$(maxlen "$t")" -timeout=5 -detect_leaks=1 -print_final_stats=1 \
            -artifact_prefix="$OUT/$t-" "${dict[@]}" "$OUT/corpus/$t" "fuzz/corpus/$t" > "$OUT/$t.run.log" 2>&1 || true
        cat "$OUT/$t.run.log" >> "$OUT/$t.log"
        n=$(awk '/stat::number_of_executed_units/ {print $2}' "$OUT/$t.run.log" | tail -1)
        runs=$((runs + ${n:-0}))
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$OUT/$t.run.log" | tail -1)
        if [ -z "$artifact" ]; then
            # Stopped without a finding: done, unless it stopped before running anything.
            [ "${n:-0}" -gt 0 ] || { echo "   $t did not run:"; tail -5 "$OUT/$t.run.log" | sed 's/^/     /'; ours=$((ours + 1)); }
            break
        fi
        # libFuzzer's timeout is wall-clock time: on a loaded machine (nice 15 next to training jobs) a
        # quick input can be stalled past it. A timeout counts only if the input also times out alone.
        if [[ $artifact == *-timeout-* ]] && reproduces_quickly "$t" "$artifact"; then
            slow=$((slow + 1))
            echo "   timeout not reproduced (the input runs in time alone; machine load): $artifact"
            continue
        fi
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
    echo "== $t: $runs inputs executed in $((SECONDS - start)) s; crashes: $ours in our code, $hdf5 inside libhdf5; $slow timeouts not reproduced"
    [ $ours -eq 0 ] || status=1
done
exit $status
