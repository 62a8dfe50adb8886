"""`python -m bert_train ...`: the container's command, and the local mode on a laptop CPU.

Exit codes (contract.py): 0 done; 2 bad input (one line on stderr, nothing written);
75 stopped by SIGTERM after writing and uploading a checkpoint (safe to resume).
"""

from __future__ import annotations

import logging
import os
import sys

from . import contract
from .config import PROG, BadInput, parse_args


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)  # argparse reports usage errors itself, with exit code 2
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s {PROG}[rank {rank}] %(levelname)s %(message)s",
    )
    # Imported here so that `--help` and argument errors stay fast (no torch import).
    from transformers.utils import logging as hf_logging

    from .storage import StorageError
    from .train import run

    hf_logging.disable_progress_bar()  # tqdm bars are noise in CloudWatch Logs

    try:
        code = run(config).exit_code
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        code = contract.EXIT_BAD_INPUT
    except StorageError as exc:  # S3 failed mid-run (checkpoint upload, final outputs)
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
    if exit_code == contract.EXIT_INTERRUPTED:
        # The checkpoint is uploaded and the logs are flushed: skip the interpreter's teardown
        # (about a second for a BERT-base model) so the container is gone well before SIGKILL.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    sys.exit(exit_code)
