#!/usr/bin/env bash
# The device checks, in one script, for a session that has a CUDA machine:
#   1. the CUDA test suite (tests marked `cuda`: rerank and MultiExpan);
#   2. the re-ranker throughput (eq. 1 vs CLIP-only at batch sizes 1/8/32);
#   3. the MultiExpan throughput (training slices, expansion cached vs straightforward) and the
#      synthetic-set metrics.
# Usage: bash bench/gpu.sh [OUT_DIR]   (default bench/results; results are named *_cuda.{json,md})
# The device image lacks open_clip_torch (+ ftfy, wcwidth) and the MiniLM vocabulary; carry them:
#   .whl/ (wheels) and .gpu_carry/vocab.txt, both ignored through .git/info/exclude, then first run
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -uo pipefail
OUT_DIR=${1:-bench/results}
VOCAB=${VOCAB:-.gpu_carry/vocab.txt}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
status=0
timeout 240 python3 -m pytest -q -p no:cacheprovider -m cuda -rs tests/rerank/test_cuda.py tests/bench/test_cuda.py \
  2>&1 | tee "$OUT_DIR/cuda_tests.log" || status=1
timeout 420 python3 bench/rerank.py --device cuda --out "$OUT_DIR/rerank_throughput_cuda" || status=1
timeout 270 python3 bench/multiexpan_throughput.py --device cuda --out "$OUT_DIR" --naive-targets 105,203 || status=1
timeout 200 python3 bench/multiexpan_synthetic.py --device cuda --out "$OUT_DIR" --vocab "$VOCAB" --epochs 15 \
  --methods random,image-only,text-mep:0,multiexpan:0,multiexpan:4 || status=1
exit $status
