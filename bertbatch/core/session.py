"""Per-invocation state, kept in click's `ctx.obj`: the chosen profile, project, region and AWS
profile, the boto3 clients made from them and the deployment (SSM parameters) of the profile.

Nothing is read from AWS until a command asks, so commands that fail their local checks make
no AWS call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from bertbatch_contract.naming import DEFAULT_PROJECT, Naming

from . import aws_clients as aws
from . import deployment


@dataclass
class Session:
    profile: str = "dev"
    project: str = DEFAULT_PROJECT
    region: str | None = None
    aws_profile: str | None = None
    # How commands that poll (watch, logs --follow, predict --wait) wait: tests hand in their own.
    sleep: Callable[[float], None] = time.sleep
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _deployment: deployment.Deployment | None = field(default=None, repr=False)

    @property
    def naming(self) -> Naming:
        return Naming(self.profile, self.project)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            # looked up on the module at call time so tests can patch aws.make_client
            self._clients[service] = aws.make_client(service, region=self.region, aws_profile=self.aws_profile)
        return self._clients[service]

    @property
    def region_name(self) -> str:
        return str(self.client("batch").meta.region_name)

    @property
    def deployment(self) -> deployment.Deployment:
        if self._deployment is None:
            self._deployment = deployment.load(self.client("ssm"), self.naming)
        return self._deployment

    def get(self, key: str) -> str:
        return self.deployment.get(key)


# Passes the root group's Session (ctx.obj) to a command as its first argument.
pass_session = click.make_pass_decorator(Session)
