"""`bertbatch local`: the training entrypoint (`python -m bert_train`) on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bert_train import contract

from .errors import BertBatchError


def check_path(flag: str, value: str) -> str:
    if "://" in value:
        raise BertBatchError(f"{flag} {value}: 'local' takes local paths; use 'submit' for S3 inputs")
    if not Path(value).exists():
        raise BertBatchError(f"{flag} {value}: no such file")
    return value


def check_model(model: str) -> None:
    """random:<config path> and local model directories must exist; names are left to the trainer."""
    if model.startswith("random:"):
        spec = model[len("random:"):]
        if spec not in ("tiny", "base") and not Path(spec).exists():
            raise BertBatchError(f"--model {model}: no such config file {spec}")
    elif model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        raise BertBatchError(f"--model {model}: no such directory")


def command(
    *,
    train: str,
    eval_: str | None,
    output_dir: str,
    checkpoint_dir: str,
    run_id: str,
    hyperparameters: dict[str, str],
    vocab: str | None = None,
    max_steps: int | None = None,
    seed: int | None = None,
    extra: tuple[str, ...] = (),
    python: str | None = None,
) -> list[str]:
    """argv of the trainer: Ref:: parameter flags from the contract, then the local-only flags."""
    argv = [python or sys.executable, "-m", "bert_train", contract.JOB_PARAMETERS["train_uri"], train]
    if eval_:
        argv += [contract.JOB_PARAMETERS["eval_uri"], eval_]
    for name, value in hyperparameters.items():
        argv += [contract.JOB_PARAMETERS[name], value]
    if vocab:
        argv += ["--vocab", vocab]
    argv += ["--run-id", run_id, "--output-uri", output_dir, "--checkpoint-uri", checkpoint_dir]
    if max_steps is not None:
        argv += ["--max-steps", str(max_steps)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    argv += list(extra)
    return argv


def run(argv: list[str], *, run_id: str, profile: str = "local") -> int:
    env = dict(os.environ)
    env[contract.ENV_RUN_ID] = run_id
    env.setdefault(contract.ENV_PROFILE, profile)
    try:
        return subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        return 130
