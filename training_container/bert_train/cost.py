"""The per-run cost cap (`bertbatch submit --max-cost USD`): what the run has spent on instances
over all its attempts, and whether it must stop now so as not to pass the cap.

    cost = USD per instance-hour x hours x nodes

With `job.ENV_MAX_COST_USD` set, `meter_from_env()` reads the price table (`job.ENV_PRICES`,
format in `bertbatch_contract.pricing`), learns this instance's type and purchase option from
the instance file (`job.INSTANCE_INFO_FILE`: the host copies them from the instance metadata at
boot, since a container cannot reach the metadata service) and prices them; the node count is
`AWS_BATCH_JOB_NUM_NODES` (the nodes of a multi-node job are of one instance type). A cap that
cannot be enforced (a bad value or price table, no price for this instance, no instance file or
a malformed one) is BadInput: exit 2 before anything is written, never a cap silently ignored.
Without a cap the meter is off and the instance file is never read.

Time is measured on the monotonic clock from the start of this process, taken from
/proc/self/stat (else from when the meter is made), so the imports, reading the data and
building the model are billed too. What happens before the process (the instance's boot, the
image pull, torchrun's own start) is not seen.

The accumulated cost lives in `TrainState.cost_usd`, so every checkpoint carries it and a resumed
attempt continues from it: `record()` adds the time since it last ran, before each checkpoint
snapshot and at the end. Time after an attempt's last checkpoint (the upload of that checkpoint,
the steps lost to a SIGKILL) is not carried over to the next attempt.

At each step boundary rank 0 asks `must_stop()`: yes when the cost so far plus the cost of a
reserve reaches the cap. The reserve is one more step boundary (the longest time between two seen
in this attempt, which includes any evaluation or checkpoint snapshot it held) plus a
checkpoint (the longest this attempt has written, at least DEFAULT_CHECKPOINT_SECONDS), so the
run stops with room left for its final checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bertbatch_contract import job, pricing

from .config import BadInput
from .state import TrainState

# The meter's clock (tests replace it to make time exact).
clock = time.monotonic
# A checkpoint's write and upload before this attempt has timed one: the benchmark's BERT-base
# stop checkpoint to S3 takes 12-14 s on 2 CPU cores; rounded up generously.
DEFAULT_CHECKPOINT_SECONDS = 30.0
# Written by the host at boot, mounted read-only into every job (tests point it elsewhere).
INSTANCE_FILE = Path(job.INSTANCE_INFO_FILE)


def cost_usd(usd_per_instance_hour: float, seconds: float, nodes: int = 1) -> float:
    return usd_per_instance_hour * seconds / 3600 * nodes


@dataclass(frozen=True)
class Rate:
    instance_type: str
    life_cycle: str  # the metadata's instance-life-cycle: "spot" | "on-demand"
    usd_per_instance_hour: float
    nodes: int

    @property
    def usd_per_second(self) -> float:
        return cost_usd(self.usd_per_instance_hour, 1.0, self.nodes)


def process_age_seconds() -> float:
    """Seconds since this process started (Linux), or 0.0 where that cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # the name before ")" may hold spaces
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime: ticks after boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


class CostMeter:
    """Off (no cap) unless given a cap and a rate; `started` is when billing began, on `clock`."""

    def __init__(self, cap_usd: float | None = None, rate: Rate | None = None, *, started: float = 0.0) -> None:
        self.cap_usd = cap_usd
        self.rate = rate
        self._recorded_at = started
        self._boundary_at: float | None = None
        self._longest_gap = 0.0

    @property
    def enabled(self) -> bool:
        return self.cap_usd is not None and self.rate is not None

    def spent(self, state: TrainState) -> float:
        """The run's cost until now: what `state` holds plus the time since the last record."""
        if self.rate is None:
            return state.cost_usd
        return state.cost_usd + self.rate.usd_per_second * (clock() - self._recorded_at)

    def record(self, state: TrainState) -> None:
        """Add the cost since the last record to `state.cost_usd` (nothing without a cap)."""
        if self.rate is None:
            return
        now = clock()
        state.cost_usd += self.rate.usd_per_second * (now - self._recorded_at)
        self._recorded_at = now

    def must_stop(self, state: TrainState, checkpoint_seconds: Sequence[float] = ()) -> bool:
        """Call at every step boundary, the first before the first step: True when the cost so far
        plus one more step boundary and a checkpoint would reach the cap. `checkpoint_seconds`:
        the durations of the checkpoints this attempt has written."""
        if self.rate is None or self.cap_usd is None:
            return False
        now = clock()
        if self._boundary_at is not None:
            self._longest_gap = max(self._longest_gap, now - self._boundary_at)
        self._boundary_at = now
        reserve = self._longest_gap + max([DEFAULT_CHECKPOINT_SECONDS, *checkpoint_seconds])
        return self.spent(state) + self.rate.usd_per_second * reserve >= self.cap_usd

    def reached_line(self, state: TrainState) -> str:
        return f"cost cap reached: ${self.spent(state):.2f} of ${self.cap_usd or 0:.2f} after step {state.step}"


