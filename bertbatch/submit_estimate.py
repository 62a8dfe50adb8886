"""The cost estimate `submit` records on the job (tag `bert-batch:cost-estimate-usd`), so `status`
can show it beside what the run actually cost.

It is `bertbatch estimate` for this job: the training rows (counted from the first MiB of the
file and its size: exact for small files, a good guess for large ones), the epochs and sequence
length the job will use, and the cheapest instance of the chosen queue that holds the job's
GPUs, at the queue's purchase option. An estimate that cannot be made (an input not on S3, an
instance type missing from the tables) is left out: it informs, it never blocks a submit.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bertbatch_contract import discovery

from . import capacity, estimate, jobs
from .errors import BertBatchError
from .session import Session

SAMPLE_BYTES = 1 << 20
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


def count_rows(s3: Any, uri: str) -> int:
    bucket, key = jobs.parse_s3_uri(uri)
    size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    head = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{SAMPLE_BYTES - 1}")["Body"].read()
    return rows_from_sample(head, size, header=estimate.has_header(key))


def job_estimate(session: Session, *, train_uri: str, queue_key: str, gpus: int, nodes: int, epochs: int,
                 seq_len: int, array_size: int | None) -> float | None:
    """USD the job is expected to cost (every child of an array job), or None."""
    if not train_uri.startswith("s3://"):
        return None
    try:
        rows = count_rows(session.client("s3"), train_uri)
        prices = estimate.load_table("prices.json")
        throughput = estimate.load_table("gpu_throughput.json")
        pricing = "spot" if queue_key == discovery.QUEUE_SPOT_FIRST else "on-demand"
        candidates = [o for o in estimate.estimate(rows=rows, epochs=epochs, seq_len=seq_len, prices=prices,
                                                   throughput=throughput, nodes=nodes)
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
