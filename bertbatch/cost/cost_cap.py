"""`submit --max-cost USD`: the cap and the price table of the queue's instance types, as the job
environment variables the container reads (formats: bertbatch_contract.pricing)."""

from __future__ import annotations

from bertbatch_contract import job as job_env
from bertbatch_contract import pricing

from ..core.errors import BertBatchError
from ..core.session import Session
from ..jobs import queue_capacity as capacity
from .training_cost import load_table


def check_cap(text: str | None) -> str | None:
    """--max-cost as the job variable's text (a finite number > 0), checked before any AWS call."""
    if text is None:
        return None
    try:
        return pricing.format_cap(pricing.parse_cap(text, source="--max-cost"))
    except pricing.PricingError as exc:
        raise BertBatchError(str(exc)) from None


def queue_prices(session: Session, queue_kind: str, queue: str) -> pricing.PriceTable:
    """Prices (prices.json) of the instance types the queue's compute environments can launch;
    every type in the table when the queue does not say."""
    prices = load_table("prices.json").get("instances", {})
    environments = capacity.read(session, queue_kind, queue)
    names = list(prices)
    if environments:
        known, _ = capacity.expand([t for e in environments for t in e.instance_types], capacity.instance_table())
        names = [t.name for t in known if t.name in prices]
    table: pricing.PriceTable = {}
    for name in dict.fromkeys(names):
        row = {option: float(prices[name][key]) for option, key in ((pricing.SPOT, "spot"),
                                                                  (pricing.ON_DEMAND, "on_demand"))
               if prices[name].get(key) is not None}
        if row:
            table[name] = row
    if not table:
        raise BertBatchError(f"--max-cost: no instance type of queue {queue} is in the price table "
                             "(bertbatch/data/prices.json): add its prices")
    return table


def environment(session: Session, cap: str, queue_kind: str, queue: str) -> dict[str, str]:
    return {job_env.ENV_MAX_COST_USD: cap, job_env.ENV_PRICES: pricing.dumps(queue_prices(session, queue_kind, queue))}


STOPPED_ON_CAP = ("stopped at its --max-cost cap after a checkpoint: submit again with the same --run-name "
                  "and a higher --max-cost to resume")


def exit_reason(exit_code: int | None) -> str | None:
    """Why a job with this exit code stopped, when the code says more than Batch's reason."""
    return STOPPED_ON_CAP if exit_code == job_env.EXIT_COST_CAP else None
