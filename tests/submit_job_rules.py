"""SubmitJob's rules, checked against the job definition a request targets.

moto's Batch accepts any SubmitJob; AWS does not. These are the rules from the AWS Batch API
reference (SubmitJob, NodeOverrides, NodePropertyOverride, ContainerOverrides,
ResourceRequirement, ArrayProperties, JobTimeout, tagging, a fair-share queue's shareIdentifier)
that the CLI's requests can break.
`violations` returns one line per broken rule; `SubmitJobRules` checks every SubmitJob a boto3
client makes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
RESOURCE_TYPES = ("GPU", "MEMORY", "VCPU")
MIN_MEMORY_MIB = 4
MIN_ARRAY_SIZE, MAX_ARRAY_SIZE = 2, 10_000
MIN_TIMEOUT_SECONDS = 60
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 50, 128, 256
RESERVED_ENV_PREFIX = "AWS_BATCH"
SHARE_IDENTIFIER = re.compile(r"[A-Za-z0-9]{1,255}")


def node_range(text: str) -> tuple[int, int | None]:
    """`0:3` -> (0, 3); `n:` -> (n, None) (open upper bound); `:n` -> (0, n); `n` -> (n, n)."""
    if ":" not in text:
        return int(text), int(text)
    low, high = text.split(":", 1)
    return int(low or 0), (int(high) if high else None)


def container_violations(where: str, overrides: dict) -> list[str]:
    found = []
    for variable in overrides.get("environment", []):
        if variable["name"].startswith(RESERVED_ENV_PREFIX):
            found.append(f"{where}.environment: {variable['name']} starts with {RESERVED_ENV_PREFIX} (reserved)")
    for requirement in overrides.get("resourceRequirements", []):
        kind, value = requirement.get("type"), str(requirement.get("value", ""))
        if kind not in RESOURCE_TYPES:
            found.append(f"{where}.resourceRequirements: type {kind!r} is not one of {RESOURCE_TYPES}")
        elif not value.isdigit() or int(value) < (MIN_MEMORY_MIB if kind == "MEMORY" else 1):
            found.append(f"{where}.resourceRequirements: {kind} {value!r} is not a positive whole number")
    return found


def node_violations(request: dict, definition: dict) -> list[str]:
    props = definition["nodeProperties"]
    ranges = [node_range(r["targetNodes"]) for r in props["nodeRangeProperties"]]
    overrides = request.get("nodeOverrides") or {}
    nodes = props["numNodes"]
    found = []
    if "numNodes" in overrides:
        nodes = overrides["numNodes"]
        if not any(high is None for _, high in ranges):
            declared = ", ".join(r["targetNodes"] for r in props["nodeRangeProperties"])
            found.append(f"nodeOverrides.numNodes {nodes}: the job definition's node ranges ({declared}) have no "
                         "open upper bound (n:), so AWS rejects any numNodes override")
        if any(low >= nodes for low, _ in ranges):
            found.append(f"nodeOverrides.numNodes {nodes}: not above the lower bound of every node range")
        if props["mainNode"] >= nodes:
            found.append(f"nodeOverrides.numNodes {nodes}: not above the main node index {props['mainNode']}")
    for i, override in enumerate(overrides.get("nodePropertyOverrides", [])):
        where = f"nodeOverrides.nodePropertyOverrides[{i}]"
        low, high = node_range(override["targetNodes"])
        high = nodes - 1 if high is None else high
        if not 0 <= low <= high < nodes:
            found.append(f"{where}.targetNodes {override['targetNodes']!r}: outside nodes 0..{nodes - 1}")
        covered = all(any(lo <= n and (hi is None or n <= hi) for lo, hi in ranges) for n in range(low, high + 1))
        if not covered:
            found.append(f"{where}.targetNodes {override['targetNodes']!r}: not inside the job definition's "
                         "node ranges")
        found += container_violations(f"{where}.containerOverrides", override.get("containerOverrides") or {})
    if "arrayProperties" in request:
        found.append("arrayProperties: multi-node parallel jobs cannot be array jobs")
    return found


def violations(request: dict, definition: dict) -> list[str]:
    """Every rule `request` (SubmitJob's parameters) breaks for `definition` (API-shaped, with
    its nodeProperties)."""
    found = []
    if not JOB_NAME.match(request.get("jobName", "")):
        found.append(f"jobName {request.get('jobName')!r}: 1-128 letters, digits, - and _, starting with a letter "
                     "or digit")
    multi_node = definition["type"] == "multinode"
    if multi_node and "containerOverrides" in request:
        found.append("containerOverrides: not allowed for a multi-node job definition (use nodeOverrides)")
    if not multi_node and "nodeOverrides" in request:
        found.append("nodeOverrides: only for multi-node job definitions")
    if multi_node:
        found += node_violations(request, definition)
    found += container_violations("containerOverrides", request.get("containerOverrides") or {})

    commands = [definition.get("containerProperties", {}).get("command", [])]
    commands += [r["container"].get("command", []) for r in definition.get("nodeProperties", {}).get(
        "nodeRangeProperties", [])]
    known = set(definition.get("parameters") or {}) | {
        word[len("Ref::"):] for command in commands for word in command if word.startswith("Ref::")}
    for name in request.get("parameters") or {}:
        if name not in known:
            found.append(f"parameters.{name}: not a parameter of the job definition (never substituted)")

    size = (request.get("arrayProperties") or {}).get("size")
    if size is not None and not MIN_ARRAY_SIZE <= size <= MAX_ARRAY_SIZE:
        found.append(f"arrayProperties.size {size}: must be {MIN_ARRAY_SIZE}..{MAX_ARRAY_SIZE}")
    seconds = (request.get("timeout") or {}).get("attemptDurationSeconds")
    if seconds is not None and seconds < MIN_TIMEOUT_SECONDS:
        found.append(f"timeout.attemptDurationSeconds {seconds}: the minimum is {MIN_TIMEOUT_SECONDS}")
    tags = request.get("tags") or {}
    if len(tags) > MAX_TAGS:
        found.append(f"tags: {len(tags)} tags, the maximum is {MAX_TAGS}")
    for key, value in tags.items():
        if not 1 <= len(key) <= MAX_TAG_KEY or key.lower().startswith("aws:"):
            found.append(f"tags: key {key!r} must be 1-{MAX_TAG_KEY} characters, not starting with aws:")
        if len(value) > MAX_TAG_VALUE:
            found.append(f"tags: value of {key!r} is longer than {MAX_TAG_VALUE} characters")
    return found


def share_violations(request: dict, shares: set[str] | None) -> list[str]:
    """A queue with a fair-share policy (`shares`: its share identifiers) needs a shareIdentifier,
    a FIFO queue (`shares` None) refuses one. An identifier outside the policy is valid (weight 1)."""
    given = request.get("shareIdentifier")
    if shares is None:
        return [] if given is None else ["shareIdentifier: the queue has no scheduling policy, so AWS rejects one"]
    if given is None:
        return ["shareIdentifier: missing, and the queue's fair-share scheduling policy requires one"]
    if not SHARE_IDENTIFIER.fullmatch(given):
        return [f"shareIdentifier {given!r}: 1-255 letters and digits"]
    return []


@dataclass
class SubmitJobRules:
    """Checks every SubmitJob of the clients it is attached to; `checked` counts them."""

    definition_of: Callable[[str], dict]  # job definition ARN or name -> declared definition
    shares_of: Callable[[str], set[str] | None]  # job queue name or ARN -> share identifiers (None: FIFO)
    found: list[str] = field(default_factory=list)
    checked: int = 0

    def attach(self, client: Any) -> Any:
        client.meta.events.register("provide-client-params.batch.SubmitJob", self._check)
        return client

    def _check(self, params: dict, **_: Any) -> None:
        self.checked += 1
        try:
            definition = self.definition_of(params["jobDefinition"])
            shares = self.shares_of(params["jobQueue"])
        except KeyError:  # not a definition or queue of the platform: Batch itself rejects the request
            return
        found = violations(params, definition) + share_violations(params, shares)
        self.found += [f"SubmitJob {params.get('jobName')}: {line}" for line in found]


def check_cli_submits(monkeypatch: Any, rules: SubmitJobRules) -> list[dict]:
    """Every Batch client the CLI makes (bertbatch.core.aws_clients.make_client, as patched so far) is checked
    by `rules`; returns the list its SubmitJob parameters are recorded in."""
    from bertbatch.core import aws_clients as aws

    sent: list[dict] = []
    real = aws.make_client

    def make_client(service: str, **kwargs: Any) -> Any:
        client = real(service, **kwargs)
        if service == "batch":
            rules.attach(client)
            client.meta.events.register("provide-client-params.batch.SubmitJob",
                                        lambda params, **_: sent.append(copy.deepcopy(params)))
        return client

    monkeypatch.setattr(aws, "make_client", make_client)
    return sent