def _nodes(env: Mapping[str, str]) -> int:
    raw = env.get(job.ENV_BATCH_NUM_NODES, "1")
    try:
        nodes = int(raw)
    except ValueError:
        nodes = 0
    if nodes < 1:
        raise BadInput(f"${job.ENV_BATCH_NUM_NODES} {raw!r}: must be an integer >= 1")
    return nodes


class InstanceInfoUnavailable(Exception):
    """str() is one line: which file could not be read and why."""


def _instance_info_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InstanceInfoUnavailable(f"cannot read {path} (file not found: the host writes it at boot; "
                                      "a local run has none)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InstanceInfoUnavailable(f"cannot read {path} ({exc})") from None


def instance_type_and_life_cycle(path: Path) -> tuple[str, str]:
    """("g5.xlarge", "spot"), say: what this instance is and how it is billed, from the instance
    file (job.INSTANCE_INFO_FILE); InstanceInfoUnavailable when it is missing or malformed."""
    try:
        info = json.loads(_instance_info_text(path))
    except json.JSONDecodeError as exc:
        raise InstanceInfoUnavailable(f"cannot read {path} (not JSON: {exc.msg} at column {exc.colno})") from None
    if not isinstance(info, dict):
        keys = " and ".join(job.INSTANCE_INFO_KEYS)
        raise InstanceInfoUnavailable(f"cannot read {path} (not a JSON object with {keys})")
    values = []
    for key in job.INSTANCE_INFO_KEYS:
        if key not in info:
            raise InstanceInfoUnavailable(f"cannot read {path} (no {key})")
        if not isinstance(info[key], str) or not info[key].strip():
            raise InstanceInfoUnavailable(f"cannot read {path} ({key} {info[key]!r} is not a non-empty string)")
        values.append(info[key].strip())
    instance_type, life_cycle = values
    return instance_type, life_cycle


def meter_from_env(env: Mapping[str, str] | None = None, instance_file: Path | None = None) -> CostMeter:
    """The meter for this attempt: off without `job.ENV_MAX_COST_USD`; else priced from the table
    and the instance file (default INSTANCE_FILE), or BadInput naming why the cap cannot be enforced."""
    env = os.environ if env is None else env
    raw_cap = env.get(job.ENV_MAX_COST_USD, "").strip()
    if not raw_cap:
        return CostMeter()
    started = clock() - process_age_seconds()
    try:
        cap = pricing.parse_cap(raw_cap)
        prices = env.get(job.ENV_PRICES, "").strip()
        if not prices:
            raise BadInput(f"${job.ENV_MAX_COST_USD} is set but ${job.ENV_PRICES} is not: "
                           "no prices to enforce the cost cap with")
        table = pricing.parse(prices)
    except pricing.PricingError as exc:
        raise BadInput(str(exc)) from None
    nodes = _nodes(env)
    try:
        instance_type, life_cycle = instance_type_and_life_cycle(instance_file or INSTANCE_FILE)
    except InstanceInfoUnavailable as exc:
        raise BadInput(f"cost cap ${cap:.2f}: cannot learn this instance's type and purchase option from the "
                       f"instance metadata service: {exc}") from None
    price = pricing.hourly_price(table, instance_type, life_cycle)
    if price is None:
        raise BadInput(f"cost cap ${cap:.2f}: ${job.ENV_PRICES} has no {life_cycle} price for {instance_type} "
                       f"(it prices {', '.join(sorted(table))})")
    return CostMeter(cap, Rate(instance_type, life_cycle, price, nodes), started=started)
