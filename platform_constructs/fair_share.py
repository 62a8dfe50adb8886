"""One fair-share scheduling policy for every job queue: teams get vCPUs by weight, not by who
submitted first.

Takes plain values: team name -> weight (relative), the compute reservation and the share decay.
A queue with a policy refuses jobs without a share identifier; the CLI and the fallback function
always set one (bertbatch_contract.teams).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_batch as batch
from constructs import Construct

from bertbatch_contract import teams
from bertbatch_contract.naming import Naming


class FairShare(Construct):
    """`policy`: the batch.FairshareSchedulingPolicy to attach to every queue."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        weights: Mapping[str, float],
        compute_reservation_percent: int,
        share_decay_seconds: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.policy = batch.FairshareSchedulingPolicy(
            self,
            "Policy",
            scheduling_policy_name=naming.resource("teams"),
            compute_reservation=compute_reservation_percent or None,
            share_decay=Duration.seconds(share_decay_seconds) if share_decay_seconds else None,
            shares=[
                batch.Share(share_identifier=name, weight_factor=teams.weight_factor(weight))
                for name, weight in sorted(weights.items())
            ],
        )
