"""submit --reservation on the platform built from templates with two reserved queues (moto):
the job goes to that queue under the team's share; an unknown name is refused before submitting."""

from __future__ import annotations

import pytest

from bertbatch.cost import ledger
from bertbatch_contract import discovery
from tests.cli.test_doctor import RESERVED
from tests.cli.test_submit_rules import put_inputs
from tests.platform_from_templates import deploy
from tests.submit_job_rules import SubmitJobRules, check_cli_submits


@pytest.fixture
def reserved(aws, monkeypatch):
    """The RESERVED platform; every SubmitJob is checked and recorded."""
    deployed = deploy(overrides=RESERVED)
    checker = SubmitJobRules(definition_of=deployed.job_definition, shares_of=deployed.share_identifiers)
    sent = check_cli_submits(monkeypatch, checker)
    put_inputs(deployed)
    return deployed, checker, sent


def test_submit_reservation_goes_to_the_reserved_queue(reserved, bb):
    deployed, checker, sent = reserved
    result = bb("submit", "--reservation", "p5")
    assert result.exit_code == 0, result.output
    (request,) = sent
    assert request["jobQueue"] == deployed.names[discovery.reserved_queue_key("p5")] == "bert-batch-dev-reserved-p5"
    assert request["jobDefinition"] == deployed.names[discovery.JOB_DEFINITION_SINGLE]
    assert request["shareIdentifier"] == "default"
    assert checker.found == []


@pytest.mark.parametrize(("args", "error"), [
    (["--reservation", "p4"], "Error: --reservation p4: not one of this deployment's reservations (g6, p5)"),
    (["--reservation", "p5", "--on-demand"],
     "Error: --reservation and --on-demand: pick one (a reserved queue is On-Demand already)"),
])
def test_bad_reservation_is_refused_in_one_line_before_submitting(reserved, bb, args, error):
    _, _, sent = reserved
    result = bb("submit", *args)
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == error
    assert sent == []


def test_a_job_on_a_reservation_is_priced_on_demand(reserved):
    from tests.cli.conftest import client

    deployed, _, _ = reserved
    queue = deployed.names[discovery.reserved_queue_key("g6")]
    (environment,) = ledger.Environments(client("batch")).of_queue(queue)
    assert environment.pricing == ledger.ON_DEMAND
    assert environment.instance_types == ("g6.12xlarge",)
