"""Per-invocation state: the chosen profile, region and AWS profile, cached clients and the
deployment (SSM parameters) of the profile."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import aws, deployment, discovery


@dataclass
class Session:
    profile: str = "dev"
    project: str = discovery.DEFAULT_PROJECT
    region: str | None = None
    aws_profile: str | None = None
    _clients: dict = field(default_factory=dict, repr=False)
    _deployment: deployment.Deployment | None = field(default=None, repr=False)

    def client(self, service: str):
        if service not in self._clients:
            # looked up on the module at call time so tests can patch aws.make_client
            self._clients[service] = aws.make_client(service, region=self.region, aws_profile=self.aws_profile)
        return self._clients[service]

    @property
    def region_name(self) -> str:
        return self.client("batch").meta.region_name

    @property
    def deployment(self) -> deployment.Deployment:
        if self._deployment is None:
            self._deployment = deployment.load(self.client("ssm"), profile=self.profile, project=self.project)
        return self._deployment

    def get(self, key: str) -> str:
        return self.deployment.get(key)
