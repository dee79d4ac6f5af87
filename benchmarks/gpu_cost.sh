#!/usr/bin/env bash
# The cost benchmark on a GPU machine that has torch/transformers/peft but neither skorch nor the
# packaged MiniLM: both are carried in (.whl/, and an fp16 copy of the model loaded as float32).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 benchmarks/cost.py --device cuda --model .gpucache/minilm16 --n-train 10003 --epochs 3 \
    --parts ratio predict --out "$OUT/cost_cuda.jsonl"
