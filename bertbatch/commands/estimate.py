"""`bertbatch estimate`: time and cost of a run, Spot and On-Demand (the arithmetic is
`bertbatch.cost.training_cost`)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import click

from bertbatch_contract import discovery
from bertbatch_contract import hyperparameters as hp

from ..core import input_checks as params
from ..core.errors import BertBatchError
from ..core.options import hyperparameter_help, target_options
from ..core.session import Session, pass_session
from ..cost import idle_cost, token_sample
from ..cost import training_cost as estimate_mod
from ..jobs import aws_batch as jobs
from ..jobs import queue_capacity as capacity
from ..jobs import ref_parameters as job_parameters
from ..runs import artifacts
from ..ui import terminal
from ..ui.output_format import JSON, output_option, print_record

EPOCHS, MAX_SEQ_LENGTH = hp.BY_NAME["epochs"], hp.BY_NAME["max_seq_length"]
TEXT_COLUMN, TEXT_PAIR_COLUMN = hp.BY_NAME["text_column"], hp.BY_NAME["text_pair_column"]


def count_data_rows(session: Session, data: str) -> int:
    """Data rows of a TSV/CSV (header not counted) or JSON Lines file, plain or gzip, local or on S3."""
    token_sample.file_format(data, "--data")  # what the estimate cannot sample is named first
    gz = data.lower().endswith(".gz")
    header = estimate_mod.has_header(data[:-3] if gz else data)
    if data.startswith("s3://"):
        bucket, key = jobs.parse_s3_uri(data)
        s3 = session.client("s3")
        jobs.check_s3_object(s3, "--data", data)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        return estimate_mod.count_rows(gzip.GzipFile(fileobj=body) if gz else body.iter_lines(), header=header)
    path = Path(data)
    if not path.is_file():
        raise BertBatchError(f"--data {data}: no such file")
    try:
        with gzip.open(path, "rb") if gz else path.open("rb") as fh:
            return estimate_mod.count_rows(fh, header=header)
    except OSError as exc:
        raise BertBatchError(f"--data {data}: cannot read ({exc.strerror or exc})") from None


def placeable_text(o: estimate_mod.Option) -> str:
    if o.placeable is None:
        return "?"
    return "yes" if o.placeable else f"no: {o.change}"


def throughput_line(options: list[estimate_mod.Option], throughput: dict[str, Any], name: str) -> str:
    """Which GPUs' figures are measured and which are derived estimates, among those shown."""
    gpus = dict.fromkeys(o.gpu for o in options)
    rows = throughput["gpus"]
    measured = [f"{g} ({rows[g].get('source', 'source not given')})" for g in gpus if estimate_mod.is_measured(rows[g])]
    derived = [g for g in gpus if not estimate_mod.is_measured(rows[g])]
    parts = []
    if derived:
        assumed = throughput.get("assumed_mfu")
        how = f"a dense peak x an assumed MFU of {assumed:g}; " if isinstance(assumed, int | float) else ""
        parts.append(f"derived estimates for {', '.join(derived)} ({how}how: the \"method\" of {name})")
    parts.append(f"measured: {'; '.join(measured) if measured else 'none'}")
    return "Throughput: " + "; ".join(parts) + "."


def print_table(options: list[estimate_mod.Option], best: estimate_mod.Option, *, rows: int, epochs: int,
                seq_len: int, nodes: int, prices: dict[str, object], throughput: dict[str, Any], throughput_name: str,
                assumptions: estimate_mod.Assumptions, tokens: token_sample.TokenCount, checked: bool) -> None:
    click.echo(f"{rows:,} rows x {epochs} epoch(s), sequence length {seq_len}, {nodes} node(s)")
    terminal.echo_wrapped(tokens.describe(seq_len))
    table_rows = [
        ("*" if o is best else "", o.instance_type, f"{o.gpus * o.nodes}x {o.gpu}", o.pricing,
         f"{o.tokens_per_second:,.0f}", "derived" if o.throughput_estimate else "measured",
         f"{o.samples_per_second:,.0f}", f"{o.hours:.2f}", f"{o.price_per_hour:.3f}", f"{o.cost:,.2f}",
         *((placeable_text(o),) if checked else ()))
        for o in options
    ]
    headers = ("", "INSTANCE", "GPUS", "PRICING", "TOKENS/S", "FIGURE", "SAMPLES/S", "HOURS", "$/HOUR", "COST $")
    terminal.print_table(headers + (("PLACEABLE",) if checked else ()), table_rows, right=(4, 6, 7, 8, 9),
                         drop=("FIGURE", "SAMPLES/S", "TOKENS/S", "$/HOUR", "HOURS"))
    terminal.echo_wrapped(
        f"Assumptions: hours = rows x computed tokens a row x epochs / tokens/s of the GPUs + startup; "
        f"{assumptions.multi_gpu_efficiency:.0%} scaling efficiency on more than one GPU; "
        f"{assumptions.startup_minutes:g} min startup; Spot takes {assumptions.spot_interruption_overhead:.0%} longer "
        f"(interruptions); prices {prices.get('region', '')} as of {prices.get('as_of', '?')}."
    )
    terminal.echo_wrapped(throughput_line(options, throughput, throughput_name))
    if not checked:
        terminal.echo_wrapped("Not checked against the profile's queues (--offline): an option may need a config "
                              "change.")
    queue = next(k for k, v in jobs.QUEUE_KEYS.items() if v == best.queue)
    flags = f"--gpus {best.gpus}" + (f" --nodes {best.nodes}" if best.nodes > 1 else "")
    flags += " --on-demand" if best.pricing == "on-demand" and best.nodes == 1 else ""
    terminal.echo_wrapped(f"Would choose: {best.instance_type} {best.pricing} on queue {queue}, "
                          f"{best.hours:.2f} h, ${best.cost:,.2f} (bertbatch submit {flags})")


