"""Finds the deployed platform of a profile: reads the Training stack's SSM parameters.

Parameter names come from `bertbatch_contract.naming.Naming.parameter`; nobody types resource
names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bertbatch_contract import discovery, teams
from bertbatch_contract.naming import Naming

from .errors import BertBatchError


@dataclass
class Deployment:
    naming: Naming
    region: str
    values: dict[str, str] = field(default_factory=dict)  # discovery key -> value

    def get(self, key: str) -> str:
        value = self.values.get(key)
        if not value:
            raise BertBatchError(
                f"SSM parameter {self.naming.parameter(key)} is missing for profile {self.naming.profile!r} "
                f"in {self.region}: redeploy the Training stack"
            )
        return value

    @property
    def teams(self) -> teams.Teams:
        try:
            return teams.parse_teams(self.get(discovery.TEAMS))
        except ValueError as exc:
            raise BertBatchError(f"SSM parameter {self.naming.parameter(discovery.TEAMS)}: {exc}") from None

    @property
    def reservations(self) -> dict[str, discovery.Reservation]:
        """The reserved-capacity queues by name (none on a deployment from before them)."""
        try:
            return discovery.parse_reservations(self.values.get(discovery.RESERVATIONS) or "{}")
        except ValueError as exc:
            raise BertBatchError(f"SSM parameter {self.naming.parameter(discovery.RESERVATIONS)}: {exc}") from None

    @property
    def fsx_mount_path(self) -> str | None:
        value = self.values.get(discovery.FSX_MOUNT_PATH, "none")
        return None if value in ("", "none") else value


def load(ssm: Any, naming: Naming) -> Deployment:
    """Read every parameter under /<project>/<profile>/ (one paginated GetParametersByPath)."""
    prefix = naming.path
    region = str(ssm.meta.region_name)
    values: dict[str, str] = {}
    paginator = ssm.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=prefix.rstrip("/"), Recursive=True):
        for param in page.get("Parameters", []):
            name = param["Name"]
            if name.startswith(prefix):
                values[name[len(prefix):]] = param["Value"]
    if not values:
        raise BertBatchError(
            f"bert-batch is not deployed for profile {naming.profile!r} in {region} "
            f"(no SSM parameters under {prefix}): run 'make deploy' first"
        )
    return Deployment(naming=naming, region=region, values=values)
