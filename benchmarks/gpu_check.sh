#!/usr/bin/env bash
# The GPU figures in one prepared run, for a lent device (no network there): everything it prints goes to
# $OUT/gpu_check.log, which comes back.
#
#   bash benchmarks/gpu_check.sh --prepare     here, once: the wheels the device's image lacks, into .whl/
#   device run (carry .whl):  bash benchmarks/gpu_check.sh
#   on a CPU, to check the script itself:  GPU_CHECK_SMALL=1 OUT=/tmp/out bash benchmarks/gpu_check.sh
#
# Steps, the most wanted figure first, each under its own timeout so that one stall cannot eat the lease
# (about 6 minutes in all when nothing stalls; run it with timeout_s 600):
#   0. versions and nvidia-smi
#   1. benchmarks/train_throughput.py: convnext_base at 384 px, batch 64, fp32 / bf16 / bf16+cl / bf16+cl+compile
#      from a `prepare` cache of phantoms at 384: images/s, MFU, first step (compile), peak memory, loader share
#   2. pytest -m gpu (bf16/fp16 steps, the CLI on cuda, the speed options; two-GPU NCCL skips on one GPU)
#   4. cxr14 demo on the GPU: minutes and test AUROC
#   5. benchmarks/predict_speed.py on the GPU, and ONNX Runtime's CUDA provider against PyTorch if it is there
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=(timm==1.0.31 pydicom==3.0.2 ttach==0.0.3)  # the device's image lacks or may hold older ones

if [ "${1:-}" = "--prepare" ]; then
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  mkdir -p .whl
  PIP=${PIP:-.venv/bin/python -m pip}
  $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  $PIP wheel -q --no-deps grad-cam==1.5.7 -w .whl  # published as a source archive only
  ls -l .whl
  exit 0
fi

: "${OUT:?set OUT to the folder whose files come back}"
LOG="$OUT/gpu_check.log"
PY=${PY:-python3}
SMALL=${GPU_CHECK_SMALL:-0}
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1
exec > >(tee -a "$LOG") 2>&1

step() { echo; echo "=== $1 ($(date +%H:%M:%S))"; }
timed() {  # timed SECONDS command...: run it, say how long it took and how it ended
  local limit=$1; shift
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "--- exit $rc after $((SECONDS - t0)) s: $*"
  return 0
}

step "set-up"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl
  export PYTHONPATH="$WORK/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no .whl/ carried: using what this Python has (bash benchmarks/gpu_check.sh --prepare makes it)"
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
$PY - <<'EOF'
import importlib, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda)
for name in ("timm", "pydicom", "pytorch_grad_cam", "onnxruntime", "sklearn", "scipy", "pandas", "fastapi"):
    try:
        print(f"  {name} {getattr(importlib.import_module(name), '__version__', '?')}")
    except Exception as exc:  # noqa: BLE001 - a report, not a check
        print(f"  {name}: not importable ({type(exc).__name__})")
print("GPUs:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"

if [ "$SMALL" = 1 ]; then
  MODEL=convnext_atto SIZE=64 BATCH=16 STEPS=4 WARM=2 DEVICE=cpu VARIANTS=fp32,fp32+cl
  DEMO=(--n_patients 60 --phantom_size 64 --image_size 32 --epochs 1 --device cpu --no-bbox)
  PREDICT_N=32 ONNX=(--model convnext_atto --image_size 64 --batch 8)
else
  MODEL=convnext_base SIZE=384 BATCH=64 STEPS=20 WARM=3 DEVICE=cuda VARIANTS=fp32,bf16,bf16+cl,bf16+cl+compile
  DEMO=(--device cuda)
  PREDICT_N=1024 ONNX=(--model convnext_tiny --image_size 224 --batch 32)
fi

step "1. training throughput: $MODEL at $SIZE px, batch $BATCH ($VARIANTS)"
timed 300 $PY benchmarks/train_throughput.py --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" \
  --variants "$VARIANTS" --steps "$STEPS" --warmup "$WARM" --device "$DEVICE" --workers "$(nproc)"

step "2. pytest -m gpu"
timed 200 $PY -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider

step "3. cxr14 demo ${DEMO[*]}"
timed 200 $PY -m cxr14 demo --data_dir "$WORK/demo_data" --output_dir "$WORK/demo_run" --no-progress "${DEMO[@]}"
[ -f "$WORK/demo_run/metrics.json" ] && cp "$WORK/demo_run/metrics.json" "$OUT/demo_metrics.json"

step "4. predict speed and ONNX Runtime"
timed 90 $PY benchmarks/predict_speed.py --n "$PREDICT_N" --device "$DEVICE" --workers 8 --cam 16
timed 60 $PY benchmarks/onnx_speed.py "${ONNX[@]}" --device "$DEVICE"

step "done"
rm -rf "$WORK"
