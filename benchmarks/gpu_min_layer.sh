#!/usr/bin/env bash
# token_sparse defaults vs strategy_options={"min_layer": 3} on the full BANKING77 set, seeds 0-1,
# four fits at once on one GPU (accuracy comparison; fit times include the contention).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=2 SKSPARSEFT_BENCH_MODEL=$PWD/.gpucache/minilm16
for seed in 0 1; do
  for opt in none min3; do
    timeout 185 python3 - "$seed" "$opt" > "$OUT/log_${seed}_${opt}.txt" 2>&1 <<'PY' &
import json, os, queue, sys
sys.path.insert(0, "benchmarks")
import run
seed, opt = int(sys.argv[1]), sys.argv[2]
params = {} if opt == "none" else {"strategy_options": {"min_layer": 3}}
spec = {"config": "min_layer_gpu", "dataset": "banking77", "regime": "full", "seed": seed,
        "method": "token_sparse", "params": params}
q = queue.Queue()
run.one_run(spec, q)
with open(os.path.join(os.environ["OUT"], f"row_{seed}_{opt}.json"), "w") as f:
    json.dump(q.get(), f)
PY
  done
done
wait || true
cat "$OUT"/row_*.json | python3 -c "import sys, json; [print(r['seed'], r['params'], round(r['accuracy'], 4), round(r['fit_s'])) for r in map(json.loads, sys.stdin.read().replace('}{', '}\n{').splitlines())]"
