"""`bertbatch estimate`: time and cost of a run, Spot and On-Demand (the arithmetic is
`bertbatch.estimate`)."""

from __future__ import annotations

from pathlib import Path

import click

from bertbatch_contract import hyperparameters as hp

from .. import capacity, job_parameters, jobs, params, terminal
from .. import estimate as estimate_mod
from ..errors import BertBatchError
from ..options import hyperparameter_help, target_options
from ..output import JSON, output_option, print_record
from ..session import Session, pass_session

EPOCHS, MAX_SEQ_LENGTH = hp.BY_NAME["epochs"], hp.BY_NAME["max_seq_length"]


def count_data_rows(session: Session, data: str) -> int:
    """Data rows of a TSV/CSV (header not counted) or JSON Lines file, local or on S3."""
    if data.startswith("s3://"):
        bucket, key = jobs.parse_s3_uri(data)
        s3 = session.client("s3")
        jobs.check_s3_object(s3, "--data", data)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        return estimate_mod.count_rows(body.iter_lines(), header=estimate_mod.has_header(key))
    path = Path(data)
    if not path.is_file():
        raise BertBatchError(f"--data {data}: no such file")
    with path.open("rb") as fh:
        return estimate_mod.count_rows(fh, header=estimate_mod.has_header(data))


def placeable_text(o: estimate_mod.Option) -> str:
    if o.placeable is None:
        return "?"
    return "yes" if o.placeable else f"no: {o.change}"


def print_table(options: list[estimate_mod.Option], best: estimate_mod.Option, *, rows: int, epochs: int,
                seq_len: int, nodes: int, prices: dict[str, object], assumptions: estimate_mod.Assumptions,
                checked: bool) -> None:
    click.echo(f"{rows:,} rows x {epochs} epoch(s), sequence length {seq_len}, {nodes} node(s)")
    table_rows = [
        ("*" if o is best else "", o.instance_type, f"{o.gpus * o.nodes}x {o.gpu}", o.pricing,
         f"{o.samples_per_second:,.0f}", f"{o.hours:.2f}", f"{o.price_per_hour:.3f}", f"{o.cost:,.2f}",
         *((placeable_text(o),) if checked else ()))
        for o in options
    ]
    headers = ("", "INSTANCE", "GPUS", "PRICING", "SAMPLES/S", "HOURS", "$/HOUR", "COST $")
    terminal.print_table(headers + (("PLACEABLE",) if checked else ()), table_rows, right=(4, 5, 6, 7))
    click.echo(
        f"Assumptions: throughput x {assumptions.reference_seq_len}/sequence length; "
        f"{assumptions.multi_gpu_efficiency:.0%} scaling efficiency on more than one GPU; "
        f"{assumptions.startup_minutes:g} min startup; Spot takes {assumptions.spot_interruption_overhead:.0%} longer "
        f"(interruptions). Throughput figures are estimates (see gpu_throughput.json); "
        f"prices {prices.get('region', '')} as of {prices.get('as_of', '?')}."
    )
    if not checked:
        click.echo("Not checked against the profile's queues (--offline): an option may need a config change.")
    queue = next(k for k, v in jobs.QUEUE_KEYS.items() if v == best.queue)
    flags = f"--gpus {best.gpus}" + (f" --nodes {best.nodes}" if best.nodes > 1 else "")
    flags += " --on-demand" if best.pricing == "on-demand" and best.nodes == 1 else ""
    click.echo(f"Would choose: {best.instance_type} {best.pricing} on queue {queue}, "
               f"{best.hours:.2f} h, ${best.cost:,.2f} (bertbatch submit {flags})")


@click.command()
@click.option("--rows", type=int, metavar="N", help="Training rows (examples)")
@click.option("--data", metavar="PATH|URI",
              help="Count the rows of this TSV/CSV (header line not counted) or JSONL file: a local path or s3:// URI")
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
@click.option("--offline", is_flag=True,
              help="Do not read the profile's queues: every option is considered, none checked for placement")
