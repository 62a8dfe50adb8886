"""Resource naming: every physical name is derived from (project, profile) here."""

from __future__ import annotations

from dataclasses import dataclass

from . import discovery

DEFAULT_PROJECT = "bert-batch"


@dataclass(frozen=True)
class Naming:
    """Names of one deployment, e.g. Naming("bert-batch", "dev").

    resource("spot-first") -> bert-batch-dev-spot-first (queues, job definitions, functions,
    alarms); path -> /bert-batch/dev/ (SSM parameters, log groups).
    """

    profile: str
    project: str = DEFAULT_PROJECT

    @property
    def prefix(self) -> str:
        """<project>-<profile>: the stem of every resource name."""
        return f"{self.project}-{self.profile}"

    def resource(self, kind: str) -> str:
        """<project>-<profile>-<kind>."""
        return f"{self.prefix}-{kind}"

    @property
    def path(self) -> str:
        """/<project>/<profile>/: the SSM parameter and log group prefix."""
        return f"/{self.project}/{self.profile}/"

    def log_group(self, kind: str) -> str:
        """/<project>/<profile>/<kind>."""
        return self.path + kind

    def events_log_group(self, kind: str) -> str:
        """/aws/events/<project>/<profile>/<kind>: EventBridge can write only under /aws/events/."""
        return f"/aws/events/{self.project}/{self.profile}/{kind}"

    def key_alias(self, kind: str = "") -> str:
        """alias/<project>-<profile>[-<kind>]."""
        return f"alias/{self.resource(kind) if kind else self.prefix}"

    def parameter(self, key: str) -> str:
        """SSM parameter name of discovery `key`, e.g. /bert-batch/dev/queue/spot-first."""
        if not discovery.is_key(key):
            raise KeyError(f"unknown discovery key {key!r}")
        return self.path + key
