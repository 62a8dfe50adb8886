"""Time and cost of a fine-tuning run, from a throughput table and a price table.

    tokens per row      = computed tokens a row: sampled from the data with the job's tokenizer
                          / (1 - padding share) (`token_sample`), else max_seq_length
    per-GPU tokens/s    = table[gpu] (computed tokens per second, padding included)
    run tokens/s        = per-GPU x GPUs per instance x nodes x efficiency (1.0 for one GPU)
    hours (On-Demand)   = (rows x tokens per row x epochs / run tokens/s + startup) / 3600
    hours (Spot)        = hours (On-Demand) x (1 + Spot interruption overhead)
    cost                = hours x $/hour x nodes

A constant rate per token is a fair model for rows of up to 128-512 tokens; beyond that
attention's cost per token grows with the length and the estimate is optimistic.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bertbatch_contract import discovery, efficiency

from ..core.errors import BertBatchError

# gpu_throughput.json: 2 = tokens_per_second per GPU; 1 (no "format") = samples_per_second at
# reference_seq_len, converted on load (the same figures per token).
THROUGHPUT_FORMAT = 2


def load_table(name: str, override: str | None = None) -> dict[str, Any]:
    try:
        if override:
            text = Path(override).read_text(encoding="utf-8")
        else:
            text = resources.files("bertbatch").joinpath("data", name).read_text(encoding="utf-8")
    except OSError as exc:
        raise BertBatchError(f"cannot read {override or name}: {exc.strerror}") from None
    try:
        table: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BertBatchError(f"{override or name}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    return table


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _fraction(value: Any) -> bool:
    """A number >= 0 and < 1 (a share)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1


def throughput_table(table: dict[str, Any], name: str = "gpu_throughput.json") -> dict[str, Any]:
    """`table` in tokens/s (format 2), checked; a format-1 table is converted."""
    gpus = table.get("gpus")
    if not isinstance(gpus, dict) or not gpus or not all(isinstance(row, dict) for row in gpus.values()):
        raise BertBatchError(f"{name}: no \"gpus\" object of GPU type -> figures")
    fmt = table.get("format", 1)
    if fmt == THROUGHPUT_FORMAT:
        for gpu, row in gpus.items():
            if not _positive(row.get("tokens_per_second")):
                raise BertBatchError(f"{name}: GPU {gpu}: tokens_per_second must be a number > 0 "
                                     f"(format {THROUGHPUT_FORMAT})")
        return table
    if fmt != 1:
        raise BertBatchError(f"{name}: throughput table format {fmt!r}: this bertbatch reads format "
                             f"{THROUGHPUT_FORMAT} (tokens_per_second) and format 1 (samples_per_second)")
    reference = table.get("reference_seq_len", 128)
    if not _positive(reference):
        raise BertBatchError(f"{name}: reference_seq_len must be a number > 0")
    converted = copy.deepcopy(table)
    for gpu, row in converted["gpus"].items():
        if not _positive(row.get("samples_per_second")):
            raise BertBatchError(f"{name}: GPU {gpu}: no samples_per_second (a format-1 table; format "
                                 f"{THROUGHPUT_FORMAT} gives tokens_per_second and \"format\": {THROUGHPUT_FORMAT})")
        row["tokens_per_second"] = float(row["samples_per_second"]) * float(reference)
    converted["format"] = THROUGHPUT_FORMAT
    converted["converted_from"] = f"format 1: samples_per_second x reference_seq_len {reference:g}"
    return converted


def load_throughput(override: str | None = None) -> dict[str, Any]:
    return throughput_table(load_table("gpu_throughput.json", override), override or "gpu_throughput.json")


def padding_of(throughput: dict[str, Any], name: str = "gpu_throughput.json") -> tuple[float, str]:
    """The container's padding share of computed tokens, and where the figure came from."""
    padding = throughput.get("padding")
    if padding is None:
        return 0.0, f"none in {name}: 0 assumed"
    share = padding.get("share") if isinstance(padding, dict) else None
    if not (isinstance(share, int | float) and not isinstance(share, bool) and 0 <= share < 1):
        raise BertBatchError(f"{name}: padding.share must be a number >= 0 and < 1")
    return float(share), str(padding.get("source", "?"))


def with_measured_run(throughput: dict[str, Any], metrics: dict[str, Any], run: str) -> dict[str, Any]:
    """`throughput` (format 2) with the figure of the GPU class `run` trained on replaced by what the
    run measured: its computed tokens/s (padding included) per GPU, from its metrics.json."""
    gpu_name, tokens = metrics.get("gpu_name"), metrics.get("tokens_per_second", 0)  # tokens: non-padding
    if not gpu_name:
        raise BertBatchError(f"--measured-run {run}: its metrics.json names no GPU (trained on CPU, or before "
                             "runs recorded their GPU): no GPU throughput to use")
    gpu = efficiency.GPU_CLASSES.get(gpu_name)
    if gpu is None or gpu not in throughput["gpus"]:
        known = ", ".join(sorted(efficiency.GPU_CLASSES))
        raise BertBatchError(f"--measured-run {run}: GPU {gpu_name!r} has no class in the throughput table "
                             f"(known: {known})")
    padding, processes = metrics.get("padding_fraction", 0.0), metrics.get("world_size", 1)
    if not (_positive(tokens) and _fraction(padding) and _positive(processes)):
        raise BertBatchError(f"--measured-run {run}: its metrics.json has no usable tokens_per_second, "
                             "padding_fraction and world_size")
    mfu = metrics.get("mfu")
    measured = copy.deepcopy(throughput)
    measured["gpus"][gpu] = {
        "tokens_per_second": tokens / (1 - padding) / processes, "derived_estimate": False,
        "source": f"run {run}: {processes} x {gpu_name}" + (f", MFU {mfu:.3f}" if mfu is not None else ""),
    }
    return measured


