"""The cost ledger as `status` shows it: the JSON fields, the summary line and the per-attempt table."""

from __future__ import annotations

from typing import Any

from ..runs.comparison import duration_text
from ..ui import timestamps as times
from .ledger import Ledger, format_cost


def status_fields(run_ledger: Ledger | None) -> dict[str, Any]:
    """cost, cost_estimate, cost_attempts, prices_as_of of `status -o json` (nulls without a run)."""
    if run_ledger is None:
        return {"cost": None, "cost_estimate": None, "cost_attempts": None, "prices_as_of": None}
    return {
        "cost": None if run_ledger.cost is None else round(run_ledger.cost, 6),
        "cost_estimate": run_ledger.estimate,
        "cost_attempts": [a.as_dict() for a in run_ledger.attempts],
        "prices_as_of": run_ledger.prices_as_of,
    }


def summary(cost: float | None, estimate: float | None) -> str:
    """'$1.23 so far (estimated at submit: $1.50)'."""
    text = format_cost(cost) if cost is not None else "- (no attempt has run)"
    return text + (f" (estimated at submit: {format_cost(estimate)})" if estimate is not None else "")


def breakdown_rows(run_ledger: Ledger) -> list[tuple[str, str]]:
    """(label, value) lines of `status`: one per attempt, the total's price table, what was assumed
    (Batch does not record an attempt's instance type)."""
    rows = []
    for a in run_ledger.attempts:
        price = "not priced" if a.price_per_hour is None else f"${a.price_per_hour:.3f}/h"
        nodes = f" x {a.nodes} nodes" if a.nodes > 1 else ""
        stopped = times.timestamp(a.stopped_ms) if a.stopped_ms else "running"
        rows.append((f"attempt {a.job_id} #{a.number}",
                     f"{times.timestamp(a.started_ms)} .. {stopped} ({duration_text(a.seconds)}) "
                     f"{a.pricing or '?'} {a.instance_type or '?'} in {a.environment or '?'} at {price}{nodes}: "
                     f"{format_cost(a.cost)}"))
    if run_ledger.attempts:
        unpriced = f"; {run_ledger.unpriced} attempt(s) not priced" if run_ledger.unpriced else ""
        rows.append(("prices", f"as of {run_ledger.prices_as_of or '?'} (bertbatch/data/prices.json){unpriced}"))
    rows.extend(("assumed", assumption)
                for assumption in dict.fromkeys(a.assumption for a in run_ledger.attempts if a.assumption))
    return rows
