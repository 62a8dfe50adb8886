"""Discovery: publish the names the CLI needs as SSM parameters and CloudFormation outputs.

Parameter names come from `bertbatch.discovery` (`/<project>/<profile>/<key>`), so the stack and
the CLI agree by construction.
"""

from __future__ import annotations

import re
from typing import Mapping

from aws_cdk import CfnOutput, aws_ssm as ssm
from constructs import Construct

from bertbatch import discovery


def _construct_id(key: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[/\-]", key))


class DiscoveryParameters(Construct):
    """One String parameter and one output per discovery key. Attribute `parameters`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        profile: str,
        values: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        missing = sorted(set(discovery.KEYS) - set(values))
        unknown = sorted(set(values) - set(discovery.KEYS))
        if missing or unknown:
            raise ValueError(f"discovery values: missing {missing}, unknown {unknown}")
        self.parameters: dict[str, ssm.StringParameter] = {}
        for key, description in discovery.KEYS.items():
            cid = _construct_id(key)
            self.parameters[key] = ssm.StringParameter(
                self,
                cid,
                parameter_name=discovery.parameter_name(key, profile=profile, project=project),
                string_value=values[key],
                description=f"{project} {profile}: {description}",
                tier=ssm.ParameterTier.STANDARD,
            )
            CfnOutput(scope, cid, value=values[key], description=description)
