"""The platform configuration: one typed, validated model.

Loaded from `cdk.json` context: `profiles.<name>` holds a profile, `-c profile=NAME` picks it
(default `dev`) and `-c some.key=value` overrides any key. Validation happens before any
construct is built; `load_config` raises ConfigError with one line naming the key, the bad
value and what is allowed.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from aws_cdk import RemovalPolicy
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bertbatch_contract import discovery, job, teams
from bertbatch_contract.naming import Naming
from platform_constructs.batch_compute import GpuComputeSettings
from platform_constructs.efa import efa_interface_count, efa_problem, mixed_families
from platform_constructs.logs import LOG_RETENTION_DAYS
from platform_constructs.network import INTERFACE_ENDPOINT_SERVICES, JOB_HOST_ENDPOINTS

# The interface endpoints a profile may ask for (the names the network construct knows).
INTERFACE_ENDPOINTS = tuple(INTERFACE_ENDPOINT_SERVICES)
COMPLIANCE_PACKS = ("nist-800-53-r5", "hipaa")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[0-9]*[a-z0-9]+$")
_AZ = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")
# local@domain: no empty, leading or trailing dots in the local part; DNS labels in the domain.
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
# AWS tags: keys 1-128 and values 0-256 characters of letters, digits, spaces and + - = . _ : / @;
# the aws: prefix is reserved for AWS.
_TAG_CHARS = re.compile(r"^[\w\s+\-=.:/@]*$")
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256
# Ceilings that catch a typo (an extra zero or three) before it reaches AWS.
MAX_VCPUS = 100_000
MAX_TIMEOUT_MINUTES = 14 * 24 * 60  # two weeks
MAX_BUDGET_USD = 100_000_000
MAX_BUDGET_EMAILS = 10  # AWS Budgets: 10 email subscribers (and one SNS topic) per notification
# SageMaker managed MLflow: the tracking server's ARN is the tracking URI (with the sagemaker-mlflow
# plugin in the image); the name follows CreateMlflowTrackingServer's TrackingServerName pattern.
_SAGEMAKER_MLFLOW_ARN = re.compile(
    r"^arn:aws[a-z-]*:sagemaker:[a-z]{2}(-[a-z]+)+-\d:\d{12}:mlflow-tracking-server/[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$"
)
MAX_TRACKING_URI = 2048
TRACKING_URI_RULE = (
    "must be https://host[:port][/path], http://... (a server inside the VPC), or a SageMaker MLflow "
    "tracking server ARN (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)"
)


class ConfigError(ValueError):
    """A configuration value is invalid. str() is the one line shown to the user."""


class _Model(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default. Numbers must be
    # finite (json reads Infinity and 1e999 as inf, which jsii cannot pass on).
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, coerce_numbers_to_str=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 for an int field; `-c training.spot_max_vcpus=true` is a mistake.
        annotation = cls.model_fields[info.field_name].annotation if info.field_name else None
        numeric = annotation in (int, float) or annotation in (list[int], list[float])
        items = value if isinstance(value, list) else [value]
        if numeric and any(isinstance(item, bool) for item in items):
            raise ValueError("must be a number, not true or false")
        return value


class ExistingVpc(_Model):
    """Import an existing VPC from IDs (no lookup: synth stays offline)."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$")
    availability_zones: list[str] = Field(min_length=1)
    private_subnet_ids: list[str] = Field(min_length=1)
    private_subnet_route_table_ids: list[str] = Field(default_factory=list)
    vpc_cidr: str = "10.0.0.0/16"
    # Whether the private subnets route to the internet (NAT gateway or proxy); published for
    # the CLI, which refuses hub model names that are not staged when there is no egress.
    internet_egress: bool = False

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        return _check_cidr(v, smallest_prefix=28)

    @field_validator("private_subnet_ids")
    @classmethod
    def _subnet_ids(cls, v: list[str]) -> list[str]:
        for s in v:
            if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", s):
                raise ValueError(f"{s!r} is not a subnet id (subnet-...)")
        return v

    @model_validator(mode="after")
    def _one_subnet_per_az(self) -> ExistingVpc:
        if len(self.private_subnet_ids) != len(self.availability_zones):
            raise ValueError("needs one private subnet id per availability zone")
        return self