def is_measured(row: dict[str, Any]) -> bool:
    """A figure counts as measured only when the table says so (\"derived_estimate\": false)."""
    return row.get("derived_estimate") is False


def figure_source(row: dict[str, Any]) -> str:
    """Where a GPU's figure comes from: 'measured: <result or run>' or 'derived: <basis>'."""
    if is_measured(row):
        return f"measured: {row.get('source', 'source not given')}"
    return f"derived: {row.get('basis', 'basis not given')}"


@dataclass(frozen=True)
class Option:
    instance_type: str
    gpu: str
    gpus: int  # per instance
    nodes: int
    pricing: str  # "spot" | "on-demand"
    samples_per_second: float  # whole run
    tokens_per_second: float  # whole run, computed tokens (padding included)
    throughput_estimate: bool  # the GPU's figure is a derived estimate, not a measurement
    hours: float
    price_per_hour: float  # per instance
    cost: float
    queue: str  # discovery key of the queue that would run it
    placeable: bool | None = None  # can that queue launch it; None: not checked
    change: str | None = None  # the config change that would make it placeable

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Assumptions:
    reference_seq_len: int
    multi_gpu_efficiency: float
    startup_minutes: float
    spot_interruption_overhead: float


def assumptions_from(throughput: dict[str, Any], *, spot_overhead: float | None = None,
                     startup_minutes: float | None = None) -> Assumptions:
    a = throughput.get("assumptions", {})
    return Assumptions(
        reference_seq_len=int(throughput.get("reference_seq_len", 128)),
        multi_gpu_efficiency=float(a.get("multi_gpu_efficiency", 1.0)),
        startup_minutes=float(a.get("startup_minutes", 0.0) if startup_minutes is None else startup_minutes),
        spot_interruption_overhead=float(
            a.get("spot_interruption_overhead", 0.0) if spot_overhead is None else spot_overhead
        ),
    )


def estimate(
    *,
    rows: int,
    epochs: int,
    seq_len: int,
    prices: dict[str, Any],
    throughput: dict[str, Any],
    instance_types: list[str] | None = None,
    nodes: int = 1,
    assumptions: Assumptions | None = None,
    tokens_per_row: float | None = None,
) -> list[Option]:
    """Every (instance type, pricing) option, cheapest first. `tokens_per_row`: the computed
    tokens of a row (padding included); None: every row costs `seq_len` tokens."""
    if rows < 1:
        raise BertBatchError(f"--rows {rows}: must be >= 1")
    throughput = throughput_table(throughput)
    a = assumptions or assumptions_from(throughput)
    per_row = float(seq_len) if tokens_per_row is None else tokens_per_row
    table = prices.get("instances", {})
    gpus_table = throughput["gpus"]
    chosen = instance_types or list(table)
    options: list[Option] = []
    for itype in chosen:
        if itype not in table:
            known = ", ".join(sorted(table))
            raise BertBatchError(f"--instance-type {itype}: not in the price table (known: {known})")
        inst = table[itype]
        gpu = inst["gpu"]
        if gpu not in gpus_table:
            raise BertBatchError(f"GPU type {gpu} of {itype} is not in the throughput table")
        per_gpu = float(gpus_table[gpu]["tokens_per_second"])
        total_gpus = int(inst["gpus"]) * nodes
        efficiency = 1.0 if total_gpus == 1 else a.multi_gpu_efficiency
        run_tps = per_gpu * total_gpus * efficiency
        run_sps = run_tps / per_row
        seconds = rows * epochs / run_sps + a.startup_minutes * 60
        base_hours = seconds / 3600
        pricings = [("on-demand", float(inst["on_demand"]), base_hours)]
        if nodes == 1 and inst.get("spot") is not None:  # multi-node jobs cannot run on Spot
            pricings.insert(0, ("spot", float(inst["spot"]), base_hours * (1 + a.spot_interruption_overhead)))
        for pricing, price, hours in pricings:
            if nodes > 1:
                queue = discovery.QUEUE_MULTI_NODE
            elif pricing == "spot":
                queue = discovery.QUEUE_SPOT_FIRST
            else:
                queue = discovery.QUEUE_ON_DEMAND
            options.append(Option(
                instance_type=itype, gpu=gpu, gpus=int(inst["gpus"]), nodes=nodes, pricing=pricing,
                samples_per_second=run_sps, tokens_per_second=run_tps,
                throughput_estimate=not is_measured(gpus_table[gpu]), hours=hours, price_per_hour=price,
                cost=hours * price * nodes, queue=queue,
            ))
    options.sort(key=lambda o: (o.cost, o.hours))
    return options


def choose(options: list[Option], max_hours: float | None = None) -> Option | None:
    """The cheapest option that its queue can place and that finishes within max_hours (the
    fastest breaks ties)."""
    fitting = [o for o in options if o.placeable is not False and (max_hours is None or o.hours <= max_hours)]
    return min(fitting, key=lambda o: (o.cost, o.hours)) if fitting else None


def has_header(name: str) -> bool:
    """TSV/CSV files start with a header line; JSON Lines files do not."""
    return not name.lower().endswith((".jsonl", ".ndjson", ".json", ".jsonl.gz"))


def count_rows(lines: Iterable[bytes], header: bool = True) -> int:
    n = sum(1 for line in lines if line.strip())
    return max(0, n - 1) if header else n
