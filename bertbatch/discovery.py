"""Discovery contract: where the Training stack publishes the names the CLI needs.

The stack writes one SSM String parameter per key under `/<project>/<profile>/` and the same
values as CloudFormation outputs; the CLI reads the parameters. Nobody copies names by hand.
Pure Python: imported by the CDK app and the CLI.
"""

from __future__ import annotations

DEFAULT_PROJECT = "bert-batch"

# key (also the SSM parameter's last path segment) -> description
QUEUE_SPOT_FIRST = "queue/spot-first"
QUEUE_ON_DEMAND = "queue/on-demand"
QUEUE_MULTI_NODE = "queue/multi-node"
JOB_DEFINITION_SINGLE = "job-definition/bert-finetune"
JOB_DEFINITION_MULTI_NODE = "job-definition/bert-finetune-multinode"
DATA_BUCKET = "bucket/data"
ARTIFACTS_BUCKET = "bucket/artifacts"
LOG_GROUP = "log-group"
FSX_MOUNT_PATH = "fsx/mount-path"  # "none" when FSx is disabled
METRICS_NAMESPACE = "metrics/namespace"

KEYS: dict[str, str] = {
    QUEUE_SPOT_FIRST: "Job queue: Spot first, On-Demand when Spot is full",
    QUEUE_ON_DEMAND: "Job queue: On-Demand only",
    QUEUE_MULTI_NODE: "Job queue: multi-node parallel jobs (On-Demand, placement group)",
    JOB_DEFINITION_SINGLE: "Job definition ARN: single node, 1..N GPUs",
    JOB_DEFINITION_MULTI_NODE: "Job definition ARN: multi-node parallel (torchrun)",
    DATA_BUCKET: "Data bucket name (inputs under datasets/)",
    ARTIFACTS_BUCKET: "Artifacts bucket name (checkpoints/ and runs/)",
    LOG_GROUP: "CloudWatch Logs group of the training jobs",
    FSX_MOUNT_PATH: "Where FSx for Lustre is mounted in jobs ('none' when disabled)",
    METRICS_NAMESPACE: "CloudWatch namespace of the training metrics",
}


def parameter_prefix(profile: str, project: str = DEFAULT_PROJECT) -> str:
    return f"/{project}/{profile}/"


def parameter_name(key: str, *, profile: str, project: str = DEFAULT_PROJECT) -> str:
    """SSM parameter name of `key` for `profile`, e.g. /bert-batch/dev/queue/spot-first."""
    if key not in KEYS:
        raise KeyError(f"unknown discovery key {key!r}")
    return parameter_prefix(profile, project) + key


def resource_name(kind: str, *, profile: str, project: str = DEFAULT_PROJECT) -> str:
    """Physical name the stacks give queues and job definitions: <project>-<profile>-<kind>."""
    return f"{project}-{profile}-{kind}"
