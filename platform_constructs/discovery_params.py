"""Discovery: publish the names the CLI needs as SSM parameters and CloudFormation outputs.

The keys come from `bertbatch_contract.discovery` and the parameter names from
`Naming.parameter` (`/<project>/<profile>/<key>`), so the stack and the CLI agree by construction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from aws_cdk import CfnOutput
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from bertbatch_contract import discovery
from bertbatch_contract.naming import Naming


def _construct_id(key: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[/\-]", key))


class DiscoveryParameters(Construct):
    """One String parameter and one output per discovery key. Attribute `parameters`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        naming: Naming,
        values: Mapping[str, str],
        reservation_names: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        keys = dict(discovery.KEYS)
        for name in reservation_names:  # each reserved queue publishes keys of its own
            keys.update(discovery.reserved_keys(name))
        missing = sorted(set(keys) - set(values))
        unknown = sorted(set(values) - set(keys))
        if missing or unknown:
            raise ValueError(f"discovery values: missing {missing}, unknown {unknown}")
        self.parameters: dict[str, ssm.StringParameter] = {}
        for key, description in keys.items():
            cid = _construct_id(key)
            self.parameters[key] = ssm.StringParameter(
                self,
                cid,
                parameter_name=naming.parameter(key),
                string_value=values[key],
                description=f"{naming.project} {naming.profile}: {description}",
                tier=ssm.ParameterTier.STANDARD,
            )
            CfnOutput(scope, cid, value=values[key], description=description)
