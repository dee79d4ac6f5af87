#!/usr/bin/env bash
# benchmarks/run.py --config full_10shot on one GPU: one process per method, all at once.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=1 SKSPARSEFT_BENCH_MODEL=$PWD/.gpucache/minilm16
export CLINC150_JSON=$PWD/.gpucache/clinc150/data_full.json SKSPARSEFT_BENCH_RESULTS=$OUT
for m in tfidf_lr frozen_lr token_sparse fisher random bitfit layers full lora prefix; do
  timeout 330 python3 benchmarks/run.py --config full_10shot --only $m \
    > "$OUT/log_$m.txt" 2>&1 &
done
wait || true
tail -n 3 "$OUT"/log_*.txt | grep -v "Loading\|it/s"
