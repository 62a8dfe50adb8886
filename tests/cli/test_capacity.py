"""Capacity-aware submit and estimate: requests no instance type of the queue can hold are
refused before SubmitJob, and estimate recommends only what the queues can place. The moto
platform is the dev profile's templates: 1- and 4-GPU g5/g6/g6e types, multi-node g5.12xlarge
capped at 96 vCPUs."""

from __future__ import annotations

import json

import pytest

from bertbatch.jobs import queue_capacity as capacity
from bertbatch_contract import discovery
from bertbatch_contract.discovery import ComputeCapacity
from bertbatch_contract.naming import Naming

from .helpers import one_line_error

pytestmark = pytest.mark.usefixtures("default_model_staged")

TABLE = capacity.instance_table()


def put_inputs(platform) -> str:
    platform.put_dataset("datasets/dev.tsv")
    return platform.put_dataset("datasets/train.tsv")


def set_capacity(platform, kind: str, *environments: ComputeCapacity) -> None:
    platform.client("ssm").put_parameter(Name=Naming(platform.profile).parameter(discovery.capacity_key(kind)),
                                         Value=discovery.capacity_value(environments), Type="String", Overwrite=True)


# --- submit ------------------------------------------------------------------------------------
def test_more_gpus_than_any_instance_type_is_refused(platform, bb, submit_spy):
    train = put_inputs(platform)
    one_line_error(bb("submit", "--train", train, "--gpus", "8"),
                          f"queue {platform.names[discovery.QUEUE_SPOT_FIRST]} cannot place 8 GPUs, 4 vCPUs, 15000 MiB",
                          "largest instance type is g6e.12xlarge (4 GPUs, 48 vCPUs", "training.gpu_instance_types")
    assert submit_spy == []


def test_four_gpus_fit_a_12xlarge(platform, bb, submit_spy):
    r = bb("submit", "--train", put_inputs(platform), "--gpus", "4")
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["containerOverrides"]["resourceRequirements"] == [{"type": "GPU", "value": "4"}]


def test_nodes_over_the_multi_node_cap_are_refused(platform, bb, submit_spy):
    one_line_error(bb("submit", "--train", put_inputs(platform), "--nodes", "3"),
                   f"queue {platform.names[discovery.QUEUE_MULTI_NODE]} cannot place 3 nodes of 1 GPU",
                   "each node takes a g5.12xlarge (48 vCPUs), 144 vCPUs in all, over the 96-vCPU cap",
                   "(at most 2 nodes): raise training.multinode_max_vcpus")
    assert submit_spy == []


def test_multi_node_gpus_over_the_instance_are_refused(platform, bb, submit_spy):
    one_line_error(bb("submit", "--train", put_inputs(platform), "--nodes", "2", "--gpus", "8"),
                   "cannot place 2 nodes of 8 GPUs", "g5.12xlarge (4 GPUs", "training.multinode_instance_types")
    assert submit_spy == []


def test_an_instance_over_the_environment_cap_is_refused_with_the_cap_key(platform, bb, submit_spy):
    set_capacity(platform, "on-demand", ComputeCapacity("od", ("g5.xlarge", "g5.12xlarge"), 32, spot=False))
    one_line_error(bb("submit", "--train", put_inputs(platform), "--on-demand", "--gpus", "4"),
                   "g5.12xlarge holds it but has 48 vCPUs, over the 32-vCPU cap of od",
                   "raise training.on_demand_max_vcpus")
    assert submit_spy == []


def test_capacity_from_describe_compute_environments_when_ssm_has_none(platform, bb, submit_spy):
    ssm = platform.client("ssm")
    ssm.delete_parameter(Name=Naming(platform.profile).parameter(discovery.capacity_key("spot-first")))
    one_line_error(bb("submit", "--train", put_inputs(platform), "--gpus", "8"),
                   "cannot place 8 GPUs", "largest instance type is g6e.12xlarge")
    assert submit_spy == []


def test_malformed_capacity_parameter_is_one_line(platform, bb):
    platform.client("ssm").put_parameter(Name=Naming(platform.profile).parameter(discovery.capacity_key("spot-first")),
                                         Value="{not json", Type="String", Overwrite=True)
    one_line_error(bb("submit", "--train", put_inputs(platform)), "capacity/spot-first", "redeploy the Training stack")


# --- the check itself ---------------------------------------------------------------------------
def test_a_family_means_every_size_of_it():
    env = ComputeCapacity("e", ("g5",), 192, spot=True)
    capacity.check(queue_kind="spot-first", queue="q", environments=[env], need=capacity.Need(gpus=8))
    with pytest.raises(capacity.BertBatchError, match="largest instance type is g5.48xlarge"):
        capacity.check(queue_kind="spot-first", queue="q", environments=[env],
                       need=capacity.Need(gpus=8, memory_mib=800_000))


