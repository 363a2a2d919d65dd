#!/usr/bin/env bash
# GPU checks and benchmarks, for a session that has a CUDA device (see the device notes in DEVELOPERS.md).
# Usage: bash bench/gpu.sh [OUT_DIR]   (default bench/results; results are named *_cuda.{json,md})
# Needs torch/torchvision with CUDA and open_clip_torch (+ ftfy, wcwidth) importable, e.g. from carried wheels:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
set -uo pipefail
OUT_DIR=${1:-bench/results}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
nvidia-smi -L
status=0
# re-ranker: CUDA scoring agrees with the CPU, then eq. 1 throughput vs CLIP-only at batch sizes 1/8/32
python3 -m pytest -q -p no:cacheprovider tests/rerank/test_cuda.py -rs 2>&1 | tee "$OUT_DIR/rerank_cuda_tests.log" || status=1
timeout 420 python3 bench/rerank_throughput.py --device cuda --out "$OUT_DIR/rerank_throughput_cuda" || status=1
exit $status
