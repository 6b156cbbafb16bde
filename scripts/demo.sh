#!/usr/bin/env bash
# The README main command: installs missing Debian packages, builds zsad, runs the demo
# (experiments/demo.yaml: CoPS trained on synthetic textures on 2 local ranks, zero-shot on
# synthetic objects, vs untrained prompts, ablations and the WinCLIP-style baseline, 3 seeds),
# then prints the leaderboard (mean +- std over seeds) and writes leaderboard.html next to it.
#   scripts/demo.sh                 the demo
#   scripts/demo.sh --ci            the CI size (experiments/demo_ci.yaml)
#   scripts/demo.sh [--ci] k=v ...  extra overrides for every job
# Build directory: $ZSAD_BUILD_DIR (default build/).
# Outputs: ${ZSAD_OUTPUT_ROOT:-demo_output}/multirun/<demo>/<date>/<time>/ (per-job results/, panels/*.png).
set -euo pipefail
cd "$(dirname "$0")/.."
exp=demo
if [ "${1:-}" = "--ci" ]; then exp=demo_ci; shift; fi

build="${ZSAD_BUILD_DIR:-build}"
bash scripts/install-deps.sh
[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target zsad

# Two ranks share the cores: idle OpenMP threads must sleep, not spin, or they starve OpenBLAS
# (docs/benchmarks.md, "CoPS training with the feature cache": about 2x on the cached step).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
export ZSAD_OUTPUT_ROOT="${ZSAD_OUTPUT_ROOT:-$PWD/demo_output}"
export ZSAD_DATA_ROOT="${ZSAD_DATA_ROOT:-$ZSAD_OUTPUT_ROOT/data}"
zsad="$build/launch/zsad"
start=$(date +%s)
"$zsad" sweep "$exp" "$@"
dir=$(ls -d "$ZSAD_OUTPUT_ROOT"/multirun/"$exp"/*/* | sort | tail -1)
"$zsad" leaderboard "$dir" --no-per-class
"$zsad" leaderboard "$dir" --format html --out "$dir/leaderboard.html"
echo "demo: $(( $(date +%s) - start )) s after the build; HTML leaderboard: $dir/leaderboard.html; PNG panels: $dir/*/panels/"
