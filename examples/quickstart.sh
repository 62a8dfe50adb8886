#!/usr/bin/env bash
# From nothing to predictions on this machine, with no AWS account (`make quickstart` runs this
# from the repository root after installing what is missing): train a tiny BERT on the SST-2
# sample in examples/, register it in the local registry (local-runs/), score
# examples/reviews.jsonl with it. README.md shows the same commands.
set -euo pipefail
run=quickstart-$(date +%Y%m%d-%H%M%S)
.venv/bin/bertbatch local --train examples/train.tsv --eval examples/dev.tsv --model random:tiny \
    --vocab examples/vocab.txt --epochs 10 --learning-rate 1e-3 --batch-size 16 --max-seq-length 64 --run-name "$run"
.venv/bin/bertbatch runs --local
.venv/bin/bertbatch promote "$run" --name sst2-tiny --alias production --local
.venv/bin/bertbatch predict --local --model sst2-tiny@production --input examples/reviews.jsonl
.venv/bin/bertbatch models list --local
