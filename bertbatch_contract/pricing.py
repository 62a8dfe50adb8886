"""The per-run cost cap: its value and the price table the CLI passes to a training job.

`bertbatch submit --max-cost USD` sets `job.ENV_MAX_COST_USD` to the cap (`format_cap`) and
`job.ENV_PRICES` to the prices of the instance types the job's queue can launch (`dumps`): JSON,
instance type -> US dollars per instance-hour by purchase option, either option may be left out:

    {"g5.xlarge": {"spot": 0.45, "on_demand": 1.006}, "p4d.24xlarge": {"on_demand": 32.77}}

The container reads both back (`parse_cap`, `parse`); each raises PricingError, whose str() is one
line naming the variable, the entry and what is wrong. It looks up the price of the instance it
runs on with `hourly_price`, the purchase option being the instance metadata's
`instance-life-cycle` (`LIFE_CYCLES`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from . import job

SPOT = "spot"
ON_DEMAND = "on_demand"
PURCHASE_OPTIONS = (SPOT, ON_DEMAND)
# The instance metadata's `instance-life-cycle` value -> the purchase option it is billed at.
LIFE_CYCLES = {"spot": SPOT, "on-demand": ON_DEMAND}

# An EC2 instance type: family (letters, digits, dashes: "g5", "p4d", "u-6tb1"), ".", size.
_INSTANCE_TYPE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")

PriceTable = dict[str, dict[str, float]]  # instance type -> purchase option -> USD per instance-hour


class PricingError(ValueError):
    """str() is the one-line message."""


def _positive_number(value: object) -> float | None:
    """`value` as a float if it is a finite number > 0 (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def parse_cap(text: str, *, source: str = f"${job.ENV_MAX_COST_USD}") -> float:
    """The cost cap in USD from its text: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise PricingError(f"{source} {text!r}: must be a number of US dollars > 0")
    return value


def format_cap(usd: float) -> str:
    """The cap as the CLI puts it in the job environment (`parse_cap` reads it back)."""
    text = repr(float(usd))
    parse_cap(text, source="--max-cost")
    return text


def parse(text: str, *, source: str = f"${job.ENV_PRICES}") -> PriceTable:
    """The price table from its JSON text; PricingError names the first problem."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PricingError(f"{source}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(doc, dict) or not doc:
        raise PricingError(f"{source}: must be a non-empty JSON object of instance type -> prices")
    table: PriceTable = {}
    for instance_type, prices in doc.items():
        if not _INSTANCE_TYPE.fullmatch(instance_type):
            raise PricingError(f"{source}: {instance_type!r} is not an EC2 instance type (e.g. 'g5.xlarge')")
        if not isinstance(prices, dict) or not prices:
            raise PricingError(f"{source}: {instance_type}: must be an object with 'spot' and/or 'on_demand'")
        unknown = sorted(set(prices) - set(PURCHASE_OPTIONS))
        if unknown:
            raise PricingError(f"{source}: {instance_type}: unknown key {unknown[0]!r} (use 'spot' or 'on_demand')")
        table[instance_type] = {}
        for option, value in prices.items():
            price = _positive_number(value)
            if price is None:
                raise PricingError(f"{source}: {instance_type}.{option}: {value!r} is not a price "
                                   "(a number of US dollars per hour > 0)")
            table[instance_type][option] = price
    return table


def dumps(table: Mapping[str, Mapping[str, float]]) -> str:
    """The compact JSON the CLI puts in `job.ENV_PRICES`; PricingError if `parse` would refuse it."""
    text = json.dumps({k: dict(v) for k, v in table.items()}, separators=(",", ":"), sort_keys=True)
    parse(text, source=job.ENV_PRICES)
    return text


def hourly_price(table: PriceTable, instance_type: str, life_cycle: str) -> float | None:
    """USD per instance-hour of `instance_type` bought as `life_cycle` (an `instance-life-cycle`
    value), or None when the table has no such price."""
    option = LIFE_CYCLES.get(life_cycle)
    return table.get(instance_type, {}).get(option) if option else None
