#!/usr/bin/env bash
# GPU benchmark: bert_train vs the tuned transformers Trainer on one NVIDIA GPU (BERT-base, bf16,
# max_seq_length 128 on SST-2 and 512 on documents of joined SST-2 rows), under 9 minutes (one
# 10-minute call); the JSON goes to bench/results/gpu-<gpu>.json. Its ratios decide which of the
# container's CPU-tuned step changes (modeling.cpu_tuned) and --compile auto stay on for CUDA.
#   bench/gpu.sh            # the measurement
#   bench/gpu.sh --smoke    # a few steps of the tiny model, CPU allowed (checks the script)
# Uses the repo's .venv when it exists, else $PYTHON or python3 (which needs a CUDA torch,
# transformers and accelerate at the pinned versions). Nothing is downloaded.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="${PYTHON:-python3}"
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then
  python=.venv/bin/python
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$repo:$repo/training_container${PYTHONPATH:+:$PYTHONPATH}"
if [[ "${1:-}" != "--smoke" ]] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
exec timeout 570 "$python" -m bench.gpu "$@"