def token_count(session: Session, *, data: str | None, rows: int, tokenizer: str | None, model: str | None,
                text_column: str, pair_column: str | None, seq_len: int, throughput: dict[str, Any], offline: bool,
                throughput_name: str) -> token_sample.TokenCount:
    """Computed tokens a row: the --data sample tokenized, else max_seq_length (and why)."""
    if data is None:
        if tokenizer or model:
            raise BertBatchError("--tokenizer and --model count the tokens of --data rows: give --data PATH|URI")
        return token_sample.fallback(seq_len, "--rows given, no --data rows to tokenize")
    head = token_sample.read_head(session, data, "--data")
    sample = token_sample.sample_rows(head, text_column=text_column, pair_column=pair_column)
    found = token_sample.find(session, tokenizer=tokenizer, model=model or str(hp.default("model")), offline=offline)
    if isinstance(found, str):
        return token_sample.fallback(seq_len, f"no tokenizer: {found}")
    share, source = estimate_mod.padding_of(throughput, throughput_name)
    return token_sample.count(sample, found, seq_len=seq_len, padding_share=share, padding_source=source,
                              total_rows=rows)


def with_measured_runs(session: Session, throughput: dict[str, Any], runs: tuple[str, ...]) -> dict[str, Any]:
    """The throughput table with each --measured-run's GPU figure replaced by what the run measured:
    a run id in the artifacts bucket, or a local output directory."""
    for run in runs:
        if Path(run).is_dir():
            metrics, _ = artifacts.read_local_metrics(Path(run))
        else:
            metrics, _ = artifacts.read_metrics(session.client("s3"), session.get(discovery.ARTIFACTS_BUCKET), run)
        if metrics is None:
            raise BertBatchError(f"--measured-run {run}: no metrics.json (the run has not finished, or no such run)")
        throughput = estimate_mod.with_measured_run(throughput, metrics, run)
    return throughput


def print_idle_cost(templates_dir: str, prices_file: str | None, output: str) -> None:
    """`estimate --idle`: the deployment's monthly cost with no job running, from its templates."""
    prices = estimate_mod.load_table("prices.json", prices_file)
    table = idle_cost.idle_table(prices)
    items = idle_cost.idle_cost(idle_cost.read_templates(Path(templates_dir)), prices)
    if output == JSON:
        print_record("estimate --idle", {
            "templates": templates_dir, "prices_as_of": table.get("as_of"), "region": table.get("region"),
            "items": [i.as_dict() for i in items], "total": idle_cost.total(items),
        })
        return
    rows = [(i.kind, f"{i.count:,}", i.unit, f"{i.unit_price:,.2f}", f"{i.monthly:,.2f}") for i in items]
    rows.append(("total", "", "", "", f"{idle_cost.total(items):,.2f}"))
    terminal.print_table(("KIND", "COUNT", "UNIT", "$/UNIT-MONTH", "$/MONTH"), rows, right=(1, 3, 4))
    terminal.echo_wrapped(
        f"Idle: no job running (compute environments at 0 vCPUs), templates in {templates_dir}, list prices "
        f"{table.get('region', '')} as of {table.get('as_of', '?')}. Not counted: what use costs (S3 storage, "
        "log ingestion, function invocations)."
    )


@click.command()
@click.option("--idle", is_flag=True,
              help="Instead: the deployment's monthly cost with no job running, from its synthesized templates")
@click.option("--templates", "templates_dir", metavar="DIR",
              help="With --idle: the directory of *.template.json files [default: cdk.out, where make synth writes]")
