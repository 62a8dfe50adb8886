"""EFA on the multi-node hosts: which instance types have it, and the interfaces and devices
that give a job every one of them.

An instance type with several network cards takes one EFA interface per card; attaching fewer
leaves that bandwidth unused (p4d.24xlarge: 4 x 100 Gbit/s, p5.48xlarge: 32 x 100 Gbit/s). The
primary interface (card 0) is EFA with ENA, carrying the host's IP address; the others are
EFA-only, so they take no address from the subnet. Each interface shows up on the host as one
verbs device, /dev/infiniband/uverbs<N>, which the job's container is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# EFA interfaces (one per network card) of the GPU instance types that support EFA.
EFA_INTERFACES: dict[str, int] = {
    **{f"g5.{size}": 1 for size in ("8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge")},
    **{f"g6.{size}": 1 for size in ("8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge")},
    "g6e.8xlarge": 1, "g6e.12xlarge": 1, "g6e.16xlarge": 1, "g6e.24xlarge": 2, "g6e.48xlarge": 4,
    "p3dn.24xlarge": 1,
    "p4d.24xlarge": 4, "p4de.24xlarge": 4,
    "p5.48xlarge": 32, "p5e.48xlarge": 32, "p5en.48xlarge": 16,
}
VERBS_DEVICE = "/dev/infiniband/uverbs{}"
# libfabric uses EFA only, and NCCL only the aws-ofi-nccl network (the name the image's plugin
# registers): a job whose host or image lacks EFA fails at start instead of running over TCP.
EFA_ENVIRONMENT = {"FI_PROVIDER": "efa", "NCCL_NET": "AWS Libfabric"}


def instance_family(instance_type: str) -> str:
    """'p4d' for 'p4d.24xlarge'."""
    return instance_type.split(".", 1)[0]


def mixed_families(instance_types: Sequence[str]) -> list[str]:
    """The families of `instance_types` when there are several (sorted), else []."""
    families = sorted({instance_family(t) for t in instance_types})
    return families if len(families) > 1 else []


def efa_problem(instance_types: Sequence[str]) -> str | None:
    """Why `instance_types` cannot share one EFA launch template, or None when they can."""
    for instance_type in instance_types:
        if instance_type not in EFA_INTERFACES:
            return f"{instance_type} has no EFA (training.efa is true)"
    first = instance_types[0]
    for other in instance_types[1:]:
        if EFA_INTERFACES[other] != EFA_INTERFACES[first]:
            return (f"{first} has {EFA_INTERFACES[first]} EFA interfaces and {other} {EFA_INTERFACES[other]}: "
                    "with training.efa, use types with the same count")
    return None


def efa_interface_count(instance_types: Sequence[str]) -> int:
    """The EFA interfaces every one of `instance_types` has (the config checked they agree)."""
    problem = efa_problem(instance_types)
    if problem:
        raise ValueError(problem)
    return EFA_INTERFACES[instance_types[0]]


def network_interfaces(count: int, security_group_id: str) -> list[dict[str, Any]]:
    """Launch template interfaces: EFA with ENA on card 0, EFA-only on cards 1..count-1, each
    in the EFA security group (launch templates with interfaces take groups only here)."""
    return [
        {
            "NetworkCardIndex": card,
            "DeviceIndex": 0,
            "InterfaceType": "efa" if card == 0 else "efa-only",
            "Groups": [security_group_id],
            "DeleteOnTermination": True,
        }
        for card in range(count)
    ]


def verbs_devices(count: int) -> list[str]:
    """The host's verbs device of each of `count` EFA interfaces."""
    return [VERBS_DEVICE.format(index) for index in range(count)]
