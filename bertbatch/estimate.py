"""Time and cost of a fine-tuning run, from a throughput table and a price table.

    per-GPU samples/s   = table[gpu] x reference_seq_len / seq_len
    run samples/s       = per-GPU x GPUs per instance x nodes x efficiency (1.0 for one GPU)
    hours (On-Demand)   = (rows x epochs / run samples/s + startup) / 3600
    hours (Spot)        = hours (On-Demand) x (1 + Spot interruption overhead)
    cost                = hours x $/hour x nodes
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bertbatch_contract import discovery

from .errors import BertBatchError


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


@dataclass(frozen=True)
class Option:
    instance_type: str
    gpu: str
    gpus: int  # per instance
    nodes: int
    pricing: str  # "spot" | "on-demand"
    samples_per_second: float  # whole run
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
) -> list[Option]:
    """Every (instance type, pricing) option, cheapest first."""
    if rows < 1:
        raise BertBatchError(f"--rows {rows}: must be >= 1")
    a = assumptions or assumptions_from(throughput)
    table = prices.get("instances", {})
    gpus_table = throughput.get("gpus", {})
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
        per_gpu = float(gpus_table[gpu]["samples_per_second"]) * a.reference_seq_len / seq_len
        total_gpus = int(inst["gpus"]) * nodes
        efficiency = 1.0 if total_gpus == 1 else a.multi_gpu_efficiency
        run_sps = per_gpu * total_gpus * efficiency
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
                samples_per_second=run_sps, hours=hours, price_per_hour=price,
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
    return not name.lower().endswith((".jsonl", ".json", ".jsonl.gz"))


def count_rows(lines: Iterable[bytes], header: bool = True) -> int:
    n = sum(1 for line in lines if line.strip())
    return max(0, n - 1) if header else n
