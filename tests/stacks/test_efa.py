"""platform_constructs/efa.py: the EFA instance types and their interfaces, and the docs' table
of them."""

from __future__ import annotations

import re

from platform_constructs.efa import EFA_INTERFACES, network_interfaces, verbs_devices
from tests.conftest import REPO


def _documented_interfaces() -> dict[str, int]:
    """instance type -> EFA interfaces, from the table in docs/deploy.md's EFA section."""
    text = (REPO / "docs" / "deploy.md").read_text()
    section = text.split("## EFA for multi-node jobs", 1)[1].split("\n## ", 1)[0]
    table: dict[str, int] = {}
    for types, count in re.findall(r"^\| (`[^|]+) \| (\d+) \|$", section, re.M):
        table.update({t: int(count) for t in re.findall(r"`([^`]+)`", types)})
    return table


def test_the_docs_list_every_efa_type_with_its_interface_count():
    assert _documented_interfaces() == EFA_INTERFACES


def test_p5_gets_an_interface_on_each_of_its_32_network_cards():
    interfaces = network_interfaces(EFA_INTERFACES["p5.48xlarge"], "sg-1")
    assert [i["NetworkCardIndex"] for i in interfaces] == list(range(32))
    # Only card 0's interface carries an IP address (EFA with ENA); the rest are EFA-only.
    assert [i["InterfaceType"] for i in interfaces] == ["efa"] + ["efa-only"] * 31
    assert verbs_devices(2) == ["/dev/infiniband/uverbs0", "/dev/infiniband/uverbs1"]
