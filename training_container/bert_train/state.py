"""What a run carries from step to step besides the model, optimizer, schedule and RNG states.

It is saved in every checkpoint (`trainer_state.pt`) and restored field by field on resume, so
a resumed run continues its data position, early stopping, running totals and accumulated cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done; with the epoch size this is the data position
    last_eval_step: int = 0
    best_metric: float | None = None
    best_step: int = 0
    evals_without_improvement: int = 0
    early_stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    loss_sum: float = 0.0  # sum of per-step mean losses (for the run's average train loss)
    loss_sum_at_last_eval: float = 0.0  # loss_sum at the previous evaluation: train loss per eval window
    samples: int = 0  # examples trained on, all ranks
    tokens: int = 0  # non-padding tokens trained on, all ranks
    computed_tokens: int = 0  # tokens computed including padding, all ranks
    train_seconds: float = 0.0  # time inside training steps, over all attempts
    compile_seconds: float = 0.0  # --compile: each attempt's first step (compilation included), summed
    # USD spent on instances, over all attempts, up to the newest checkpoint: grown by cost.CostMeter
    # (only while a cost cap is set) and checked against the cap at every step boundary.
    cost_usd: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds else 0.0

    @property
    def padding_fraction(self) -> float:
        return 1 - self.tokens / self.computed_tokens if self.computed_tokens else 0.0
