#!/usr/bin/env bash
# NCCL all-reduce bus bandwidth between the nodes of a deployed platform: a job on the multi-node
# queue (over EFA where training.efa is on) whose command is `allreduce-bench`
# (training_container/bert_train/allreduce.py): one JSON line per message size, 1 MiB to 1 GiB,
# with the bus bandwidth in GB/s. Compare it with the instance's network (p4d: 400 Gbit/s EFA,
# 50 GB/s); a few GB/s means TCP.
#   bench/nccl.sh [--profile dev] [--project bert-batch] [--nodes 2] [--team default]
#                              # submits, waits and prints the job's log (AWS credentials)
#   bench/nccl.sh --dry-run    # prints the SubmitJob request, submits nothing
#   bench/nccl.sh --smoke      # the same sweep on this machine: 2 CPU processes over gloo
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [[ -z "${PYTHON:-}" && -x "$repo/.venv/bin/python" ]]; then
  python="$repo/.venv/bin/python"
fi
profile="${BERT_BATCH_PROFILE:-dev}" project="${BERT_BATCH_PROJECT:-bert-batch}" nodes=2 team=default
mode=submit poll_seconds=30
fail() { echo "bench/nccl.sh: error: $1" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile|--project|--nodes|--team)
      [[ $# -ge 2 ]] || fail "$1 needs a value"
      declare "${1#--}=$2"; shift 2 ;;
    --dry-run) mode=dry-run; shift ;;
    --smoke) mode=smoke; shift ;;
    *) fail "unknown argument $1 (the usage is at the top of bench/nccl.sh)" ;;
  esac
done
[[ "$nodes" =~ ^[0-9]+$ && "$nodes" -ge 2 ]] || fail "--nodes $nodes: a bus bandwidth between nodes needs 2 or more"

if [[ "$mode" == smoke ]]; then
  export PYTHONPATH="$repo/training_container:$repo${PYTHONPATH:+:$PYTHONPATH}"
  exec timeout 300 "$python" -m torch.distributed.run --standalone --nproc_per_node 2 \
    -m bert_train allreduce-bench --backend gloo --min-bytes 4096 --max-bytes 1048576 --iterations 5 --warmup 2
fi

# The names the platform gives its multi-node queue and job definition (bertbatch_contract.naming).
prefix="$project-$profile"
request=$(cat <<JSON
{"jobName": "nccl-allreduce-$nodes-nodes", "jobQueue": "$prefix-multi-node",
 "jobDefinition": "$prefix-bert-finetune-multinode", "shareIdentifier": "$team",
 "tags": {"bert-batch:team": "$team"}, "propagateTags": true,
 "retryStrategy": {"attempts": 1}, "timeout": {"attemptDurationSeconds": 1800},
 "nodeOverrides": {"numNodes": $nodes, "nodePropertyOverrides": [
   {"targetNodes": "0:", "containerOverrides": {"command": ["allreduce-bench"]}}]}}
JSON
)
if [[ "$mode" == dry-run ]]; then
  echo "$request"
  exit 0
fi
job_id=$(aws batch submit-job --cli-input-json "$request" --query jobId --output text)
echo "submitted $job_id to $prefix-multi-node ($nodes nodes); waiting for it to finish" >&2
while true; do
  status=$(aws batch describe-jobs --jobs "$job_id" --query 'jobs[0].status' --output text)
  case "$status" in SUCCEEDED|FAILED) break ;; esac
  sleep "$poll_seconds"
done
echo "$job_id: $status" >&2
"$python" -m bertbatch.cli --profile "$profile" --project "$project" logs "$job_id" --no-emf
[[ "$status" == SUCCEEDED ]]
