"""The idle cost of the shipped profiles, computed from their session synths (bertbatch/cost/idle_cost.py)."""

from __future__ import annotations

from pathlib import Path

from bertbatch.cost import idle_cost
from bertbatch.cost.training_cost import load_table
from tests.stacks.conftest import Synthesized

DEV_IDLE_LIMIT_USD = 50.0  # issue 24: the dev profile idles at $50 a month or less


def idle_items(synth: Synthesized) -> dict[str, idle_cost.IdleItem]:
    # Every resource type of the templates must be priced or known to be free: idle_cost raises.
    templates = idle_cost.read_templates(Path(synth.assembly.directory))
    return {i.kind: i for i in idle_cost.idle_cost(templates, load_table("prices.json"))}


def test_dev_idles_at_50_dollars_a_month_or_less(dev):
    items = idle_items(dev)
    assert idle_cost.total(list(items.values())) <= DEV_IDLE_LIMIT_USD, {k: i.monthly for k, i in items.items()}


def test_dev_has_no_file_system_and_its_endpoints_in_one_az(dev):
    items = idle_items(dev)
    assert not any(kind.startswith("FSx") for kind in items)
    endpoints = len(dev.config.network.interface_endpoints)
    assert items["interface endpoint"].count == endpoints  # one AZ each


def test_prod_keeps_its_file_system_and_an_endpoint_in_every_az(prod):
    items = idle_items(prod)
    fsx = items["FSx for Lustre PERSISTENT_2/250"]
    assert (fsx.count, fsx.monthly) == (2400, 504.0)
    assert items["interface endpoint"].count == len(prod.config.network.interface_endpoints) * 3
    assert idle_cost.total(list(items.values())) == 620.8


def test_the_variants_nat_gateway_and_its_address_are_priced(dev_variant):
    items = idle_items(dev_variant)
    assert items["NAT gateway"].count == 1 and round(items["NAT gateway"].monthly, 2) == 32.85
    assert items["public IPv4 address"].count == 1
