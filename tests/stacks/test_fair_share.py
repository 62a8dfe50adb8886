"""Fair share: one scheduling policy with the teams' shares, attached to every job queue."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Capture, Match

from bertbatch_contract import discovery, teams
from stacks.config import ConfigError
from tests.stacks.conftest import config_for


@pytest.mark.parametrize(("training", "queue_count"), [
    ("dev_training", 4),  # spot-first, on-demand, multi-node, prepare
    ("prod_training", 4),
    ("variant_training", 6),  # and the two reserved-capacity queues
])
def test_every_queue_schedules_by_the_policy(training, queue_count, request):
    template = request.getfixturevalue(training)
    template.resource_count_is("AWS::Batch::SchedulingPolicy", 1)
    (policy_id,) = template.find_resources("AWS::Batch::SchedulingPolicy")
    template.resource_count_is("AWS::Batch::JobQueue", queue_count)
    template.all_resources_properties(
        "AWS::Batch::JobQueue", {"SchedulingPolicyArn": Match.exact({"Fn::GetAtt": [policy_id, "Arn"]})})


def test_default_policy_has_one_default_team_and_no_reservation(dev_training):
    dev_training.has_resource_properties("AWS::Batch::SchedulingPolicy", {
        "FairsharePolicy": {
            "ShareDistribution": [{"ShareIdentifier": teams.DEFAULT_TEAM, "WeightFactor": 1}],
            "ComputeReservation": Match.absent(),
            "ShareDecaySeconds": Match.absent(),
        },
    })


def test_weights_become_inverse_weight_factors(variant_training):
    variant_training.has_resource_properties("AWS::Batch::SchedulingPolicy", {
        "FairsharePolicy": {
            # weight 4 -> factor 0.25: four times the vCPUs of weight 1 while both wait
            "ShareDistribution": [{"ShareIdentifier": "nlp", "WeightFactor": 0.25},
                                  {"ShareIdentifier": "vision", "WeightFactor": 1}],
            "ComputeReservation": 25,
            "ShareDecaySeconds": 3600,
        },
    })


def test_the_teams_are_published_for_the_cli(variant_training):
    value = Capture()
    variant_training.has_resource_properties("AWS::SSM::Parameter", {
        "Name": Match.string_like_regexp(f"/{discovery.TEAMS}$"), "Value": value,
    })
    published = teams.parse_teams(value.as_string())
    assert (dict(published.weights), published.default) == ({"nlp": 4.0, "vision": 1.0}, "vision")
    assert json.loads(value.as_string())["default"] == "vision"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"teams.weights": '{"data-science": 1}', "teams.default": "datascience"}, "team 'data-science': a team name is"),
    ({"teams.weights": '{"nlp": 2000}', "teams.default": "nlp"}, "weight 2000 is outside"),
    ({"teams.default": "nlp"}, "teams.default 'nlp' is not in teams.weights (default)"),
    ({"teams.compute_reservation_percent": "100"}, "teams.compute_reservation_percent"),
])
def test_bad_teams_stop_synth_with_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        config_for("dev", **overrides)
    assert "\n" not in str(raised.value)
