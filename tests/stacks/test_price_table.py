"""The price table (bertbatch/data/prices.json) prices every instance type a compute environment
of any profile can launch, for the purchase option that environment buys: the estimate, the
ledger and the cost cap all read it, and a type missing there is refused or left unpriced."""

from __future__ import annotations

import pytest

from bertbatch.cost.training_cost import load_table
from tests.stacks.conftest import COMPUTE_ENVIRONMENT, captured

PRICES = load_table("prices.json")


def launchable(synthesized) -> list[tuple[str, str, str]]:
    """(compute environment id, instance type, purchase option) of every managed environment."""
    rows = []
    for stack in synthesized.platform.stacks:
        template = synthesized.template(stack)
        for logical_id in template.find_resources(COMPUTE_ENVIRONMENT):
            compute = captured(template, COMPUTE_ENVIRONMENT, logical_id, lambda c: {"ComputeResources": c}).as_object()
            option = "spot" if compute["Type"] == "SPOT" else "on_demand"
            rows += [(logical_id, t, option) for t in compute["InstanceTypes"]]
    return rows


@pytest.mark.parametrize("profile", ["dev", "prod"])
def test_every_launchable_type_is_priced(profile, request):
    rows = launchable(request.getfixturevalue(profile))
    assert rows, "no compute environment found"
    table = {**PRICES["cpu_instances"], **PRICES["instances"]}
    missing = [f"{env}: {t} ({option})" for env, t, option in rows if option not in table.get(t, {})]
    assert missing == [], f"prices.json lacks: {missing}"

