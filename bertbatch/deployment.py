"""Finds the deployed platform of a profile: reads the Training stack's SSM parameters.

Parameter names come from `bertbatch.discovery`; nobody types resource names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import discovery
from .errors import BertBatchError


@dataclass
class Deployment:
    profile: str
    region: str
    project: str = discovery.DEFAULT_PROJECT
    values: dict[str, str] = field(default_factory=dict)  # discovery key -> value

    def get(self, key: str) -> str:
        value = self.values.get(key)
        if not value:
            name = discovery.parameter_name(key, profile=self.profile, project=self.project)
            raise BertBatchError(
                f"SSM parameter {name} is missing for profile {self.profile!r} in {self.region}: "
                "redeploy the Training stack"
            )
        return value

    @property
    def fsx_mount_path(self) -> str | None:
        value = self.values.get(discovery.FSX_MOUNT_PATH, "none")
        return None if value in ("", "none") else value


def load(ssm, *, profile: str, project: str = discovery.DEFAULT_PROJECT) -> Deployment:
    """Read every parameter under /<project>/<profile>/ (one paginated GetParametersByPath)."""
    prefix = discovery.parameter_prefix(profile, project)
    region = ssm.meta.region_name
    values: dict[str, str] = {}
    paginator = ssm.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=prefix.rstrip("/"), Recursive=True):
        for param in page.get("Parameters", []):
            name = param["Name"]
            if name.startswith(prefix):
                values[name[len(prefix):]] = param["Value"]
    if not values:
        raise BertBatchError(
            f"bert-batch is not deployed for profile {profile!r} in {region} "
            f"(no SSM parameters under {prefix}): run 'make deploy' first"
        )
    return Deployment(profile=profile, region=region, project=project, values=values)
