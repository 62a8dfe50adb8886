"""GpuCompute's job queues: spot-first (Spot, then On-Demand), on-demand, multi-node."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Capture, Match, Template

from bertbatch_contract.naming import Naming
from platform_constructs.runtime.fallback import CAPACITY_REASON
from tests.stacks.conftest import COMPUTE_ENVIRONMENT, one, one_has


def queue_value(template: Template, kind: str, name: str) -> list[dict]:
    """Property `name` (a list) of the one queue of `kind`."""
    named = {"JobQueueName": Naming("dev").resource(kind)}
    template.resource_properties_count_is("AWS::Batch::JobQueue", named, 1)
    value = Capture()
    template.has_resource_properties("AWS::Batch::JobQueue", {**named, name: value})
    return value.as_array()


def queue_environments(template: Template, kind: str) -> list[tuple[int, str]]:
    return sorted(
        (o["Order"], o["ComputeEnvironment"]["Fn::GetAtt"][0])
        for o in queue_value(template, kind, "ComputeEnvironmentOrder")
    )


def test_spot_first_queue_tries_spot_then_on_demand(dev_training):
    spot, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "ComputeGpuSpot")
    on_demand, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "ComputeGpuOnDemand")
    assert queue_environments(dev_training, "spot-first") == [(1, spot), (2, on_demand)]


def test_on_demand_queue_is_on_demand_only(dev_training):
    on_demand, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "ComputeGpuOnDemand")
    assert queue_environments(dev_training, "on-demand") == [(1, on_demand)]


def test_multi_node_queue_uses_only_the_multi_node_environment(dev_training):
    multi, _ = one(dev_training, "AWS::Batch::ComputeEnvironment", "ComputeMultiNode")
    assert queue_environments(dev_training, "multi-node") == [(1, multi)]


def test_no_spot_in_the_multi_node_queue(dev_training):
    for _, env_id in queue_environments(dev_training, "multi-node"):
        one_has(dev_training, COMPUTE_ENVIRONMENT, env_id, {"ComputeResources": {"Type": Match.not_("SPOT")}})


def _actions(template: Template, kind: str) -> dict[str, int]:
    """reason -> seconds of the queue's time-limit actions (all CANCEL in RUNNABLE)."""
    actions = queue_value(template, kind, "JobStateTimeLimitActions")
    assert all(a["Action"] == "CANCEL" and a["State"] == "RUNNABLE" for a in actions)
    assert all(600 <= a["MaxTimeSeconds"] <= 86400 for a in actions), "the API allows 600..86400 seconds"
    return {a["Reason"]: a["MaxTimeSeconds"] for a in actions}


UNPLACEABLE = ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE")
CAPACITY = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"


def test_spot_first_queue_cancels_jobs_stuck_without_capacity(dev_training, dev):
    # The fallback handler resubmits exactly these cancellations to on-demand.
    assert _actions(dev_training, "spot-first")[CAPACITY] == dev.config.training.capacity_wait_minutes * 60
    assert CAPACITY_REASON == CAPACITY


@pytest.mark.parametrize("kind", ["spot-first", "on-demand", "multi-node"])
def test_every_queue_cancels_jobs_that_can_never_be_placed(dev_training, dev, kind):
    actions = _actions(dev_training, kind)
    for reason in UNPLACEABLE:
        assert actions[reason] == dev.config.training.unplaceable_wait_minutes * 60


@pytest.mark.parametrize("kind", ["on-demand", "multi-node"])
def test_on_demand_queues_cancel_jobs_without_capacity_after_their_own_wait(dev_training, dev, kind):
    assert _actions(dev_training, kind) == {
        CAPACITY: dev.config.training.on_demand_capacity_wait_minutes * 60,
        **{reason: dev.config.training.unplaceable_wait_minutes * 60 for reason in UNPLACEABLE},
    }

