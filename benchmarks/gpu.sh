#!/usr/bin/env bash
# Every GPU check in one run: < 8 minutes on one H100, random-init weights, no network.
#
#   bash benchmarks/gpu.sh            # results and logs in $OUT (default benchmarks/out), table last
#
# 1. bench: Nemotron-4 15B architecture, random init, bf16, 4096-token samples, batch auto (<= 8):
#    compiled plain forward vs compiled analysis pass (hooks in the graph) vs eager; MFU against a
#    8192^3 bf16 matmul timed in the same run; peak memory; projected 1024 x 4096 calibration time.
# 2. analyze: the same model and shapes, compile on (inductor's cache holds bench's graph), random
#    token ids (no tokenizer needed), a few batches with a padded last one: graphs/breaks recorded.
# 3. the summary table (benchmarks/gpu_table.py), printed last.
# Without CUDA it runs a degraded CPU version (SmolLM2-135M shape, tiny sizes) and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  MODE=gpu MODEL=15B SEQ=4096 CAP=8 STEPS=3 SAMPLES=20 BLOCKS=1,2,4,8 T_BENCH=330 T_ANALYZE=150
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
else
  echo "gpu.sh: no CUDA device: DEGRADED CPU MODE (smollm2-135m shape, tiny sizes); GPU targets not checked" >&2
  MODE=cpu MODEL=smollm2-135m SEQ=32 CAP=2 STEPS=2 SAMPLES=5 BLOCKS=1 T_BENCH=240 T_ANALYZE=240
  export OMP_NUM_THREADS=1  # shared CPUs: one thread per process is the steadiest
fi
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee "$OUT/versions.txt"

start=$(date +%s)
timeout "$T_BENCH" python cli.py bench --model "$MODEL" --random-init --seq-len "$SEQ" --batch-size auto \
  --max-batch-size "$CAP" --steps "$STEPS" --warmup 2 --json > "$OUT/bench.json" 2> "$OUT/bench.log"
echo "bench: exit $? after $(( $(date +%s) - start ))s" | tee "$OUT/bench.status"

# analyze with bench's batch size, so the compiled graph is the one inductor has just cached
BS=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['batch_size'])" "$OUT/bench.json" 2>/dev/null \
     || echo 1)
COMPILE=--compile; [ "$MODE" = cpu ] && COMPILE=--no-compile
start=$(date +%s)
timeout "$T_ANALYZE" python cli.py analyze --model "$MODEL" --random-init --data random --samples "$SAMPLES" \
  --eval-samples 1 --seq-len "$SEQ" --batch-size "$BS" --block-sizes "$BLOCKS" $COMPILE --out "$OUT/analyze" --force --no-figures \
  > "$OUT/analyze.log" 2>&1
echo "analyze: exit $? after $(( $(date +%s) - start ))s" | tee "$OUT/analyze.status"

python benchmarks/gpu_table.py "$OUT" "$MODE"
