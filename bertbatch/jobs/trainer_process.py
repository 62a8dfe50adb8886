"""`bertbatch local`: the training entrypoint (`python -m bert_train`) on this machine.

The trainer runs as a subprocess: the CLI does not import it. Its flags come from the
contract's hyperparameter table; its stdout is routed by `trainer_output` (EMF lines to a file).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from bertbatch_contract import hyperparameters as hp
from bertbatch_contract import job

from ..core.errors import BertBatchError
from ..ui.progress_view import TrainingView
from . import child_process
from .trainer_output import TrainerOutput

TRAINER_MODULE = "bert_train"


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


# Trainer flags `local` sets from its own options: after `--` they would override what the CLI
# reports (the run id, where the model lands), so they are refused there with the option to use.
LOCAL_OWNED = {"run_id": "--run-name", "output_uri": "--output-dir", "checkpoint_uri": "--checkpoint-dir"}


def check_trainer_flags(extra: tuple[str, ...], own_options: Mapping[str, str]) -> None:
    """`own_options`: trainer field name -> the `local` option that sets it."""
    owned = {hp.BY_NAME[name].flag: option for name, option in {**own_options, **LOCAL_OWNED}.items()}
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in owned:
            raise BertBatchError(f"-- {flag}: bertbatch local has its own option for it: {owned[flag]}, before --")


def command(
    *,
    train: str,
    eval_: str | None,
    output_dir: str,
    checkpoint_dir: str,
    run_id: str,
    hyperparameters: Mapping[str, str],
    extra: tuple[str, ...] = (),
    python: str | None = None,
) -> list[str]:
    """argv of the trainer: the inputs, the checked hyperparameters (field name -> text), the
    run's locations, then `extra` unchanged."""
    flag = {name: row.flag for name, row in hp.BY_NAME.items()}
    argv = [python or sys.executable, "-m", TRAINER_MODULE, flag["train"], train]
    if eval_:
        argv += [flag["eval"], eval_]
    for name, value in hyperparameters.items():
        argv += [flag[name], value]
    argv += [flag["run_id"], run_id, flag["output_uri"], output_dir, flag["checkpoint_uri"], checkpoint_dir]
    argv += list(extra)
    return argv


def run(argv: list[str], *, run_id: str, emf_path: Path, profile: str = "local") -> int:
    """Run the trainer and route its stdout (`trainer_output`); returns its exit status.

    On a terminal the trainer's stderr (its log) is read too, so that it prints above the
    progress bar instead of through it; elsewhere stderr passes straight through. SIGTERM and
    SIGINT are forwarded to it and waited for (`child_process`)."""
    env = dict(os.environ)
    env[job.ENV_RUN_ID] = run_id
    env.setdefault(job.ENV_PROFILE, profile)
    env["PYTHONUNBUFFERED"] = "1"  # line by line through the pipe, not in 8 KiB blocks
    view = TrainingView()
    router = TrainerOutput(emf_path, view)
    try:
        return child_process.run(argv, env=env, on_stdout_line=router.feed,
                                 stderr=subprocess.STDOUT if view.live else None).status
    finally:
        router.close()