def test_unknown_instance_types_are_never_refused():
    env = ComputeCapacity("e", ("optimal",), 4, spot=False)
    capacity.check(queue_kind="on-demand", queue="q", environments=[env], need=capacity.Need(gpus=8, vcpus=500))


def test_memory_and_vcpus_are_checked():
    env = ComputeCapacity("e", ("g5.xlarge",), 64, spot=False)
    capacity.check(queue_kind="on-demand", queue="q", environments=[env],
                   need=capacity.Need(gpus=1, vcpus=4, memory_mib=15000))
    for need in (capacity.Need(gpus=1, vcpus=5), capacity.Need(gpus=1, memory_mib=16385)):
        with pytest.raises(capacity.BertBatchError, match="cannot place"):
            capacity.check(queue_kind="on-demand", queue="q", environments=[env], need=need)


def test_second_environment_can_place_what_the_first_cannot():
    small = ComputeCapacity("spot", ("g5.xlarge",), 64, spot=True)
    large = ComputeCapacity("od", ("g5.12xlarge",), 48, spot=False)
    capacity.check(queue_kind="spot-first", queue="q", environments=[small, large], need=capacity.Need(gpus=4))


def test_shipped_instance_table_is_consistent():
    for name, t in TABLE.items():
        assert t.name == name and 1 <= t.gpus <= 8 and t.vcpus >= 4 and t.memory_mib >= 16 * 1024, name
    # the types the platform's config defaults name are all known
    for name in ("g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6.2xlarge", "g6e.xlarge", "g5.12xlarge", "g6.12xlarge",
                 "g6e.12xlarge", "p4d.24xlarge", "p5.48xlarge"):
        assert name in TABLE, name
    assert (TABLE["g5.12xlarge"].gpus, TABLE["g5.12xlarge"].vcpus, TABLE["g5.12xlarge"].memory_mib) == (4, 48, 196608)


# --- estimate ------------------------------------------------------------------------------------
def estimate_json(bb, *args):
    r = bb("estimate", "--rows", "67349", "--epochs", "3", "-o", "json", *args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    return data, {(o["instance_type"], o["pricing"]): o for o in data["options"]}


def test_estimate_recommends_only_placeable_options(platform, bb):
    data, opts = estimate_json(bb)
    assert data["capacity_checked"] is True
    assert data["choice"]["placeable"] is True
    assert opts[("p4d.24xlarge", "spot")]["placeable"] is False
    assert opts[("p4d.24xlarge", "spot")]["change"] == "add p4d.24xlarge to training.gpu_instance_types"
    assert opts[("g5.12xlarge", "on-demand")]["placeable"] is True
    # p5 is the fastest: with a deadline only it meets, nothing placeable is left
    fastest = min(data["options"], key=lambda o: o["hours"])
    assert fastest["instance_type"] == "p5.48xlarge"


def test_estimate_deadline_only_an_unplaceable_option_meets_is_refused(platform, bb):
    data, _ = estimate_json(bb)
    p5 = min(o["hours"] for o in data["options"] if o["instance_type"] == "p5.48xlarge")
    placeable_fastest = min(o["hours"] for o in data["options"] if o["placeable"])
    assert p5 < placeable_fastest
    between = (p5 + placeable_fastest) / 2
    one_line_error(bb("estimate", "--rows", "67349", "--epochs", "3", "--max-hours", f"{between:.4f}"),
                   "no option finishes within --max-hours")


def test_estimate_multi_node_names_the_cap_to_raise(platform, bb):
    data, opts = estimate_json(bb, "--nodes", "2")
    assert data["choice"]["instance_type"] == "g5.12xlarge"
    one_line_error(bb("estimate", "--rows", "67349", "--nodes", "3", "--instance-type", "g5.12xlarge"),
                   "no option can be placed", "raise training.multinode_max_vcpus to 144")


def test_estimate_table_shows_placeability(platform, bb):
    r = bb("estimate", "--rows", "67349")
    assert r.exit_code == 0, r.output
    assert "PLACEABLE" in r.output
    p5 = [line for line in r.output.splitlines() if "p5.48xlarge" in line]
    assert p5 and all("no: add p5.48xlarge to training.gpu_instance_types" in line for line in p5)
    assert "Would choose:" in r.output


def test_estimate_without_a_deployment_points_to_offline(aws, bb):
    one_line_error(bb("estimate", "--rows", "1000"), "not deployed", "--offline")
