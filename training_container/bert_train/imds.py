"""The EC2 instance metadata service, IMDSv2 only (the launch template requires tokens and allows
the one extra hop a container needs): PUT a session token, then GET metadata paths with it.

The endpoint is `AWS_EC2_METADATA_SERVICE_ENDPOINT`, as botocore reads it (tests point it at a
fake on 127.0.0.1), and `AWS_EC2_METADATA_DISABLED=true` turns the service off, as in botocore.
Timeouts are short and retries few: off EC2 nothing answers, and the caller should fail in
seconds, not minutes. Proxies are never used (the service is link-local).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping

ENV_ENDPOINT = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
ENV_DISABLED = "AWS_EC2_METADATA_DISABLED"
DEFAULT_ENDPOINT = "http://169.254.169.254/"
TIMEOUT_SECONDS = 1.0
ATTEMPTS = 2  # per request
TOKEN_TTL_SECONDS = 60  # the token is used at once, for a handful of reads
TOKEN_PATH = "latest/api/token"
INSTANCE_TYPE_PATH = "latest/meta-data/instance-type"
LIFE_CYCLE_PATH = "latest/meta-data/instance-life-cycle"  # "spot" | "on-demand" | ...


class MetadataUnavailable(Exception):
    """str() is one line: what could not be read, from where, and why."""


class MetadataClient:
    def __init__(self, endpoint: str | None = None, *, timeout: float = TIMEOUT_SECONDS,
                 attempts: int = ATTEMPTS, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.disabled = env.get(ENV_DISABLED, "").strip().lower() == "true"
        self.endpoint = (endpoint or env.get(ENV_ENDPOINT) or DEFAULT_ENDPOINT).rstrip("/") + "/"
        self.timeout = timeout
        self.attempts = attempts
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._token: str | None = None

    def _request(self, method: str, path: str, headers: dict[str, str]) -> str:
        url = self.endpoint + path
        if self.disabled:
            raise MetadataUnavailable(f"cannot read {url}: ${ENV_DISABLED} is true")
        reason = ""
        for _ in range(self.attempts):
            request = urllib.request.Request(url, method=method, headers=headers)
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return str(response.read().decode("utf-8").strip())
            except urllib.error.HTTPError as exc:
                reason = f"HTTP {exc.code}"
                if exc.code < 500:
                    break  # an answer, not a failure: asking again gives the same one
            except (urllib.error.URLError, OSError) as exc:
                reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
        raise MetadataUnavailable(f"cannot read {url} ({reason})")

    def get(self, path: str) -> str:
        """The value at metadata `path` (e.g. INSTANCE_TYPE_PATH)."""
        if self._token is None:
            self._token = self._request("PUT", TOKEN_PATH,
                                        {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
        return self._request("GET", path, {"X-aws-ec2-metadata-token": self._token})

    def instance_type_and_life_cycle(self) -> tuple[str, str]:
        """("g5.xlarge", "spot"), say: what this instance is and how it is billed."""
        return self.get(INSTANCE_TYPE_PATH), self.get(LIFE_CYCLE_PATH)
