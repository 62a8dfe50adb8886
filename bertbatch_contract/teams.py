"""Teams: who shares the job queues, and how the CLI, the stacks and the fallback agree on it.

Every queue carries one fair-share scheduling policy whose share identifiers are the team names
of the `teams` config section. A queue with such a policy refuses a job without a share
identifier, so every submitter (the CLI, the fallback function) sets one, and tags the job with
the team for cost attribution. The Training stack publishes the teams under the `teams`
discovery key (`teams_value` / `parse_teams`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

# A Batch share identifier is up to 255 alphanumeric characters (a trailing * makes it a prefix,
# which team names never are); 64 keeps tags and dashboards readable.
TEAM_NAME = re.compile(r"[A-Za-z0-9]{1,64}")
TEAM_NAME_RULE = "1 to 64 letters and digits (an AWS Batch share identifier)"
# Where the CLI takes a team from when --team is not given, before the deployment's default.
ENV_TEAM = "BERT_BATCH_TEAM"
DEFAULT_TEAM = "default"
# Batch's weight factor bounds; a team's weight w gets the factor 1/w (a lower factor is a
# larger share), so weight 2 gets twice the vCPUs of weight 1 when both have jobs waiting.
MIN_WEIGHT_FACTOR, MAX_WEIGHT_FACTOR = 0.0001, 999.9999
MIN_WEIGHT, MAX_WEIGHT = 0.001, 1000.0


def is_team_name(name: str) -> bool:
    return TEAM_NAME.fullmatch(name) is not None


def weight_factor(weight: float) -> float:
    """The share's weightFactor in the scheduling policy for a team of `weight`."""
    return min(MAX_WEIGHT_FACTOR, max(MIN_WEIGHT_FACTOR, round(1.0 / weight, 4)))


@dataclass(frozen=True)
class Teams:
    weights: Mapping[str, float]
    default: str

    def resolve(self, given: str | None) -> str:
        """The team a job is submitted for: `given`, else the default. ValueError with one line
        when it is not one of the deployment's teams."""
        team = given or self.default
        if team not in self.weights:
            known = ", ".join(sorted(self.weights))
            raise ValueError(f"team {team!r} is not one of this deployment's teams ({known}): "
                             f"add it to the teams.weights config and redeploy, or pick another")
        return team


def teams_value(teams: Teams) -> str:
    """The SSM value of the `teams` discovery key."""
    return json.dumps({"weights": dict(teams.weights), "default": teams.default}, separators=(",", ":"),
                      sort_keys=True)


def parse_teams(text: str) -> Teams:
    """Read a `teams` value back; ValueError with one line when malformed."""
    try:
        data = json.loads(text)
        weights = {str(name): float(weight) for name, weight in data["weights"].items()}
        default = str(data["default"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed teams value {text[:80]!r}: {exc}") from None
    if default not in weights:
        raise ValueError(f"malformed teams value {text[:80]!r}: the default team {default!r} has no weight")
    return Teams(weights=weights, default=default)
