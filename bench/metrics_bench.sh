#!/usr/bin/env bash
# Metrics benchmark (docs/benchmarks.md, section "Metrics"):
#  1. memory: `zsad metrics` on one class of ~200 M pixels (746 images of 518x518); peak RSS
#     must stay under 3x the class's float32 scores + uint8 masks;
#  2. speed: pixel AUROC + AP + exact AUPRO on the same data (default 100 images of 518x518,
#     one MVTec-class size) with zsad and with sklearn + the Python MVTec AUPRO reference;
#     prints the speed ratio and checks that the values agree.
# Usage: bench/metrics_bench.sh ZSAD_BINARY [WORKDIR] [--memory-images N] [--speed-images N] [--threads N]
set -euo pipefail
ZSAD=${1:?usage: metrics_bench.sh ZSAD_BINARY [WORKDIR] [options]}
shift
WORK=${1:-/tmp/zsad_metrics_bench}
[[ $# -gt 0 ]] && shift
MEM_IMAGES=746
SPEED_IMAGES=100
THREADS=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --memory-images) MEM_IMAGES=$2; shift 2 ;;
    --speed-images) SPEED_IMAGES=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
PY=${ZSAD_PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"

peak_kb() { grep "Maximum resident set size" "$1" | awk '{print $NF}'; }
cpu_s() { awk '/User time|System time/ {s += $NF} END {print s}' "$1"; }
wall_s() { grep "Elapsed (wall clock)" "$1" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }

echo "== 1. memory: $MEM_IMAGES images x 518 x 518 in one class"
BIG=$WORK/big.h5
[[ -f $BIG ]] || "$PY" "$HERE/metrics_bench.py" generate "$BIG" --images "$MEM_IMAGES"
PIXELS=$((MEM_IMAGES * 518 * 518))
DATA_BYTES=$((PIXELS * 5))
/usr/bin/time -v "$ZSAD" metrics "$BIG" --threads "$THREADS" --json "$WORK/big.json" > "$WORK/big.txt" 2> "$WORK/big.time"
PEAK_KB=$(peak_kb "$WORK/big.time")
echo "pixels: $PIXELS  scores+masks: $((DATA_BYTES / 1048576)) MiB  peak RSS: $((PEAK_KB / 1024)) MiB  wall: $(wall_s "$WORK/big.time") s  CPU: $(cpu_s "$WORK/big.time") s"
MEM_OK=0
"$PY" -c "
peak = $PEAK_KB * 1024; data = $DATA_BYTES
r = peak / data
print('peak / (scores+masks) = %.2f  (limit 3.00): %s' % (r, 'OK' if r < 3 else 'FAIL'))
raise SystemExit(0 if r < 3 else 1)" || MEM_OK=1

echo "== 2. speed: $SPEED_IMAGES images x 518 x 518, zsad vs sklearn + Python MVTec AUPRO"
MID=$WORK/mid_$SPEED_IMAGES.h5
[[ -f $MID ]] || "$PY" "$HERE/metrics_bench.py" generate "$MID" --images "$SPEED_IMAGES" --seed 1
/usr/bin/time -v "$ZSAD" metrics "$MID" --threads "$THREADS" --json "$WORK/mid.json" > /dev/null 2> "$WORK/mid.time"
/usr/bin/time -v "$ZSAD" metrics "$MID" --threads 1 --json "$WORK/mid1.json" > /dev/null 2> "$WORK/mid1.time"
"$PY" "$HERE/metrics_bench.py" reference "$MID" > "$WORK/ref.json"
"$PY" - "$WORK" "$(wall_s "$WORK/mid.time")" "$(wall_s "$WORK/mid1.time")" "$THREADS" "$(cpu_s "$WORK/mid1.time")" <<'PYEOF'
import json, sys
work, t_ours, t_ours1, threads, cpu_ours1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
ours = json.load(open(work + "/mid.json"))["classes"]["bench"]
ref = json.load(open(work + "/ref.json"))
for k in ("pixel_auroc", "pixel_ap", "pixel_aupro"):
    d = abs(ours[k] - ref[k])
    print("%-12s zsad %.12f  reference %.12f  |diff| %.1e %s" % (k, ours[k], ref[k], d, "OK" if d < 1e-9 else "MISMATCH"))
print("python: read %.2f s; metrics (AUROC %.2f + AP %.2f + AUPRO %.2f) = %.2f s"
      % (ref["read_s"], ref["auroc_s"], ref["ap_s"], ref["aupro_s"], ref["metrics_s"]))
print("zsad metrics (whole command incl. HDF5 read, all 7 metrics): %.2f s with %s threads, %.2f s with 1 thread"
      % (t_ours, threads, t_ours1))
print("speed ratio (python metrics only / zsad whole command): %.1fx (%s threads), %.1fx (1 thread)"
      % (ref["metrics_s"] / t_ours, threads, ref["metrics_s"] / t_ours1))
print("CPU time (stable on a loaded machine): python metrics %.2f s, zsad whole command (1 thread) %.2f s: ratio %.1fx"
      % (ref["metrics_cpu_s"], cpu_ours1, ref["metrics_cpu_s"] / cpu_ours1))
PYEOF
exit $MEM_OK
