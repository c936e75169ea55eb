#!/usr/bin/env bash
# The GPU check of issue 15, in one go (DEVELOPERS.md, "The GPU check"): install, the CUDA
# tests that matter, the benchmark rows, one JSON.  Each step has its own time limit and
# writes as it goes, so a run cut short still returns what it measured.
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine: CUDA
#   GPU_CHECK_ARCH=cpu GPU_CHECK_QUICK=1 GPU_CHECK_SLOW=4 bash benchmarks/gpu_check.sh
#                                                     # try it anywhere: CPU backend, fewer rows,
#                                                     # time limits x4
#
# OUT (default /tmp/gpu-check) receives gpu-check-<arch>.json, the logs and device.txt.
# Wheels in .whl/ (taichi, dill: DEVELOPERS.md says how to fetch them) are installed into
# /tmp/site first: the GPU machine cannot reach a package index.
set -uo pipefail
cd "$(dirname "$0")/.."
ARCH=${GPU_CHECK_ARCH:-cuda}
OUT=${OUT:-/tmp/gpu-check}
PY=${PYTHON:-python3}
SLOW=${GPU_CHECK_SLOW:-1}
QUICK=${GPU_CHECK_QUICK:+--quick}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ENABLE_TAICHI_HEADER_PRINT=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TI_ARCH
t0=$(date +%s)
step() { echo "== $(( $(date +%s) - t0 )) s: $*"; }

step install
if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/ failed"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
$PY -c "import taichi, softras_taichi" || { echo "taichi or softras_taichi does not import"; exit 1; }
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; $PY -c "import taichi as ti; print('taichi', ti.__version__)"; } > "$OUT/device.txt"

# 1. the numbers that matter most first: the GPU layout on the GPU
step "rows: $ARCH, gpu layout"
timeout $((90 * SLOW)) $PY benchmarks/gpu_rows.py $QUICK --arch "$ARCH" --layout gpu --json "$OUT/rows-$ARCH-gpu.json" 2>&1 | tee "$OUT/rows.log"

# 2. the float64 equality of both layouts with autodiff on this backend (shared memory on a GPU),
#    and Vulkan where the machine has a loader (skips otherwise)
step "tests on $ARCH"
SOFTRAS_TEST_ARCH=$ARCH timeout $((120 * SLOW)) $PY -m pytest -o addopts="" -q -p no:cacheprovider \
    tests/test_tiles.py tests/test_vulkan.py 2>&1 | tee "$OUT/tests.log"
tests_rc=${PIPESTATUS[0]}

# 3. the CPU layout on the same backend, and the CPU backend in its own layout (the ratio)
step "rows: $ARCH, cpu layout"
timeout $((50 * SLOW)) $PY benchmarks/gpu_rows.py $QUICK --arch "$ARCH" --layout cpu --no-fit --json "$OUT/rows-$ARCH-cpu.json" \
    2>&1 | tee -a "$OUT/rows.log"
if [ "$ARCH" != cpu ]; then
    step "rows: cpu backend"
    timeout $((60 * SLOW)) $PY benchmarks/gpu_rows.py $QUICK --arch cpu --layout cpu --reps 3 --json "$OUT/rows-cpu-cpu.json" \
        2>&1 | tee -a "$OUT/rows.log"
fi

step "collect"
$PY - "$OUT" "$ARCH" "$tests_rc" <<'EOF'
import glob, json, os, sys
out, arch, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {os.path.basename(p)[5:-5]: json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "rows-*.json")))}
tail = open(os.path.join(out, "tests.log")).read().strip().splitlines()[-1:] if os.path.exists(os.path.join(out, "tests.log")) else []
summary = {"arch": arch, "tests_rc": rc, "tests": tail, "runs": runs,
           "device": open(os.path.join(out, "device.txt")).read()}
json.dump(summary, open(os.path.join(out, f"gpu-check-{arch}.json"), "w"), indent=1)
print(json.dumps({k: v["rows"] for k, v in runs.items()}, indent=1))
print("tests:", rc, tail)
EOF
step done
