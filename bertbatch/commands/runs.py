"""`bertbatch artifacts` and `runs`: a run's outputs and checkpoints, and the table of runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from bertbatch_contract import discovery, layout
from bertbatch_contract import runs as run_ids

from ..core import input_checks as params
from ..core import shell_completion as completion
from ..core.errors import BertBatchError
from ..core.options import target_options
from ..core.session import Session, pass_session
from ..cost import ledger
from ..runs import artifacts
from ..runs import comparison as compare
from ..ui import terminal
from ..ui import timestamps as times
from ..ui.output_format import JSON, output_option, print_lines
from ..ui.progress_view import TransferView
from .compare import CSV, comparison_output_option, metric_option, show
from .jobs import queue_names
from .local import LOCAL_RUNS_DIR, local_flag, local_runs_root

OUTPUT, CHECKPOINT = "output", "checkpoint"


def _download(s3: Any, bucket: str, run_id: str, dest: Path, outputs: list[dict[str, Any]],
              checkpoints: list[dict[str, Any]] | None) -> dict[str, Path]:
    """The outputs to dest/, the checkpoints (if given) to dest/checkpoints/, with one progress bar."""
    total = sum(o.get("Size", 0) for o in outputs + (checkpoints or []))
    with TransferView(total) as view:
        written = artifacts.download(s3, bucket, outputs, layout.run_prefix(run_id), dest, view)
        if checkpoints is not None:
            written.update(artifacts.download(s3, bucket, checkpoints, layout.checkpoint_prefix(run_id),
                                              dest / "checkpoints", view))
    return written


@click.command(name="artifacts")
@click.argument("run_id", metavar="RUN", shell_complete=completion.run_ids)
@click.option("--download", "download_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Download the run's outputs to DIR/<run-id>/")
@click.option("--checkpoints", is_flag=True, help="With --download: the checkpoints too (DIR/<run-id>/checkpoints/)")
@output_option
@target_options()
@pass_session
def artifacts_(session: Session, run_id: str, download_dir: str | None, checkpoints: bool, output: str) -> None:
    """List (and download) a run's outputs and checkpoints.

    A download shows bytes, rate and ETA on a terminal (one line per file otherwise, on stderr).

    \b
    Examples:
      bertbatch artifacts bert-base-uncased-20261121-190500-3fa2
      bertbatch artifacts my-run --download ./results
      bertbatch artifacts my-run --download ./results --checkpoints
      bertbatch artifacts my-run -o json | jq -r 'select(.kind == "output") | .uri'
    """
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    s3 = session.client("s3")
    outputs, ckpts = artifacts.run_objects(s3, bucket, run_id)
    listed = [(OUTPUT, o) for o in outputs] + [(CHECKPOINT, o) for o in ckpts]
    if output != JSON:
        rows = [(layout.s3_uri(bucket, o["Key"]), artifacts.human_size(o.get("Size", 0)),
                 o["LastModified"].strftime("%Y-%m-%d %H:%M:%S") if o.get("LastModified") else "-")
                for _, o in listed]
        terminal.print_table(("URI", "SIZE", "MODIFIED (UTC)"), rows, right=(1,), drop=("MODIFIED (UTC)", "SIZE"))
    written: dict[str, Path] = {}
    if download_dir:
        dest = Path(download_dir) / run_id
        written = _download(s3, bucket, run_id, dest, outputs, ckpts if checkpoints else None)
        click.echo(f"Downloaded {len(written)} file(s) to {dest}", err=output == JSON)
    if output == JSON:
        print_lines("artifacts", ({
            "uri": layout.s3_uri(bucket, o["Key"]), "kind": kind, "size": o.get("Size", 0),
            "modified": times.iso(o.get("LastModified")),
            "downloaded_to": str(written[o["Key"]]) if o["Key"] in written else None,
        } for kind, o in listed))


@click.command()
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many runs, newest first")
@click.option("--team", metavar="NAME", help="Only the runs of team NAME, with their total cost")
@click.option("--sweep", "sweep_id", metavar="SWEEP_ID",
              help="Compare the children of one sweep side by side (as `bertbatch compare` does)")
@metric_option
@local_flag(f"List bertbatch local's runs ({LOCAL_RUNS_DIR}/runs/) instead")
@comparison_output_option
@target_options()
@pass_session
def runs(session: Session, limit: int, team: str | None, sweep_id: str | None, metric: str, local: bool,
         output: str) -> None:
    """Table of runs in the artifacts bucket with their team, final metrics (metrics.json) and cost.

    Runs still training (no metrics.json yet) show as 'running'. COST is the run's cost ledger:
    every attempt of its jobs that Batch still lists; TEAM is the team of its newest job ("-"
    when Batch no longer lists its jobs or they were submitted before fair share). --team NAME
    keeps the newest --limit runs of that team and ends with their total cost: what the team
    spent on the runs Batch still lists (docs/configuration.md, teams). --sweep SWEEP_ID
    compares the children of a sweep (<sweep-id>-<i>) like `bertbatch compare`, best marked;
    --output csv is for that. --local lists the runs of `bertbatch local` (local-runs/runs/)
    instead, with no AWS call.

    \b
    Examples:
      bertbatch runs
      bertbatch runs --profile prod --limit 10
      bertbatch runs --team nlp
      bertbatch runs -o json | jq -s 'group_by(.team) | map({team: .[0].team, cost: (map(.cost // 0) | add)})'
      bertbatch runs -o json | jq 'select(.metrics.eval_accuracy > 0.9)'
      bertbatch runs --sweep sst2-lr-sweep --format csv
      bertbatch runs --local
    """
    params.check_int("--limit", limit, 1)
    check_combination(team, sweep_id, local, output)
    if sweep_id is not None:
        show_sweep(session, sweep_id, metric, output)
        return
    if local:
        root = local_runs_root()
        found, where = artifacts.local_runs(root), f"{root / layout.RUNS_PREFIX}{os.sep}"
    else:
        bucket = session.get(discovery.ARTIFACTS_BUCKET)
        found, where = artifacts.s3_runs(session.client("s3"), bucket), layout.s3_uri(bucket, layout.RUNS_PREFIX)
    found = artifacts.newest_first(found)
    ledgers = {} if local else run_ledgers(session, found, limit, team)
    found = [r for r in found if r.run_id in ledgers][:limit] if team is not None else found[:limit]
    print_runs(found, ledgers, output, where)
    if team is not None and output != JSON:
        click.echo(team_total(team, [ledgers[r.run_id] for r in found]))


def check_combination(team: str | None, sweep_id: str | None, local: bool, output: str) -> None:
    """Options that do not go together, refused before anything is read."""
    if sweep_id is not None and local:
        raise BertBatchError("--sweep with --local: a sweep is an array job on Batch; compare local runs with "
                             "bertbatch compare RUN_ID... --local")
    if team is not None and (local or sweep_id is not None):
        raise BertBatchError(f"--team with {'--local' if local else '--sweep'}: "
                             f"{'local runs have no team' if local else 'a sweep runs for one team'}")
    if output == CSV and sweep_id is None:
        raise BertBatchError("--output csv: only with --sweep (use -o json for the list of runs)")


def print_runs(found: list[artifacts.RunSummary], ledgers: dict[str, ledger.Ledger], output: str,
               where: str) -> None:
    """The runs as JSON lines or a table; `ledgers`: run id -> its cost ledger (missing: null)."""
    def cost(run_id: str) -> float | None:
        return ledgers[run_id].cost if run_id in ledgers else None

    def team(run_id: str) -> str | None:
        return ledgers[run_id].team if run_id in ledgers else None

    if output == JSON:
        print_lines("runs", ({"run_id": r.run_id, "state": "finished" if r.metrics is not None else "running",
                              "finished": times.iso(r.finished), "metrics": r.metrics,
                              "cost": None if cost(r.run_id) is None else round(cost(r.run_id) or 0, 4),
                              "team": team(r.run_id)}
                             for r in found))
        return
    if not found:
        click.echo(f"No runs under {where}")
        return
    rows = []
    for r in found:
        values = [artifacts.format_value(artifacts.metric_value(r.metrics or {}, k)) for k in artifacts.RUN_COLUMNS]
        state = "finished" if r.metrics is not None else "running"
        rows.append((r.run_id, state, team(r.run_id) or "-", *values, ledger.format_cost(cost(r.run_id)),
                     r.finished.strftime("%Y-%m-%d %H:%M") if r.finished else "-"))
    headers = ("RUN ID", "STATE", "TEAM", *(k.upper() for k in artifacts.RUN_COLUMNS), "COST", "FINISHED (UTC)")
    terminal.print_table(headers, rows, right=tuple(range(3, 4 + len(artifacts.RUN_COLUMNS))),
                         drop=("EPOCHS", "EVAL_LOSS", "TRAIN_LOSS", "STEPS", "EVAL_F1", "FINISHED (UTC)", "TEAM",
                               "COST"))


def run_ledgers(session: Session, found: list[artifacts.RunSummary], limit: int,
                team: str | None) -> dict[str, ledger.Ledger]:
    """Run id -> its cost ledger, newest first: for the first `limit` runs, or with `team` until
    `limit` runs of that team are found (only those are kept)."""
    if not found:
        return {}
    batch = session.client("batch")
    queues, pricer, environments = queue_names(session, ()), ledger.Pricer(), ledger.Environments(batch)
    out: dict[str, ledger.Ledger] = {}
    for run in found if team is not None else found[:limit]:
        run_ledger = ledger.ledger(batch, queues, run.run_id, pricer=pricer, environments=environments)
        if team is None or run_ledger.team == team:
            out[run.run_id] = run_ledger
        if len(out) == limit:
            break
    return out


def team_total(team: str, ledgers: list[ledger.Ledger]) -> str:
    """'total for team nlp: $1.23 over 2 runs (1 with an attempt not priced)'."""
    priced = [c for c in (entry.cost for entry in ledgers) if c is not None]
    unpriced = sum(1 for entry in ledgers if entry.unpriced)
    note = f" ({unpriced} with an attempt not priced)" if unpriced else ""
    return (f"total for team {team}: {ledger.format_cost(sum(priced) if priced else 0.0)} over "
            f"{len(ledgers)} run(s){note}")


def show_sweep(session: Session, sweep_id: str, metric: str, output: str) -> None:
    """The children of a sweep, those with outputs and those with jobs, compared."""
    try:
        run_ids.check_run_id(sweep_id, what="--sweep")
    except run_ids.InvalidRunId as exc:
        raise BertBatchError(str(exc)) from None
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    s3, batch = session.client("s3"), session.client("batch")
    ledgers = ledger.sweep_ledgers(batch, queue_names(session, ()), sweep_id)
    children = set(ledgers) | {r for r in artifacts.list_run_ids(s3, bucket)
                               if r.startswith(sweep_id + "-") and r[len(sweep_id) + 1:].isdigit()}
    if not children:
        raise BertBatchError(f"--sweep {sweep_id}: no children (no {layout.s3_uri(bucket, layout.RUNS_PREFIX)}"
                             f"{sweep_id}-<i>/ and no array job {sweep_id} on the profile's queues)")
    loaded = []
    for child in sorted(children, key=lambda r: int(r.rsplit("-", 1)[1])):
        run = compare.load_s3(s3, bucket, child)
        run.ledger = ledgers.get(child) or ledger.Ledger(run_id=child)
        loaded.append(run)
    show(loaded, metric, output, None)
