"""`python -m bert_train ...`: the container's command, and the local mode on a laptop CPU.

Exit codes (bertbatch_contract.job): 0 done; 2 bad input (one line on stderr, nothing written);
75 stopped by SIGTERM after writing and uploading a checkpoint (safe to resume); 74 S3 could
not answer: the start-up write check, the checkpoint store read, or written for too long or not
by the deadline after SIGTERM (retry: the next attempt resumes);
76 the run's cost cap was reached after a checkpoint (not retried: resubmit with a higher cap);
1 anything else, a non-finite loss included (one line on stderr, no model published).
"""

from __future__ import annotations

import logging
import os
import sys

from bertbatch_contract import job

from .config import PROG, BadInput, parse_args


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["predict"]:  # batch inference: bert_train.predict
        from .predict import main as predict

        return predict(args[1:])
    if args[:1] == ["allreduce-bench"]:  # all-reduce bus bandwidth for bench/nccl.sh: bert_train.allreduce
        from .allreduce import main as allreduce_bench

        return allreduce_bench(args[1:])
    if args[:1] == ["prepare"]:  # tokenize a dataset once into a store: bert_train.prepare
        from .prepare import main as prepare

        return prepare(args[1:])
    try:
        config = parse_args(argv)  # argparse reports usage errors itself, with exit code 2
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return job.EXIT_BAD_INPUT
    rank = int(os.environ.get("RANK", "0"))
    # The trainer's own INFO lines from rank 0; other libraries' (botocore's "Found credentials
    # ...") only from WARNING up, so a failing run still ends in one readable error line.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format=f"%(asctime)s {PROG}[rank {rank}] %(levelname)s %(message)s",
    )
    logging.getLogger(PROG).setLevel(logging.INFO if rank == 0 else logging.WARNING)
    # Imported here so that `--help` and argument errors stay fast (no torch import).
    from transformers.utils import logging as hf_logging

    from .errors import Diverged, StoreUnavailable
    from .storage import StorageError
    from .train import run

    hf_logging.disable_progress_bar()  # tqdm bars are noise in CloudWatch Logs

    try:
        code = run(config).exit_code
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        code = job.EXIT_BAD_INPUT
    except StoreUnavailable as exc:  # checkpoints could not be read, or stored for too long
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        code = job.EXIT_STORAGE_UNAVAILABLE
    except (Diverged, StorageError) as exc:  # a non-finite loss; S3 failed writing the final outputs
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        code = 1
    # The entrypoint passes this file so torchrun (which reports any worker failure as 1) can
    # still exit with EXIT_INTERRUPTED or EXIT_BAD_INPUT, and Batch can tell a Spot stop from a crash.
    marker = os.environ.get("BERT_TRAIN_EXIT_CODE_FILE")
    if marker and rank == 0:
        with open(marker, "w") as f:
            f.write(f"{code}\n")
    return code


if __name__ == "__main__":
    exit_code = main()
    if exit_code == job.EXIT_INTERRUPTED:
        # The checkpoint is uploaded and the logs are flushed: skip the interpreter's teardown
        # (about a second for a BERT-base model) so the container is gone well before SIGKILL.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    sys.exit(exit_code)