@click.option("--rows", type=int, metavar="N", help="Training rows (examples)")
@click.option("--data", metavar="PATH|URI",
              help="Count the rows of this TSV/CSV (header line not counted) or JSONL file, and tokenize a sample of "
                   "them: a local path or s3:// URI")
@click.option(TEXT_COLUMN.flag, "text_column", default=TEXT_COLUMN.default, metavar="NAME",
              help=hyperparameter_help(TEXT_COLUMN, "default"))
@click.option(TEXT_PAIR_COLUMN.flag, "pair_column", metavar="NAME", help=hyperparameter_help(TEXT_PAIR_COLUMN))
@click.option("--model", metavar="NAME|URI|DIR",
              help="The job's model, whose tokenizer counts the --data tokens: a staged or registered name, an "
                   f"s3:// prefix or a local directory [default: {hp.default('model')}]")
@click.option("--tokenizer", "--vocab", "tokenizer", type=click.Path(), metavar="FILE|DIR",
              help="Count the --data tokens with this tokenizer.json, WordPiece vocab.txt or model directory "
                   "instead of the model's")
@click.option(EPOCHS.flag, "epochs", type=int, default=EPOCHS.default, metavar="N",
              help=hyperparameter_help(EPOCHS, "default"))
@click.option(MAX_SEQ_LENGTH.flag, "seq_len", type=int, default=MAX_SEQ_LENGTH.default, metavar="N",
              help=hyperparameter_help(MAX_SEQ_LENGTH, "default"))
@click.option("--instance-type", "instance_types", multiple=True, metavar="TYPE",
              help="Only these instance types (repeatable; default: every type in the price table)")
@click.option("--nodes", type=int, default=1, show_default=True, help="Nodes (N > 1: multi-node, On-Demand only)")
@click.option("--max-hours", type=float, metavar="H", help="Choose the cheapest option that finishes within H hours")
@click.option("--spot-overhead", type=float, metavar="FRACTION",
              help="Extra time on Spot for interruptions (default from the throughput table, 0.15)")
@click.option("--prices", "prices_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Price table to use instead of the built-in one")
@click.option("--throughput", "throughput_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Throughput table to use instead of the built-in one")
@click.option("--measured-run", "measured_runs", multiple=True, metavar="RUN",
              help="Use the throughput this finished run measured (a run id, or a local output directory) for the "
                   "GPU it trained on, instead of the table's figure (repeatable)")
@click.option("--offline", is_flag=True,
              help="Do not read the profile's queues or staged models: every option is considered, none checked "
                   "for placement")
