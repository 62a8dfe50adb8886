"""The cost estimate `submit` records on the job (tag `bert-batch:cost-estimate-usd`), so `status`
can show it beside what the run actually cost.

It is `bertbatch estimate` for this job: the training rows (counted from the first MiB of the
file and its size: exact for small files, a good guess for large ones), the tokens of those
rows with the job's tokenizer (`token_sample`: the model's tokenizer.json or vocab.txt on S3,
the job's text column and sequence length; without one, max_seq_length tokens a row), the
epochs the job will use, and the cheapest instance of the chosen queue that holds the job's
GPUs, at the queue's purchase option. An estimate that cannot be made (an input not on S3, an
unreadable file or column, an instance type missing from the tables) is left out: it informs,
it never blocks a submit.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bertbatch_contract import discovery
from bertbatch_contract import hyperparameters as hp

from ..core.errors import BertBatchError
from ..core.session import Session
from ..jobs import queue_capacity as capacity
from . import token_sample
from . import training_cost as estimate

SAMPLE_BYTES = token_sample.SAMPLE_BYTES
log = logging.getLogger("bertbatch")


def rows_from_sample(head: bytes, total_bytes: int, *, header: bool) -> int:
    """Data rows of a file from its first bytes: exact when `head` is the whole file, else
    the file's size over the sample's bytes per line."""
    if len(head) >= total_bytes:
        return estimate.count_rows(head.splitlines(), header=header)
    lines = head.count(b"\n")
    if lines == 0:
        return 1
    return max(1, round(total_bytes * lines / len(head)) - (1 if header else 0))


def job_tokens(session: Session, head: token_sample.Head, *, rows: int, model: str, text_column: str, seq_len: int,
               throughput: dict[str, Any]) -> token_sample.TokenCount:
    """The computed tokens a row of the job, as `bertbatch estimate --data URI --model MODEL` counts them."""
    sample = token_sample.sample_rows(head, text_column=text_column, pair_column=None, flag="--train")
    found = token_sample.find(session, tokenizer=None, model=model, offline=False)
    if isinstance(found, str):
        return token_sample.fallback(seq_len, f"no tokenizer: {found}")
    share, source = estimate.padding_of(throughput)
    return token_sample.count(sample, found, seq_len=seq_len, padding_share=share, padding_source=source,
                              total_rows=rows)


def job_estimate(session: Session, *, train_uri: str, queue_key: str, gpus: int, nodes: int, epochs: int,
                 seq_len: int, array_size: int | None, model: str = "",
                 text_column: str = "") -> float | None:
    """USD the job is expected to cost (every child of an array job), or None."""
    if not train_uri.startswith("s3://"):
        return None
    try:
        prices = estimate.load_table("prices.json")
        throughput = estimate.load_throughput()
        manifest = token_sample.store_manifest(session, train_uri, "--train")
        if manifest is not None:  # a prepared store: every row's real tokens
            rows = int(manifest["rows"])
            share, source = estimate.padding_of(throughput)
            tokens = token_sample.from_store(manifest, location=train_uri, flag="--train", seq_len=seq_len,
                                             padding_share=share, padding_source=source)
        else:
            head = token_sample.s3_head(session.client("s3"), train_uri, "--train")
            rows = rows_from_sample(head.data, head.size, header=estimate.has_header(train_uri))
            tokens = job_tokens(session, head, rows=rows, model=model or str(hp.default("model")),
                                text_column=text_column or str(hp.default("text_column")), seq_len=seq_len,
                                throughput=throughput)
        log.debug("cost estimate: %s", tokens.describe(seq_len))
        pricing = "spot" if queue_key == discovery.QUEUE_SPOT_FIRST else "on-demand"
        candidates = [o for o in estimate.estimate(rows=rows, epochs=epochs, seq_len=seq_len, prices=prices,
                                                   throughput=throughput, nodes=nodes,
                                                   tokens_per_row=tokens.computed_tokens_per_row)
                      if o.queue == queue_key and o.pricing == pricing and o.gpus >= gpus]
        # the placement check `bertbatch estimate` makes, on this queue only
        options = capacity.with_placement(session, candidates)
    except (BertBatchError, ClientError, BotoCoreError, KeyError, ValueError) as exc:
        log.debug("no cost estimate: %s", exc)
        return None
    fitting = [o for o in options if o.placeable is not False]
    if not fitting:
        return None
    return min(o.cost for o in fitting) * (array_size or 1)
