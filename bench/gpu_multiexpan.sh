#!/usr/bin/env bash
# MultiExpan device checks in one go (run from the repo root on a CUDA machine):
#   bench/gpu_multiexpan.sh tests       -> the CUDA tests of tests/bench
#   bench/gpu_multiexpan.sh bench       -> synthetic-set metrics and throughput on CUDA
# Results go to $OUT (or bench/results). VOCAB: a WordPiece vocab.txt for the tiny random BERT
# (the offline MiniLM's vocab.txt); defaults to .gpu_carry/vocab.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-bench/results}
VOCAB=${VOCAB:-.gpu_carry/vocab.txt}
PY=${PY:-python3}
mkdir -p "$OUT"
case "${1:-tests}" in
  tests)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    timeout 170 $PY -m pytest -q -p no:cacheprovider tests/bench/test_cuda.py tests/bench/test_losses.py -rs -m "cuda or not cuda"
    ;;
  bench)
    timeout 200 $PY bench/multiexpan_synthetic.py --device cuda --out "$OUT" --vocab "$VOCAB" --epochs 15 \
      --methods random,image-only,text-mep:0,multiexpan:0,multiexpan:4
    timeout 270 $PY bench/multiexpan_throughput.py --device cuda --out "$OUT" --naive-targets 105,203
    ;;
esac