class NetworkConfig(_Model):
    # Either az_count (CDK picks dummy AZs offline: env-agnostic stack) or explicit AZs.
    az_count: int = Field(default=2, ge=1, le=6)
    availability_zones: list[str] = Field(default_factory=list)
    vpc_cidr: str = "10.42.0.0/16"
    nat_gateways: int = Field(default=0, ge=0, le=6)
    interface_endpoints: list[str] = Field(default_factory=lambda: list(JOB_HOST_ENDPOINTS))
    # AZs whose subnets hold the interface endpoints (None: every AZ of the VPC).
    interface_endpoint_az_count: int | None = Field(default=None, ge=1, le=6)
    flow_log_retention_days: int = 30
    existing_vpc: ExistingVpc | None = None

    @field_validator("availability_zones")
    @classmethod
    def _azs(cls, v: list[str]) -> list[str]:
        for az in v:
            if not _AZ.fullmatch(az):
                raise ValueError(f"{az!r} is not an availability zone name (e.g. us-east-1a)")
        if len(set(v)) != len(v):
            raise ValueError("availability zones must be unique")
        return v

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        # /24 at most: the VPC is cut into one private (and maybe one public) subnet per AZ.
        return _check_cidr(v, smallest_prefix=24)

    @field_validator("interface_endpoints")
    @classmethod
    def _endpoints(cls, v: list[str]) -> list[str]:
        for e in v:
            if e not in INTERFACE_ENDPOINTS:
                raise ValueError(f"{e!r} is not one of {', '.join(INTERFACE_ENDPOINTS)}")
        return v

    @field_validator("flow_log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        return _check_retention(v)


class FsxConfig(_Model):
    enabled: bool = True
    deployment_type: Literal["SCRATCH_2", "PERSISTENT_2"] = "SCRATCH_2"
    # SCRATCH_2 / PERSISTENT_2: 1200 GiB or a multiple of 2400 GiB.
    storage_capacity_gib: int = 1200
    # PERSISTENT_2 only: MB/s per TiB.
    throughput_per_unit_storage: Literal[125, 250, 500, 1000] = 125

    @field_validator("storage_capacity_gib")
    @classmethod
    def _capacity(cls, v: int) -> int:
        if v != 1200 and (v <= 0 or v % 2400):
            raise ValueError("must be 1200 or a multiple of 2400 (GiB)")
        return v


class DataConfig(_Model):
    checkpoint_expiry_days: int = Field(default=30, ge=1)
    # predictions/ of the artifacts bucket: 0 keeps them (they are results, not scratch).
    prediction_expiry_days: int = Field(default=0, ge=0, le=36500)
    noncurrent_version_expiry_days: int = Field(default=30, ge=1)
    fsx: FsxConfig = Field(default_factory=FsxConfig)


_RESOURCE_GROUP_ARN = re.compile(r"^arn:aws[a-z-]*:resource-groups:[a-z]{2}(-[a-z]+)+-\d:\d{12}:group/[\w.-]{1,128}$")


class ReservationConfig(_Model):
    """A dedicated compute environment and queue (`<project>-<profile>-reserved-<name>`) that
    launches into one On-Demand Capacity Reservation (odcr) or EC2 Capacity Block for ML."""

    name: str
    kind: Literal["odcr", "capacity-block"]
    # cr-<17 hex>: the reservation (or Capacity Block) to target; or, for an ODCR, a resource
    # group of reservations by ARN instead.
    reservation_id: str = Field(default="", pattern=r"^(cr-[0-9a-f]{17})?$")
    resource_group_arn: str = ""
    instance_type: str
    max_vcpus: int = Field(ge=1, le=MAX_VCPUS)
    # The private subnet (index, as training.multinode_subnet_index) in the reservation's AZ.
    subnet_index: int = Field(default=0, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not discovery.RESERVATION_NAME.fullmatch(v):
            raise ValueError(f"{v!r}: a reservation name is {discovery.RESERVATION_NAME_RULE}")
        return v

    @field_validator("instance_type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not _INSTANCE_TYPE.fullmatch(v):
            raise ValueError(f"{v!r} is not an EC2 instance type (e.g. p5.48xlarge)")
        return v

    @field_validator("resource_group_arn")
    @classmethod
    def _group(cls, v: str) -> str:
        if v and not _RESOURCE_GROUP_ARN.fullmatch(v):
            raise ValueError(f"{v!r} is not a resource group ARN "
                             "(arn:aws:resource-groups:<region>:<account>:group/<name>)")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> ReservationConfig:
        key = f"training.reservations.{self.name}"
        if bool(self.reservation_id) == bool(self.resource_group_arn):
            raise _KeyedError(f"{key}.reservation_id", self.reservation_id,
                              "set exactly one of reservation_id (cr-...) and resource_group_arn")
        if self.kind == "capacity-block" and not self.reservation_id:
            # EC2 launches into a Capacity Block by its reservation id.
            raise _KeyedError(f"{key}.resource_group_arn", self.resource_group_arn,
                              "a capacity-block is targeted by its reservation_id (cr-...), not a group")
        return self

    def contract(self) -> discovery.Reservation:
        return discovery.Reservation(name=self.name, kind=self.kind, instance_type=self.instance_type,
                                     reservation_id=self.reservation_id, resource_group_arn=self.resource_group_arn)


class TrainingConfig(_Model):
    # Prebuilt image URI; empty -> build training_container/ as a CDK image asset at deploy.
    image_uri: str = ""
    gpu_instance_types: list[str] = Field(
        # 1-GPU sizes, and 4-GPU sizes so `--gpus 2..4` places on one node (torchrun).
        default_factory=lambda: [
            "g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6.2xlarge", "g6e.xlarge",
            "g5.12xlarge", "g6.12xlarge", "g6e.12xlarge",
        ],
        min_length=1,
    )
    multinode_instance_types: list[str] = Field(default_factory=lambda: ["g5.12xlarge"], min_length=1)
    spot_max_vcpus: int = Field(default=64, ge=1, le=MAX_VCPUS)
    # 48: room for one 4-GPU instance (g5/g6/g6e.12xlarge have 48 vCPUs).
    on_demand_max_vcpus: int = Field(default=48, ge=1, le=MAX_VCPUS)
    multinode_max_vcpus: int = Field(default=96, ge=1, le=MAX_VCPUS)
    multinode_nodes: int = Field(default=2, ge=2, le=64)
    # AZ of the multi-node compute environment (placement groups are single-AZ); index into the
    # VPC's private subnets.
    multinode_subnet_index: int = Field(default=0, ge=0)
    efa: bool = False
    root_volume_gib: int = Field(default=100, ge=30, le=16384)
    gpus_per_job: int = Field(default=1, ge=1, le=8)
    # The largest GPU instances have 192 vCPUs and 2 TiB of memory.
    vcpus_per_job: int = Field(default=4, ge=1, le=192)
    memory_mib_per_job: int = Field(default=15000, ge=1024, le=2_097_152)
    shared_memory_mib: int = Field(default=4096, ge=64, le=2_097_152)
    # Per node of a multi-node job (one node per instance): the default fits g5.12xlarge
    # (4 GPUs, 48 vCPUs, 192 GiB) with room for the ECS agent.
    multinode_gpus_per_node: int = Field(default=4, ge=1, le=8)
    multinode_vcpus_per_node: int = Field(default=44, ge=1, le=192)
    multinode_memory_mib_per_node: int = Field(default=180000, ge=1024, le=2_097_152)
    retry_attempts: int = Field(default=5, ge=1, le=10)
    timeout_minutes: int = Field(default=24 * 60, ge=1, le=MAX_TIMEOUT_MINUTES)
    # Per attempt of a `bert-predict` job (one shard of an array job).
    predict_timeout_minutes: int = Field(default=6 * 60, ge=1, le=MAX_TIMEOUT_MINUTES)
    # How long a job may sit RUNNABLE for lack of Spot capacity before it is cancelled and
    # resubmitted to On-Demand.
    # (jobStateTimeLimitActions allow 600..86400 seconds.)
    capacity_wait_minutes: int = Field(default=30, ge=10, le=1440)
    # Every queue cancels a job that can never be placed (it asks for more than any instance
    # type or the environment's max vCPUs holds) after this long RUNNABLE, with that reason.
    unplaceable_wait_minutes: int = Field(default=10, ge=10, le=1440)
    # The on-demand and multi-node queues cancel a job that waited this long for EC2 capacity.
    on_demand_capacity_wait_minutes: int = Field(default=120, ge=10, le=1440)
    # Seconds ECS waits between SIGTERM and SIGKILL: time to write a final checkpoint.
    container_stop_timeout_seconds: int = Field(default=120, ge=30, le=600)
    checkpoint_every_steps: int = Field(default=job.DEFAULT_CHECKPOINT_EVERY_STEPS, ge=1, le=10_000_000)
    checkpoint_every_minutes: int = Field(default=10, ge=1, le=MAX_TIMEOUT_MINUTES)
    # Reserved capacity: one compute environment and queue per reservation (docs/deploy.md).
    reservations: list[ReservationConfig] = Field(default_factory=list, max_length=10)

    def gpu_compute(self) -> GpuComputeSettings:
        """The settings the GPU compute environments and queues are built from."""
        return GpuComputeSettings(
            gpu_instance_types=self.gpu_instance_types,
            multinode_instance_types=self.multinode_instance_types,
            spot_max_vcpus=self.spot_max_vcpus,
            on_demand_max_vcpus=self.on_demand_max_vcpus,
            multinode_max_vcpus=self.multinode_max_vcpus,
            capacity_wait_minutes=self.capacity_wait_minutes,
            unplaceable_wait_minutes=self.unplaceable_wait_minutes,
            on_demand_capacity_wait_minutes=self.on_demand_capacity_wait_minutes,
            container_stop_timeout_seconds=self.container_stop_timeout_seconds,
            root_volume_gib=self.root_volume_gib,
            efa_interfaces=self.multinode_efa_interfaces(),
        )

    @field_validator("reservations")
    @classmethod
    def _unique_reservations(cls, v: list[ReservationConfig]) -> list[ReservationConfig]:
        names = [r.name for r in v]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _KeyedError(f"training.reservations.{duplicates[0]}.name", duplicates[0],
                              "is used by two reservations: each needs a name of its own")
        return v

    @field_validator("gpu_instance_types", "multinode_instance_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            if not _INSTANCE_TYPE.fullmatch(t):
                raise ValueError(f"{t!r} is not an EC2 instance type (e.g. g5.xlarge)")
        return v

    @field_validator("multinode_instance_types")
    @classmethod
    def _one_family(cls, v: list[str]) -> list[str]:
        # One launch template and one job shape for the environment: a job's nodes must match.
        families = mixed_families(v)
        if families:
            raise ValueError(f"mixes instance families {', '.join(families)}: the nodes of one job must be "
                             "alike, use one family")
        return v

    @model_validator(mode="after")
    def _efa_types(self) -> TrainingConfig:
        problem = efa_problem(self.multinode_instance_types) if self.efa else None
        if problem:
            raise _KeyedError("training.multinode_instance_types", self.multinode_instance_types, problem)
        return self

    def multinode_efa_interfaces(self) -> int:
        """EFA interfaces of each multi-node host: one per network card, 0 without `efa`."""
        return efa_interface_count(self.multinode_instance_types) if self.efa else 0


class PrepareConfig(_Model):
    """Data preparation (`bertbatch prepare`): a Spot CPU compute environment, its queue and the
    `bert-prepare` array job definition. Each child tokenizes a group of input files."""

    # x86 CPU types of a few families and sizes, so Spot finds capacity (the image is linux/amd64).
    instance_types: list[str] = Field(
        default_factory=lambda: ["c7i.xlarge", "c7i.2xlarge", "c6i.xlarge", "c6i.2xlarge", "m7i.xlarge",
                                 "m6i.xlarge"],
        min_length=1,
    )
    max_vcpus: int = Field(default=32, ge=1, le=MAX_VCPUS)
    # One child: 4 vCPUs (tokenizer processes) and the memory a 4-vCPU compute-optimized type leaves.
    vcpus_per_job: int = Field(default=4, ge=1, le=192)
    memory_mib_per_job: int = Field(default=6144, ge=512, le=2_097_152)
    retry_attempts: int = Field(default=5, ge=1, le=10)
    timeout_minutes: int = Field(default=6 * 60, ge=1, le=MAX_TIMEOUT_MINUTES)

    @field_validator("instance_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            if not _INSTANCE_TYPE.fullmatch(t):
                raise ValueError(f"{t!r} is not an EC2 instance type (e.g. c7i.xlarge)")
        return v


class TrackingConfig(_Model):
    # Empty: no experiment tracking. Otherwise the jobs' MLFLOW_TRACKING_URI (see docs/configuration.md).
    mlflow_tracking_uri: str = Field(default="", max_length=MAX_TRACKING_URI)

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _tracking_uri(cls, v: str) -> str:
        if not v or _SAGEMAKER_MLFLOW_ARN.fullmatch(v):
            return v
        if v.startswith("arn:"):
            raise ValueError(TRACKING_URI_RULE)
        try:
            parts = urlsplit(v)
            port_ok = parts.port is None or parts.port > 0  # .port raises ValueError when not a number
        except ValueError:
            raise ValueError(TRACKING_URI_RULE) from None
        if parts.scheme not in ("https", "http") or not parts.hostname or not port_ok or any(c.isspace() for c in v):
            raise ValueError(TRACKING_URI_RULE)
        if parts.username is not None or parts.password is not None:
            # The value is published in SSM as a String and in the job definitions.
            raise ValueError("must not hold credentials (user:password@): the URI is stored in plain text")
        return v

    @property
    def sagemaker_tracking_server_arn(self) -> str | None:
        """The tracking server ARN when the URI is SageMaker managed MLflow, else None."""
        return self.mlflow_tracking_uri if _SAGEMAKER_MLFLOW_ARN.fullmatch(self.mlflow_tracking_uri) else None


class BudgetConfig(_Model):
    monthly_limit_usd: float = Field(default=500.0, gt=0, le=MAX_BUDGET_USD)
    # Percent of the budget; each becomes an ACTUAL-spend notification.
    actual_thresholds_percent: list[float] = Field(default_factory=lambda: [50.0, 80.0, 100.0], min_length=1)
    forecasted_threshold_percent: float = Field(default=100.0, gt=0, le=1000)
    # Only count spend tagged Project=<project_name>, so another project's bill cannot trip the
    # guardrail. The tag must be activated as a cost-allocation tag in Billing: until then the
    # budget sees $0 and no alert fires.
    filter_on_project_tag: bool = True
    # Disable the job queues when 100% of actual spend is reached.
    cost_guardrail: bool = True

    @field_validator("actual_thresholds_percent")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        for t in v:
            if not 0 < t <= 1000:
                raise ValueError(f"{t:g} is outside 0 < t <= 1000")
        if v != sorted(v) or len(set(v)) != len(v):
            raise ValueError("must be sorted ascending with no duplicates")
        return v


class TeamsConfig(_Model):
    """The teams sharing the queues (fair-share scheduling): team name -> weight, relative; a
    team of weight 2 gets twice the vCPUs of a team of weight 1 while both have jobs waiting."""

    weights: dict[str, float] = Field(default_factory=lambda: {teams.DEFAULT_TEAM: 1.0}, min_length=1)
    # The team of a job submitted without --team or BERT_BATCH_TEAM.
    default: str = teams.DEFAULT_TEAM
    # Percent of the queues' vCPUs held back for teams with no job running yet (Batch's
    # computeReservation): a team arriving at a busy platform starts without waiting for others.
    compute_reservation_percent: int = Field(default=0, ge=0, le=99)
    # How far back usage counts against a team's share (0: only what runs now).
    share_decay_seconds: int = Field(default=0, ge=0, le=604_800)
    # Team -> monthly USD: a budget on the bert-batch:team cost-allocation tag (never the guardrail's).
    budgets_usd: dict[str, float] = Field(default_factory=dict)
    # Team -> who gets its budget's alerts by email (AWS Budgets: at most 10 per notification).
    alert_emails: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        for name, weight in v.items():
            if not teams.is_team_name(name):
                raise ValueError(f"team {name!r}: a team name is {teams.TEAM_NAME_RULE}")
            if not teams.MIN_WEIGHT <= weight <= teams.MAX_WEIGHT:
                raise ValueError(
                    f"team {name!r}: weight {weight:g} is outside {teams.MIN_WEIGHT:g}..{teams.MAX_WEIGHT:g}")
        return v

    @field_validator("budgets_usd")
    @classmethod
    def _budgets(cls, v: dict[str, float]) -> dict[str, float]:
        for name, limit in v.items():
            if not 0 < limit <= MAX_BUDGET_USD:
                raise ValueError(f"team {name!r}: {limit:g} USD is outside 0 < limit <= {MAX_BUDGET_USD:g}")
        return v

    @field_validator("alert_emails")
    @classmethod
    def _team_emails(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, emails in v.items():
            if len(emails) > MAX_BUDGET_EMAILS:
                raise ValueError(f"team {name!r}: {len(emails)} addresses, AWS Budgets takes at most "
                                 f"{MAX_BUDGET_EMAILS}")
            bad = next((e for e in emails if not _EMAIL.fullmatch(e)), None)
            if bad is not None:
                raise ValueError(f"team {name!r}: {bad!r} is not an email address")
        return v

    @model_validator(mode="after")
    def _default_is_a_team(self) -> TeamsConfig:
        known = ", ".join(sorted(self.weights))
        if self.default not in self.weights:
            raise ValueError(f"teams.default {self.default!r} is not in teams.weights ({known})")
        for key in ("budgets_usd", "alert_emails"):
            stranger = next((t for t in getattr(self, key) if t not in self.weights), None)
            if stranger is not None:
                raise ValueError(f"teams.{key}: team {stranger!r} is not in teams.weights ({known})")
        without_budget = next((t for t in self.alert_emails if t not in self.budgets_usd), None)
        if without_budget is not None:
            raise ValueError(f"teams.alert_emails: team {without_budget!r} has no teams.budgets_usd entry, "
                             f"so nothing would be sent")
        return self

    def contract(self) -> teams.Teams:
        return teams.Teams(weights=dict(self.weights), default=self.default)


class MonitoringConfig(_Model):
    failed_jobs_threshold: int = Field(default=1, ge=1)
    spot_interruptions_threshold: int = Field(default=3, ge=1)
    stalled_minutes: int = Field(default=30, ge=5)
    fsx_free_capacity_percent: float = Field(default=10.0, gt=0, lt=100)
    # Linked from the dashboard; empty -> the dashboard names docs/runbook.md in the repository.
    runbook_url: str = Field(default="", max_length=512, pattern=r"^(https://\S+)?$")


class PlatformConfig(_Model):
    project_name: str = Field(default="bert-batch", pattern=r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
    profile: str = Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    cost_center: str = Field(default="ml-platform", min_length=1, max_length=256)
    extra_tags: dict[str, str] = Field(default_factory=dict)
    removal_policy: Literal["destroy", "retain"] = "destroy"
    termination_protection: bool = False
    log_retention_days: int = 30
    alert_emails: list[str] = Field(default_factory=list)
    compliance_packs: list[str] = Field(default_factory=list)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    teams: TeamsConfig = Field(default_factory=TeamsConfig)

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        return _check_retention(v)

    @field_validator("extra_tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not 1 <= len(key) <= MAX_TAG_KEY or not _TAG_CHARS.fullmatch(key):
                raise ValueError(f"tag key {key!r}: 1-{MAX_TAG_KEY} letters, digits, spaces or + - = . _ : / @")
            if key.lower().startswith("aws:"):
                raise ValueError(f"tag key {key!r}: the aws: prefix is reserved for AWS")
            if len(value) > MAX_TAG_VALUE or not _TAG_CHARS.fullmatch(value):
                raise ValueError(
                    f"tag {key!r}: value must be at most {MAX_TAG_VALUE} letters, digits, spaces or + - = . _ : / @"
                )
        return v

    @field_validator("cost_center")
    @classmethod
    def _cost_center(cls, v: str) -> str:
        if not _TAG_CHARS.fullmatch(v):
            raise ValueError("is a tag value: letters, digits, spaces or + - = . _ : / @")
        return v

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for e in v:
            if not _EMAIL.fullmatch(e):
                raise ValueError(f"{e!r} is not an email address")
        return v

    @field_validator("compliance_packs")
    @classmethod
    def _packs(cls, v: list[str]) -> list[str]:
        for p in v:
            if p not in COMPLIANCE_PACKS:
                raise ValueError(f"{p!r} is not one of {', '.join(COMPLIANCE_PACKS)}")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> PlatformConfig:
        azs = self.network.availability_zones
        if not self.availability_zones and self.network.az_count > 2:
            # An environment-agnostic stack can only address two AZs (Fn::GetAZs 0 and 1).
            raise _KeyedError(
                "network.az_count", self.network.az_count,
                "more than 2 AZs needs network.availability_zones (and region) in config",
            )
        if azs and self.region and not all(az.startswith(self.region) for az in azs):
            raise _KeyedError("network.availability_zones", azs, f"must all be in region {self.region}")
        endpoint_azs = self.network.interface_endpoint_az_count
        if endpoint_azs is not None and endpoint_azs > self.az_count:
            raise _KeyedError(
                "network.interface_endpoint_az_count", endpoint_azs, f"must be <= the number of AZs ({self.az_count})"
            )
        t = self.training
        if t.multinode_subnet_index >= self.az_count:
            raise _KeyedError(
                "training.multinode_subnet_index", t.multinode_subnet_index,
                f"must be < the number of AZs ({self.az_count})",
            )
        if t.vcpus_per_job > min(t.spot_max_vcpus, t.on_demand_max_vcpus):
            raise _KeyedError(
                "training.vcpus_per_job", t.vcpus_per_job,
                "must fit in spot_max_vcpus and on_demand_max_vcpus",
            )
        for r in t.reservations:
            if r.subnet_index >= self.az_count:
                raise _KeyedError(f"training.reservations.{r.name}.subnet_index", r.subnet_index,
                                  f"must be < the number of AZs ({self.az_count})")
        if t.multinode_vcpus_per_node * t.multinode_nodes > t.multinode_max_vcpus:
            raise _KeyedError(
                "training.multinode_vcpus_per_node", t.multinode_vcpus_per_node,
                f"times multinode_nodes ({t.multinode_nodes}) must fit in multinode_max_vcpus "
                f"({t.multinode_max_vcpus})",
            )
        return self

    # --- derived values -----------------------------------------------------------------------
    @property
    def availability_zones(self) -> list[str]:
        """AZs the VPC spans: explicit, from the existing VPC, or az_count placeholders."""
        if self.network.existing_vpc:
            return list(self.network.existing_vpc.availability_zones)
        return list(self.network.availability_zones)

    @property
    def internet_egress(self) -> bool:
        """Whether the job subnets route to the internet: a NAT gateway, or as config says for
        an existing VPC."""
        if self.network.existing_vpc:
            return self.network.existing_vpc.internet_egress
        return self.network.nat_gateways > 0

    @property
    def az_count(self) -> int:
        return len(self.availability_zones) or self.network.az_count

    @property
    def tags(self) -> dict[str, str]:
        return {
            "Project": self.project_name,
            "Profile": self.profile,
            "CostCenter": self.cost_center,
            **self.extra_tags,
        }

    @property
    def retain(self) -> bool:
        return self.removal_policy == "retain"

    @property
    def removal_policy_value(self) -> RemovalPolicy:
        """The CDK RemovalPolicy of stateful resources."""
        return RemovalPolicy.RETAIN if self.retain else RemovalPolicy.DESTROY

    @property
    def naming(self) -> Naming:
        """Every physical name and path of this deployment (<project>-<profile>-..., /<project>/<profile>/)."""
        return Naming(profile=self.profile, project=self.project_name)


def _check_cidr(v: str, *, smallest_prefix: int) -> str:
    try:
        network = ipaddress.IPv4Network(v, strict=True)
    except ValueError as exc:
        raise ValueError(f"is not an IPv4 network in CIDR notation, e.g. 10.42.0.0/16 ({exc})") from None
    if not 16 <= network.prefixlen <= smallest_prefix:
        raise ValueError(f"prefix must be /16 to /{smallest_prefix}")
    return v


def _check_retention(v: int) -> int:
    if v not in LOG_RETENTION_DAYS:
        allowed = ", ".join(map(str, LOG_RETENTION_DAYS))
        raise ValueError(f"must be one of the CloudWatch Logs retention periods ({allowed})")
    return v


class _KeyedError(ValueError):
    """A cross-field error that names its own key (pydantic would only name the model)."""

    def __init__(self, key: str, value: Any, message: str):
        super().__init__(message)
        self.key, self.value, self.message = key, value, message


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def _parse_override(raw: str) -> Any:
    """`-c key=value` values arrive as strings: read JSON where it parses (numbers, booleans,
    lists), otherwise keep the string."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def _set_path(target: dict, dotted: str, value: Any) -> None:
    node = target
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"config error: {dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def merged_profile(context: Mapping[str, Any], profile: str, overrides: Mapping[str, str]) -> dict:
    profiles = context.get("profiles") or {}
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"config error: profile = {profile}: no such profile in cdk.json (known: {known})")
    data = copy.deepcopy(profiles[profile])
    data["profile"] = profile
    for key, raw in overrides.items():
        _set_path(data, key, _parse_override(raw) if isinstance(raw, str) else raw)
    return data


def _is_override(key: str) -> bool:
    """A `-c key=value` meant for the model. CDK's own context keys carry '@' (feature flags) or
    ':' (aws:cdk:..., lookups); anything else is ours, so a typo fails instead of being ignored."""
    if key in ("profile", "profiles") or "@" in key or ":" in key:
        return False
    return True


def load_config(context: Mapping[str, Any], *, overrides: Mapping[str, str] | None = None) -> PlatformConfig:
    """Build the validated config from cdk.json context plus `-c key=value` overrides.

    `context` is the dict of context values (cdk.json "context" merged with `-c`); keys with a
    dot, or top-level keys of the model, are treated as overrides of the chosen profile.
    """
    profile = str(context.get("profile", "dev"))
    if overrides is None:
        overrides = {k: v for k, v in context.items() if _is_override(k)}
    data = merged_profile(context, profile, overrides)
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, data)) from None


def _lookup(data: Mapping[str, Any], loc: tuple) -> Any:
    node: Any = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _one_line(exc: ValidationError, data: Mapping[str, Any]) -> str:
    err = exc.errors()[0]
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyedError):
        return f"config error: {ctx_error.key} = {_format_value(ctx_error.value)}: {ctx_error.message}"
    loc = tuple(err["loc"])
    # Drop list indexes from the key, but keep the offending item as the value.
    key = ".".join(str(p) for p in loc if not isinstance(p, int)) or "(root)"
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        return f"config error: {key}: unknown key (check the spelling; see docs/configuration.md)"
    if err["type"] == "missing":
        return f"config error: {key}: required"
    value = _lookup(data, loc)
    message = message[0].lower() + message[1:] if message else message
    return f"config error: {key} = {_format_value(value)}: {message}"
