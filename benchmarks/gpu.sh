#!/usr/bin/env bash
# Every GPU check in one run: under 6 minutes on one H100 or H200, random-init weights, no network.
#
#   OUT=dir bash benchmarks/gpu.sh      # small results in $OUT (default benchmarks/out), PASS/MISS table last
#
# Steps, each timed, its exit code and the tail of its log kept (big files stay in $WORK):
#   cuda-tests   the suite's CUDA tests (skipped on CI, which has no GPU)
#   bench        Nemotron-4 15B shape, bf16, 8 x 4096 tokens: plain vs analysis, eager and regional compile
#   analyze      the same model (random token ids) -> figures -> card, every command on CUDA
#   prune-8B     Minitron-8B's shape cut from that run: real surgery on the GPU, exported
#   tiny-*       a small random-init Nemotron with a BPE tokenizer trained on pydoc (benchmarks/tiny_model.py):
#                analyze -> prune -> 5 distill steps -> search --rank
# Without CUDA it stops: these checks mean nothing on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out}
WORK=${WORK:-/tmp/minitron-gpu}
PY=${PY:-$(command -v python3 || command -v python)}
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
LOG="$OUT/gpu.log"
: > "$LOG"
: > "$WORK/steps.tsv"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh: no CUDA device here; these checks need one (use the device tool)" >&2
  exit 2
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} | tee "$WORK/versions.txt" >> "$LOG"
T0=$(date +%s)

step() {  # step NAME TIMEOUT_S CMD... : run, time, keep the exit code and the log's tail
  local name=$1 limit=$2; shift 2
  local start=$(date +%s)
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  local code=$?
  local secs=$(( $(date +%s) - start ))
  printf '%s\t%s\t%s\n' "$name" "$code" "$secs" >> "$WORK/steps.tsv"
  { echo "== $name: exit $code after ${secs}s: $*"; tail -n 15 "$WORK/$name.log" | cut -c1-220; } >> "$LOG"
  echo "$name: exit $code after ${secs}s"
}

CLI=("$PY" cli.py)
step cuda-tests 150 "$PY" -m pytest -q -x -p no:cacheprovider tests/importance/test_devices.py tests/test_cuda.py
step bench 170 "${CLI[@]}" bench --model 15B --random-init --seq-len 4096 --batch-size 8 --steps 3 --warmup 1 \
  --compile auto --json
sed -n '/^{/,$p' "$WORK/bench.log" > "$OUT/bench.json"
step analyze 150 "${CLI[@]}" analyze --model 15B --random-init --data random --samples 16 --eval-samples 1 \
  --seq-len 4096 --batch-size 8 --block-sizes 1,2,4,8 --no-figures --out "$WORK/run15b"
step figures 60 "${CLI[@]}" figures --run "$WORK/run15b"
step card 60 "${CLI[@]}" card --model "$WORK/run15b" --out "$WORK/card15b"
step prune-8B 150 "${CLI[@]}" prune --model 15B --random-init --run "$WORK/run15b" --target 8B --no-eval \
  --out "$WORK/pruned8b"
step tiny-make 60 "$PY" benchmarks/tiny_model.py "$WORK/tiny"
step tiny-analyze 90 "${CLI[@]}" analyze --model "$WORK/tiny" --samples 16 --eval-samples 4 --seq-len 256 \
  --no-figures --out "$WORK/tiny-run"
step tiny-prune 90 "${CLI[@]}" prune --model "$WORK/tiny" --run "$WORK/tiny-run" --hidden 384 --ffn 1024 --heads 4 \
  --layers 6 --depth-metric drop-loss --eval-samples 4 --seq-len 256 --out "$WORK/tiny-pruned"
step tiny-distill 90 "${CLI[@]}" distill --teacher "$WORK/tiny" --student "$WORK/tiny-pruned" --steps 5 --seq-len 256 \
  --batch-size 4 --eval-samples 4 --eval-every 0 --out "$WORK/tiny-distilled"
step tiny-search 120 "${CLI[@]}" search --model "$WORK/tiny" --params 8B --rank --run "$WORK/tiny-run" \
  --retrain-steps 2 --eval-samples 4 --seq-len 256
echo "total $(( $(date +%s) - T0 ))s" >> "$WORK/steps.tsv"

"$PY" benchmarks/gpu_table.py "$WORK" "$OUT" | tee "$OUT/table.txt"
