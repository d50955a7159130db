#!/usr/bin/env bash
# The GPU checks, in one run on one CUDA GPU (under 8 minutes on an H100/H200-class card):
#   1. clip_step.py: ViT-B-32, B=256, bf16, a FactorCL-SSL step against a plain CLIP step
#      (target: ratio <= 2.3);
#   2. augment_speed.py on the GPU: the vectorised feature augmentations against the per-sample loop
#      (target: >= 20x);
#   3. objective_cost.py on the GPU: every method's step on the same encoders (B = 256 and 1024);
#   4. the same for SimCLR and FactorCL-SSL at B = 256 with the main loss torch.compile'd
#      (TrainConfig(compile=True)), next to their eager steps.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (default: $OUT if set, else gpu_check_results)
# Each step writes its JSON and log to OUT_DIR; a step that fails is reported and the rest still run.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_check_results}}"
mkdir -p "$out"
python=${PYTHON:-python}

if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to torch; these checks need one (nothing was run)" >&2
  exit 2
fi
"$python" -c "import torch; print('gpu_check on', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

status=0
run() {  # run NAME TIMEOUT_S COMMAND...: one check, its output also kept in OUT_DIR/NAME.log
  local name=$1 limit=$2
  shift 2
  echo
  echo "== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || status=1
}

# The limits add up to 8 minutes. objective_cost writes its JSON after each batch size, so a check
# cut short by its limit still leaves what it measured.
run clip_step 170 "$python" benchmarks/clip_step.py --out "$out/clip_step.json"
run augment_speed 90 "$python" benchmarks/augment_speed.py --device cuda --out "$out/augment_speed.json"
run objective_cost 110 "$python" benchmarks/objective_cost.py --device cuda --out "$out/objective_cost.json"
# Compiling from a cold inductor/Triton cache takes a while: one batch size, two methods.
run objective_cost_compiled 110 "$python" benchmarks/objective_cost.py --device cuda --encoders vector \
  --batch-sizes 256 --methods simclr factorcl-ssl --compile --out "$out/objective_cost_compiled.json"

echo
echo "gpu_check: results in $out (exit $status)"
grep -h "PASS\|FAIL\|ratio" "$out"/*.log || true
exit "$status"