@output_option
@target_options()
@pass_session
def estimate(session: Session, idle: bool, templates_dir: str | None, rows: int | None, data: str | None,
             text_column: str, pair_column: str | None,
             model: str | None, tokenizer: str | None, epochs: int, seq_len: int,
             instance_types: tuple[str, ...], nodes: int, max_hours: float | None, spot_overhead: float | None,
             prices_file: str | None, throughput_file: str | None, measured_runs: tuple[str, ...], offline: bool,
             output: str) -> None:
    """Estimate the time and cost of a BERT-base fine-tuning run, Spot and On-Demand.

    With --data, up to 2,000 rows from the first MiB of the file are tokenized with the job's
    tokenizer (--tokenizer FILE, else the --model's: staged, on S3 or a local directory),
    truncated at --max-seq-length, and each row costs their mean tokens plus the container's
    measured padding share. Without a tokenizer (or with --rows) every row costs
    --max-seq-length tokens, and the output says why. Throughput (computed tokens/s per GPU,
    BERT-base, mixed precision) comes from bertbatch/data/gpu_throughput.json, each figure
    marked derived (an assumed MFU of a GPU's dense peak) or measured (by bench/gpu.py, or by a
    finished run given with --measured-run); prices from bertbatch/data/prices.json (dated:
    update it, or pass --prices). Spot runs include an interruption overhead. Each option is
    checked against the instance types and vCPU caps of the profile's queue that would run it
    (SSM capacity/<queue>): the cheapest placeable option (within --max-hours) is chosen, and
    the others say which config key to change. --offline skips that check and the staged-model
    lookup (no AWS call unless --data or --model is on S3).

    \b
    Examples:
      bertbatch estimate --rows 67349 --epochs 3
      bertbatch estimate --data s3://my-data/datasets/sst2/train.tsv --max-seq-length 64
      bertbatch estimate --data train.jsonl --text-column review --tokenizer vocab.txt --offline
      bertbatch estimate --rows 2000000 --epochs 2 --max-hours 4
      bertbatch estimate --rows 500000 --instance-type g5.xlarge --instance-type g6e.xlarge -o json
      bertbatch estimate --rows 67349 --offline
      bertbatch estimate --idle --templates cdk.out

    --idle prints what the deployment synthesized in --templates costs a month with no job
    running (interface endpoints, FSx, NAT gateways, keys, dashboard, alarms), from the dated
    idle list prices in prices.json; no AWS call.
    """
    if idle:
        if rows is not None or data is not None:
            raise BertBatchError("--idle estimates the deployment with no job: it takes no --rows or --data")
        print_idle_cost(templates_dir or "cdk.out", prices_file, output)
        return
    if templates_dir is not None:
        raise BertBatchError("--templates DIR goes with --idle")
    if (rows is None) == (data is None):
        raise BertBatchError("give exactly one of --rows N or --data PATH|URI")
    params.check_int("--rows", rows, 1)
    job_parameters.check({EPOCHS.name: epochs, MAX_SEQ_LENGTH.name: seq_len, TEXT_COLUMN.name: text_column,
                          TEXT_PAIR_COLUMN.name: pair_column})
    params.check_int("--nodes", nodes, 1, 1000)
    params.check_number("--max-hours", max_hours, minimum=0, exclusive=True)
    params.check_number("--spot-overhead", spot_overhead, minimum=0)
    manifest = token_sample.store_manifest(session, data, "--data") if data is not None else None
    if manifest is not None:
        rows = int(manifest["rows"])  # a prepared store: its manifest counted every row
    elif data is not None:
        rows = count_data_rows(session, data)
        if rows < 1:
            raise BertBatchError(f"--data {data}: no data rows")
    assert rows is not None  # exactly one of --rows / --data, checked above
    prices = estimate_mod.load_table("prices.json", prices_file)
    throughput = with_measured_runs(session, estimate_mod.load_throughput(throughput_file), measured_runs)
    throughput_name = throughput_file or "gpu_throughput.json"
    if manifest is not None:
        share, source = estimate_mod.padding_of(throughput, throughput_name)
        tokens = token_sample.from_store(manifest, location=str(data), flag="--data", seq_len=seq_len,
                                         padding_share=share, padding_source=source)
    else:
        tokens = token_count(session, data=data, rows=rows, tokenizer=tokenizer, model=model,
                             text_column=text_column, pair_column=pair_column, seq_len=seq_len, throughput=throughput,
                             offline=offline, throughput_name=throughput_name)
    assumptions = estimate_mod.assumptions_from(throughput, spot_overhead=spot_overhead)
    options = estimate_mod.estimate(
        rows=rows, epochs=epochs, seq_len=seq_len, prices=prices, throughput=throughput,
        instance_types=list(instance_types) or None, nodes=nodes, assumptions=assumptions,
        tokens_per_row=tokens.computed_tokens_per_row,
    )
    if not offline:
        try:
            options = capacity.with_placement(session, options)
        except BertBatchError as exc:
            raise BertBatchError(f"{exc.message} (or estimate without a deployment: --offline)") from None
    best = _choose(options, max_hours, profile=session.profile)
    if output == JSON:
        print_record("estimate", {
            "rows": rows, "epochs": epochs, "max_seq_length": seq_len, "nodes": nodes,
            "prices_as_of": prices.get("as_of"), "assumptions": assumptions.__dict__,
            "options": [o.as_dict() for o in options], "choice": best.as_dict(), "capacity_checked": not offline,
            "tokens": tokens.as_dict(),
            "throughput_sources": {o.gpu: estimate_mod.figure_source(throughput["gpus"][o.gpu]) for o in options},
        })
        return
    print_table(options, best, rows=rows, epochs=epochs, seq_len=seq_len, nodes=nodes, prices=prices,
                throughput=throughput, throughput_name=throughput_file or "gpu_throughput.json",
                assumptions=assumptions, tokens=tokens, checked=not offline)


def _choose(options: list[estimate_mod.Option], max_hours: float | None, *, profile: str) -> estimate_mod.Option:
    """The cheapest placeable option within --max-hours; an error saying why there is none."""
    best = estimate_mod.choose(options, max_hours)
    if best is None and not any(o.placeable is not False for o in options):
        cheapest = options[0]
        raise BertBatchError(
            f"no option can be placed on the queues of profile {profile!r} (cheapest: {cheapest.instance_type} "
            f"{cheapest.pricing}: {cheapest.change})"
        )
    if best is None:
        fastest = min((o for o in options if o.placeable is not False), key=lambda o: o.hours)
        raise BertBatchError(
            f"no option finishes within --max-hours {max_hours:g} (fastest: {fastest.instance_type} "
            f"{fastest.pricing}, {fastest.hours:.2f} h)"
        )
    return best
