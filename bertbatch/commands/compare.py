"""`bertbatch compare`: runs side by side (the table is `bertbatch.runs.comparison`, the chart
`bertbatch.runs.metric_chart`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bertbatch_contract import discovery, layout
from bertbatch_contract import runs as run_ids

from ..core.errors import BertBatchError
from ..core.options import target_options
from ..core.session import Session, pass_session
from ..cost import ledger
from ..runs import artifacts
from ..runs import comparison as compare_mod
from ..runs import metric_chart as plot_mod
from ..ui import terminal
from ..ui.output_format import JSON, TABLE, print_lines
from .jobs import queue_names
from .local import LOCAL_RUNS_DIR, local_flag, local_runs_root

F = TypeVar("F", bound=Callable[..., Any])
CSV = "csv"


def comparison_output_option(fn: F) -> F:
    """--output/-o (alias --format) table|json|csv, passed as `output`: one option, three names."""
    fn = click.option("--json", "output", flag_value=JSON, hidden=True)(fn)
    return click.option("--output", "-o", "--format", "output", type=click.Choice((TABLE, JSON, CSV)), default=TABLE,
                        show_default=True,
                        help="table for people; json (JSON lines) or csv for scripts (fields: docs/cli.md)")(fn)


def metric_option(fn: F) -> F:
    return click.option("--metric", type=click.Choice(compare_mod.METRICS), default=compare_mod.DEFAULT_METRIC,
                        show_default=True, help="Eval metric that picks the best run (and is plotted)")(fn)


def show(runs: list[compare_mod.Run], metric: str, output: str, plot_path: Path | None,
         per_class: bool = False) -> None:
    """Print the comparison (and write the chart); with `per_class`, each run's classes after it."""
    if plot_path is not None:
        plot_mod.save(runs, metric, plot_path)
        click.echo(f"Wrote {plot_path}", err=output != TABLE)
    recs = compare_mod.records(runs, metric)
    if output == JSON:
        print_lines("compare", recs)
        return
    if output == CSV:
        click.echo(compare_mod.csv_text(recs), nl=False)
        return
    headers, rows, right = compare_mod.table(recs, metric)
    terminal.print_table(headers, rows, right=right, drop=compare_mod.drop_order(headers))
    best = next((r for r in recs if r["best"]), None)
    if best is not None:
        click.echo(f"{compare_mod.BEST_MARK} best {metric}: {best['run_id']}")
    for rec in recs if per_class else []:
        click.echo(f"\n{rec['run_id']}: " + ("per class (rows: truth; -> columns: predicted)" if rec["confusion_matrix"]
                                             else "per label, at its tuned threshold" if rec["per_class"]
                                             else "no per-class numbers (regression, or a run from before them)"))
        if rec["per_class"]:
            headers, rows, right = compare_mod.per_class_table(rec)
            terminal.print_table(headers, rows, right=right)


class RunLoader:
    """Reads RUNs; the queues and compute environments once, and only for a run on the platform.
    With `local`, a run id is one under local-runs/ and nothing is read from AWS."""

    def __init__(self, session: Session, *, local: bool = False) -> None:
        self.session = session
        self.local = local
        self.pricer = ledger.Pricer()
        self._environments: ledger.Environments | None = None
        self._queues: list[str] | None = None

    def ledger_of(self, run_id: str) -> ledger.Ledger:
        batch = self.session.client("batch")
        if self._environments is None or self._queues is None:
            self._environments, self._queues = ledger.Environments(batch), queue_names(self.session, ())
        return ledger.ledger(batch, self._queues, run_id, pricer=self.pricer, environments=self._environments)

    def load(self, spec: str) -> compare_mod.Run:
        """RUN as a local output directory of `bertbatch local`, else a run id on the platform (or,
        with --local, under local-runs/)."""
        if Path(spec).is_dir():
            return compare_mod.load_local(Path(spec))
        try:
            run_ids.check_run_id(spec, what="RUN")
        except run_ids.InvalidRunId as exc:
            raise BertBatchError(f"{exc} (or give a local output directory)") from None
        if self.local:
            return compare_mod.load_local_run(local_runs_root(), spec)
        s3, bucket = self.session.client("s3"), self.session.get(discovery.ARTIFACTS_BUCKET)
        run = compare_mod.load_s3(s3, bucket, spec)
        run.ledger = self.ledger_of(spec)
        if run.metrics is None and not run.ledger.attempts and not artifacts.list_objects(
                s3, bucket, layout.checkpoint_prefix(spec))[:1]:
            raise BertBatchError(f"no such run: {spec} (no {layout.s3_uri(bucket, layout.run_prefix(spec))}"
                                 f"{layout.METRICS_FILE}, no checkpoints and no job on the profile's queues)")
        return run


@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="RUN [RUN...]")
@metric_option
@click.option("--plot", metavar="FILE.png", help="Also draw the eval metric and train loss against step to FILE.png")
@click.option("--per-class", is_flag=True,
              help="Also show each run's precision, recall and F1 per class (and its confusion matrix)")
@local_flag(f"A run id is a run of bertbatch local ({LOCAL_RUNS_DIR}/runs/<run-id>/)")
@comparison_output_option
@target_options()
@pass_session
def compare(session: Session, specs: tuple[str, ...], metric: str, plot: str | None, per_class: bool, local: bool,
            output: str) -> None:
    """Compare runs side by side: the hyperparameters that differ, final and best metrics, steps,
    duration, attempts and cost; the best run (by --metric) is marked *.

    RUN is a run id on the profile (runs/<run-id>/metrics.json and its jobs' cost ledger) or a
    local output directory of `bertbatch local` (local-runs/runs/<run-id>). With --local a run
    id is one of local-runs/runs/, and nothing is read from AWS.

    \b
    Examples:
      bertbatch compare sst2-lr2e5 sst2-lr3e5 sst2-lr5e5
      bertbatch compare sst2-a local-runs/runs/sst2-laptop --metric eval_f1
      bertbatch compare sst2-a sst2-b --plot curves.png
      bertbatch compare toxic-a toxic-b --metric eval_micro_f1 --per-class
      bertbatch compare sst2-a sst2-b --format csv > runs.csv
      bertbatch compare random-tiny-20261121-190500-3fa2 tiny-lr5e5 --local
    """
    plot_path = plot_mod.check_path(plot)
    if len(set(specs)) != len(specs):
        raise BertBatchError(f"RUN {next(s for s in specs if specs.count(s) > 1)}: given twice")
    loader = RunLoader(session, local=local)
    show([loader.load(spec) for spec in specs], metric, output, plot_path, per_class)
