#!/usr/bin/env bash
# Image entrypoint: runs `python -m bert_train "$@"` in one of three shapes.
#
#   one process            one GPU (or CPU): exec, so SIGTERM from Batch reaches the trainer
#   torchrun, one node     NPROC_PER_NODE (default: the visible GPUs) processes on this node
#   torchrun, many nodes   a Batch multi-node parallel job: AWS_BATCH_JOB_NUM_NODES > 1
#
# Exit code: the trainer's (0 done, 2 bad input, 75 stopped by SIGTERM after a checkpoint).
# torchrun turns any worker exit into 1, so rank 0 also writes its code to a file that this
# script hands back to Batch; the job's retry strategy needs 75 to be 75.
set -euo pipefail

nnodes="${AWS_BATCH_JOB_NUM_NODES:-1}"
nproc="${NPROC_PER_NODE:-}"
if [[ -z "$nproc" ]]; then
    nproc="$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')"
fi

if [[ "$nnodes" -le 1 && "$nproc" -le 1 ]]; then
    cmd=(python -m bert_train "$@")
    if [[ -n "${BERT_TRAIN_DRY_RUN:-}" ]]; then echo "${cmd[*]}"; exit 0; fi
    exec "${cmd[@]}"
fi

if [[ "$nnodes" -gt 1 ]]; then
    # An EFA job (the job definition sets FI_PROVIDER=efa) on a host without the verbs devices
    # would fail at NCCL's first collective: say what is wrong in one line before launching.
    if [[ "${FI_PROVIDER:-}" == efa ]] && ! compgen -G "/dev/infiniband/uverbs*" >/dev/null; then
        echo "bert-train-entrypoint: error: FI_PROVIDER=efa but no EFA device in /dev/infiniband:" \
             "this host has no EFA interface (training.efa with an instance type without EFA?)" >&2
        exit 2
    fi
    index="${AWS_BATCH_JOB_NODE_INDEX:?AWS_BATCH_JOB_NODE_INDEX is not set}"
    main_index="${AWS_BATCH_JOB_MAIN_NODE_INDEX:-0}"
    # torchrun's static rendezvous hosts its store on node rank 0: make that the main node.
    node_rank=$(( (index - main_index + nnodes) % nnodes ))
    # Batch sets the main node's address only on the child nodes; the main node uses its own
    # (it hosts the rendezvous store, listening on all interfaces, so any local address works).
    main_addr="${AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS:-}"
    if [[ -z "$main_addr" ]]; then
        main_addr="$(python -c 'import socket; print(socket.gethostbyname(socket.gethostname()))')"
    fi
    launch=(torchrun --nnodes "$nnodes" --node_rank "$node_rank" --nproc_per_node "$nproc"
            --master_addr "$main_addr" --master_port "${MASTER_PORT:-29500}")
else
    launch=(torchrun --standalone --nproc_per_node "$nproc")
fi
cmd=("${launch[@]}" -m bert_train "$@")
if [[ -n "${BERT_TRAIN_DRY_RUN:-}" ]]; then echo "${cmd[*]}"; exit 0; fi

BERT_TRAIN_EXIT_CODE_FILE="$(mktemp)"
export BERT_TRAIN_EXIT_CODE_FILE
"${cmd[@]}" &
child=$!
# This shell is PID 1 in the container: pass Batch's SIGTERM on to torchrun, which passes it to
# every worker and waits for their checkpoint.
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT
rc=0
wait "$child" || rc=$?
while kill -0 "$child" 2>/dev/null; do  # the trap interrupted `wait`: wait for the real exit
    rc=0
    wait "$child" || rc=$?
done
code="$(cat "$BERT_TRAIN_EXIT_CODE_FILE" 2>/dev/null || true)"
rm -f "$BERT_TRAIN_EXIT_CODE_FILE"
exit "${code:-$rc}"
