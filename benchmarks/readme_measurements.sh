#!/usr/bin/env bash
# Every README number outside the generated results section, measured on the embedded default (CPU),
# with the small result files copied to benchmarks/results/readme/ (committed; the README cites them).
#
#   bash benchmarks/readme_measurements.sh [compare|search|all]     # about an hour on a 2-core CPU
#
#   compare  prune -> distill -> evaluate x3 -> card -> compare, and analyze --bootstrap ("What did compression cost?")
#   search   search --rank with and without head merging on the teacher's default analysis run
#            ("Faithful to the paper"; reuses runs/readme/bootstrap from `compare`, else makes it)
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
RES=benchmarks/results/readme
RUNS=runs/readme
mkdir -p "$RES"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false
t() { local s=$(date +%s); "$@"; echo "$(( $(date +%s) - s ))s: $*" | tee -a "$RES/timings.txt"; }

if [ "$WHAT" = compare ] || [ "$WHAT" = all ]; then
  rm -rf "$RUNS"
  t python cli.py prune --model smollm2-135m --hidden 387 --ffn 1024 --out "$RUNS/pruned"
  t python cli.py distill --student "$RUNS/pruned" --steps 40 --batch-size 2 --out "$RUNS/distill"
  rm -rf runs/*/eval-*  # evaluate runs live in runs/<model>/eval-<id>/, where cards look for them
  t python cli.py evaluate --tasks minitron_facts,minitron_cloze
  t python cli.py evaluate --model "$RUNS/pruned" --tasks minitron_facts,minitron_cloze
  t python cli.py evaluate --model "$RUNS/distill/model" --tasks minitron_facts,minitron_cloze
  t python cli.py card --model "$RUNS/distill/model" --out "$RUNS/card"
  t python cli.py compare --student "$RUNS/distill/model" --out "$RUNS/compare"
  t python cli.py analyze --bootstrap 200 --out "$RUNS/bootstrap" --no-figures
  cp "$RUNS/pruned/prune_recipe.json" "$RES/prune_recipe.json"
  cp "$RUNS/distill/distill.json" "$RES/distill.json"
  for f in runs/*/eval-*/evaluation.json; do cp "$f" "$RES/evaluate-$(basename "$(dirname "$(dirname "$f")")").json"; done
  cp "$RUNS/card/README.md" "$RES/distilled-card.md"
  cp "$RUNS/compare/compare.json" "$RES/compare.json"
  python -c "import json,sys; m=json.load(open(sys.argv[1])); json.dump({k: m[k] for k in ('run_id','model','data','bootstrap','timings','versions')}, open(sys.argv[2],'w'), indent=1)" \
    "$RUNS/bootstrap/metrics.json" "$RES/bootstrap.json"
fi

if [ "$WHAT" = search ] || [ "$WHAT" = all ]; then
  RUN="$RUNS/bootstrap"
  [ -f "$RUN/metrics.json" ] || t python cli.py analyze --bootstrap 200 --out "$RUN" --no-figures
  t python cli.py search --model smollm2-135m --params 8B --rank --run "$RUN" --retrain-steps 20 --out "$RUNS/search-merge" --force
  t python cli.py search --model smollm2-135m --params 8B --rank --run "$RUN" --retrain-steps 20 --no-head-merge \
    --out "$RUNS/search-no-merge" --force
  cp "$RUNS/search-merge/search.json" "$RES/search-8b-head-merge.json"
  cp "$RUNS/search-no-merge/search.json" "$RES/search-8b-no-head-merge.json"
fi
