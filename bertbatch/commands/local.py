"""`bertbatch local`: the training program on this machine, with local paths."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bertbatch_contract import hyperparameters as hp
from bertbatch_contract import store

from ..core import input_checks as params
from ..core.errors import BertBatchError
from ..core.options import hyperparameter_options
from ..jobs import preparation_process as local_prepare
from ..jobs import ref_parameters as job_parameters
from ..jobs import trainer_output
from ..jobs import trainer_process as local_mod

F = TypeVar("F", bound=Callable[..., Any])

# The job's hyperparameters, and the trainer flag a quick local check of a random:* model needs.
LOCAL_ROWS = job_parameters.OPTION_ROWS + (hp.BY_NAME["vocab"],)
LOCAL_RUNS_DIR = Path("local-runs")  # mirrors the artifacts bucket: runs/<run-id>/, checkpoints/<run-id>/


def local_flag(what: str) -> Callable[[F], F]:
    """--local, passed as `local`: the command reads `what`, under LOCAL_RUNS_DIR, instead of AWS."""
    return click.option("--local", is_flag=True, help=f"{what}; no AWS call")


def local_runs_root() -> Path:
    """LOCAL_RUNS_DIR, where `--local` reads; one line when the current directory has none."""
    if not LOCAL_RUNS_DIR.is_dir():
        raise BertBatchError(f"no {LOCAL_RUNS_DIR}/ in {Path.cwd()}: run bertbatch local first (it writes "
                             f"{LOCAL_RUNS_DIR}/runs/<run-id>/), or run this where it ran")
    return LOCAL_RUNS_DIR


class TrainerFlagsAfterDashes(click.Command):
    """`local`'s own options before `--`, the trainer's after it. An option `local` does not
    know is an error here, not passed on: the trainer's argparse would read it differently
    (it once took `--output json` as `--output-uri json`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            args, ctx.meta[TRAINER_FLAGS] = args[:at], args[at + 1 :]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- TRAINER FLAGS...]"]


def _no_record(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            f"--output {value}: bertbatch local prints the training's progress, not a record; its metrics are in "
            "the run's metrics.json (bertbatch runs --local -o json lists local runs)", ctx)


TRAINER_FLAGS = "bertbatch.local.trainer_flags"


@click.command(cls=TrainerFlagsAfterDashes,
               epilog="Trainer flags go after --: bertbatch local ... -- --checkpoint-every-steps 9")
@click.option("--train", "train", required=True, metavar="PATH", help="Training TSV/CSV")
@click.option("--eval", "eval_", required=True, metavar="PATH", help="Evaluation TSV/CSV")
@hyperparameter_options(LOCAL_ROWS, default_label="default")
@click.option("--run-name", metavar="NAME", help="Run id (generated if omitted)")
@click.option("--output-dir", metavar="DIR", help="Outputs [default: local-runs/runs/<run-id>]")
@click.option("--checkpoint-dir", metavar="DIR", help="Checkpoints [default: local-runs/checkpoints/<run-id>]")
@click.option("--no-prepare", is_flag=True,
              help="Train from the --train file read whole, without preparing a store first")
@click.option("--dry-run", is_flag=True, help="Print the commands without running them")
@click.option("--output", "-o", hidden=True, expose_value=False, callback=_no_record, is_eager=True)
@click.pass_context
def local(ctx: click.Context, train: str, eval_: str, run_name: str | None, output_dir: str | None,
          checkpoint_dir: str | None, no_prepare: bool, dry_run: bool, **hyper: Any) -> None:
    """Run the training entrypoint (python -m bert_train) on this machine with local paths.

    The same program and flags as a Batch job: the way to test a job before it costs money.
    Flags after -- go to the trainer unchanged (e.g. --checkpoint-every-steps 9). The trainer's exit code
    is passed through. A --train file or folder is first prepared into a store under
    local-runs/stores/ (as `bertbatch prepare --local` does; nothing is redone when the data and
    settings are unchanged) and training streams from it; --no-prepare reads it whole instead.
    On a terminal a progress bar shows epoch, step, loss, samples/s and ETA;
    the CloudWatch metric (EMF) lines go to metrics.emf.jsonl in the output folder.

    \b
    Examples:
      bertbatch local --train data/train.tsv --eval data/dev.tsv --model random:tiny --vocab vocab.txt --max-steps 20
      bertbatch local --train data/train.tsv --eval data/dev.tsv --model ./my-bert --epochs 1 --batch-size 8
      bertbatch local --train train.tsv --eval dev.tsv --model random:tiny --vocab v.txt -- --checkpoint-every-steps 9
    """
    extra = tuple(ctx.meta.get(TRAINER_FLAGS, ()))
    local_mod.check_trainer_flags(extra, {"train": "--train", "eval": "--eval",
                                          **{row.name: row.flag for row in LOCAL_ROWS}})
    hyperparameters = job_parameters.check(hyper)
    local_mod.check_path("--train", train)
    local_mod.check_path("--eval", eval_)
    vocab = hyperparameters.get("vocab")
    if vocab:
        local_mod.check_path("--vocab", vocab)
    model = hyperparameters.get("model", str(hp.default("model")))
    local_mod.check_model(model)
    if model.startswith("random:") and not vocab:
        raise BertBatchError(f"--model {model} needs --vocab PATH")
    run_id = params.run_id(run_name, model)
    output_dir = output_dir or str(LOCAL_RUNS_DIR / "runs" / run_id)
    checkpoint_dir = checkpoint_dir or str(LOCAL_RUNS_DIR / "checkpoints" / run_id)
    prepare_argv = None
    # --long-text chunk reads the file whole: a store holds one row per text, not its windows
    if not no_prepare and not local_prepare.is_store(train) and hyperparameters.get("long_text") != "chunk":
        prepare_argv, train = prepare_command(train, hyperparameters)
    argv = local_mod.command(
        train=train, eval_=eval_, output_dir=output_dir, checkpoint_dir=checkpoint_dir, run_id=run_id,
        hyperparameters=hyperparameters, extra=extra,
    )
    if dry_run:
        if prepare_argv:
            click.echo(shlex.join(prepare_argv))
        click.echo(shlex.join(argv))
        return
    if prepare_argv:
        rc = local_prepare.run(prepare_argv)
        if rc != 0:
            click.echo(f"Error: preparing {prepare_argv[prepare_argv.index('--input') + 1]} exited with code {rc}",
                       err=True)
            ctx.exit(rc)
    emf_path = Path(output_dir) / trainer_output.EMF_FILE
    click.echo(f"Run {run_id}: outputs in {output_dir}, checkpoints in {checkpoint_dir}, "
               f"CloudWatch metric lines in {emf_path}", err=True)
    rc = local_mod.run(argv, run_id=run_id, emf_path=emf_path)
    if rc != 0:
        click.echo(f"Error: the trainer exited with code {rc}", err=True)
    ctx.exit(rc)


def prepare_command(train: str, hyperparameters: dict[str, str]) -> tuple[list[str], str]:
    """The prepare command for a --train data file or folder, and the store it writes."""
    local_prepare.data_files(train, "--train")
    values: dict[str, str] = {name: hyperparameters[name] for name in store.SETTINGS if name in hyperparameters}
    store_dir = str(local_prepare.default_output(train, values))
    return local_prepare.command(local_prepare.check({"input": train, "output": store_dir, **values})), store_dir
