#!/usr/bin/env bash
# One command for a GPU machine: paper-scale timings of bids_recon, printed as one table.
#
#   bench/gpu.sh            # on the GPU machine, from the repository root (about 6 minutes on an H200)
#   bench/gpu.sh --smoke    # seconds on a CPU: the same steps at toy sizes (run by the tests)
#
# Installs nothing from the network. It expects a Python (PYTHON, default python3) with CUDA
# torch, NumPy, SciPy, pandas and scikit-learn; the other dependencies (pybids, nibabel, nilearn,
# matplotlib, h5py, ... and setuptools to build the project) are installed from wheels in WHEELS
# (default: ../wheels, beside the checkout) with pip --no-index, unless SKIP_INSTALL=1. Steps:
#   1. bench/streaming.py: extraction pass and ridge decode stage of VGG19, all 19 layers,
#      1,200 training + 50 test images, 10,000 voxels (decode beyond extraction, peak memory);
#   2. bench/recon.py: VGG19 reconstruction at batches 1, 8 and 50, 200 iterations
#      (time per iteration against a bare forward+backward, passes per iteration);
#   3. a whole participant run on the simulated medium dataset (1 participant, 126 test images,
#      VGG19 with random weights, batches of 50): time and peak memory per stage.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
if [[ "${1:-}" == "--smoke" ]]; then
  DEVICE=${DEVICE:-cpu}
  STREAM=(--network builtin --train 24 --test 4 --voxels 50)
  RECON=(--network builtin --batches 1 2 --iterations 3)
  SIZE=small
  RUN=(--network builtin --recon-iterations 3 --recon-batch-size 8)
else
  DEVICE=${DEVICE:-cuda}
  STREAM=(--network vgg19 --train 1200 --test 50 --voxels 10000)
  RECON=(--network vgg19 --batches 1 8 50 --iterations 200)
  SIZE=medium
  RUN=(--network vgg19 --weights "$OUT/vgg19_random.pth" --recon-batch-size 50)
fi

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  "$PYTHON" -m pip install --quiet --no-index --no-build-isolation \
    --find-links "${WHEELS:-../wheels}" -e . \
    || { echo "bench/gpu.sh: installing from ${WHEELS:-../wheels} failed (no network here)" >&2; exit 1; }
fi
"$PYTHON" - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}",
      f"({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
PY

echo "== 1. decode stage (bench/streaming.py)"
"$PYTHON" bench/streaming.py "${STREAM[@]}" --device "$DEVICE" | tee "$OUT/streaming.txt"
echo "== 2. reconstruction (bench/recon.py)"
"$PYTHON" bench/recon.py "${RECON[@]}" --device "$DEVICE" | tee "$OUT/recon.txt"
echo "== 3. whole participant run"
"$PYTHON" - "$OUT/vgg19_random.pth" <<'PY'
import sys, torch, torchvision
torch.save(torchvision.models.vgg19(weights=None).state_dict(), sys.argv[1])
PY
"$PYTHON" -c 'import sys; from bids_recon.simulate import main; sys.exit(main(sys.argv[1:]))' \
  "$OUT/ds" --size "$SIZE" --subjects 1 >/dev/null
start=$(date +%s.%N)
"$PYTHON" -m bids_recon "$OUT/ds" "$OUT/derivatives" participant -w "$OUT/work" \
  --device "$DEVICE" "${RUN[@]}" 2>&1 | tee "$OUT/participant.log" | grep -E "took|ERROR" || true
end=$(date +%s.%N)

echo
echo "== summary (device $DEVICE)"
grep -E "bare feature extraction|decode beyond|peak RSS" "$OUT/streaming.txt"
grep -E "^ *[0-9]+ " "$OUT/recon.txt" | awk '{printf "recon batch %s %-6s %s ms/iter = %s of a bare pass; %s passes/iter\n", $1, $3, $7, $8, $6}'
grep -E "stage took|evaluation took" "$OUT/participant.log" | sed -E 's/^.*INFO\] [^:]+: //'
awk -v s="$start" -v e="$end" 'BEGIN {printf "whole participant run: %.1f s\n", e - s}'