@output_option
@target_options()
@pass_session
def estimate(session: Session, rows: int | None, data: str | None, epochs: int, seq_len: int,
             instance_types: tuple[str, ...], nodes: int, max_hours: float | None, spot_overhead: float | None,
             prices_file: str | None, throughput_file: str | None, offline: bool, output: str) -> None:
    """Estimate the time and cost of a BERT-base fine-tuning run, Spot and On-Demand.

    Throughput (samples/s per GPU, BERT-base, sequence length 128, mixed precision) comes from
    bertbatch/data/gpu_throughput.json, scaled by 128 / --max-seq-length and by the GPUs used;
    prices from bertbatch/data/prices.json (dated: update it, or pass --prices). Spot runs
    include an interruption overhead. Each option is checked against the instance types and
    vCPU caps of the profile's queue that would run it (SSM capacity/<queue>): the cheapest
    placeable option (within --max-hours) is chosen, and the others say which config key to
    change. --offline skips that check (no AWS call unless --data is on S3).

    \b
    Examples:
      bertbatch estimate --rows 67349 --epochs 3
      bertbatch estimate --data s3://my-data/datasets/sst2/train.tsv --max-seq-length 64
      bertbatch estimate --rows 2000000 --epochs 2 --max-hours 4
      bertbatch estimate --rows 500000 --instance-type g5.xlarge --instance-type g6e.xlarge -o json
      bertbatch estimate --rows 67349 --offline
    """
    if (rows is None) == (data is None):
        raise BertBatchError("give exactly one of --rows N or --data PATH|URI")
    params.check_int("--rows", rows, 1)
    job_parameters.check({EPOCHS.name: epochs, MAX_SEQ_LENGTH.name: seq_len})
    params.check_int("--nodes", nodes, 1, 1000)
    params.check_number("--max-hours", max_hours, minimum=0, exclusive=True)
    params.check_number("--spot-overhead", spot_overhead, minimum=0)
    if data is not None:
        rows = count_data_rows(session, data)
        if rows < 1:
            raise BertBatchError(f"--data {data}: no data rows")
    assert rows is not None  # exactly one of --rows / --data, checked above
    prices = estimate_mod.load_table("prices.json", prices_file)
    throughput = estimate_mod.load_table("gpu_throughput.json", throughput_file)
    assumptions = estimate_mod.assumptions_from(throughput, spot_overhead=spot_overhead)
    options = estimate_mod.estimate(
        rows=rows, epochs=epochs, seq_len=seq_len, prices=prices, throughput=throughput,
        instance_types=list(instance_types) or None, nodes=nodes, assumptions=assumptions,
    )
    if not offline:
        try:
            options = capacity.with_placement(session, options)
        except BertBatchError as exc:
            raise BertBatchError(f"{exc.message} (or estimate without a deployment: --offline)") from None
    best = estimate_mod.choose(options, max_hours)
    if best is None and not any(o.placeable is not False for o in options):
        cheapest = options[0]
        raise BertBatchError(
            f"no option can be placed on the queues of profile {session.profile!r} (cheapest: {cheapest.instance_type} "
            f"{cheapest.pricing}: {cheapest.change})"
        )
    if best is None:
        fastest = min((o for o in options if o.placeable is not False), key=lambda o: o.hours)
        raise BertBatchError(
            f"no option finishes within --max-hours {max_hours:g} (fastest: {fastest.instance_type} "
            f"{fastest.pricing}, {fastest.hours:.2f} h)"
        )
    if output == JSON:
        print_record("estimate", {
            "rows": rows, "epochs": epochs, "max_seq_length": seq_len, "nodes": nodes,
            "prices_as_of": prices.get("as_of"), "assumptions": assumptions.__dict__,
            "options": [o.as_dict() for o in options], "choice": best.as_dict(), "capacity_checked": not offline,
        })
        return
    print_table(options, best, rows=rows, epochs=epochs, seq_len=seq_len, nodes=nodes, prices=prices,
                assumptions=assumptions, checked=not offline)
