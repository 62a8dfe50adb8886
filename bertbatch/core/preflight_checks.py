"""`bertbatch doctor`: preflight checks of a deployed profile, before the first job waits in
RUNNABLE for a reason nobody can see from the CLI.

Each check is a function of the deployed platform (`Platform`: the discovery values and the
AWS reads several checks share) returning its rows: ok, warn or fail with one line of detail
and, for a failure, the command that fixes it. Checks read AWS (never write) and do not depend
on each other's order: a check that cannot run (access denied, an API missing in the region, a
discovery value it needs missing) is a warning for that check alone, and the others still run.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from bertbatch_contract import discovery, layout
from bertbatch_contract.naming import Naming

from ..jobs import aws_batch as jobs
from ..models import staging as models
from .aws_clients import error_code, error_message, is_not_found, one_line
from .errors import BertBatchError, NoAwsAccess
from .session import Session

OK, WARN, FAIL = "ok", "warn", "fail"
DEPLOY = "make deploy PROFILE={profile}"
NO_ACCESS_FIX = ("give AWS access to the account the platform is deployed in (--aws-profile, --region); "
                 "without one: bertbatch local, estimate --offline (docs/cli.md)")

# Service-linked roles Batch needs: its own, and EC2 Spot's for Spot compute environments.
BATCH_ROLE = ("AWSServiceRoleForBatch", "batch.amazonaws.com")
SPOT_ROLE = ("AWSServiceRoleForEC2Spot", "spot.amazonaws.com")


@dataclass(frozen=True)
class Quota:
    """An EC2 vCPU quota (Service Quotas, service code ec2)."""

    code: str
    name: str


# (instance class, Spot?) -> the vCPU quota it draws from
QUOTAS: dict[tuple[str, bool], Quota] = {
    ("G", False): Quota("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("G", True): Quota("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("P", False): Quota("L-417A185B", "Running On-Demand P instances"),
    ("P", True): Quota("L-7212CCBC", "All P Spot Instance Requests"),
    # The data preparation environment's CPU types (c, m, ...).
    ("standard", False): Quota("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("standard", True): Quota("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
}
_FAMILY = re.compile(r"^([a-z]+)\d")
STANDARD_FAMILIES = frozenset("acdhimrtz")
OWN_QUOTA_FAMILIES = ("inf", "trn", "hpc")  # Inferentia, Trainium, HPC: quotas of their own


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str
    fix: str = ""


def instance_class(instance_type: str) -> str | None:
    """G for g*/vt* instance types, P for p*, standard for a/c/d/h/i/m/r/t/z*, None for the rest
    (other quotas, not checked)."""
    match = _FAMILY.match(instance_type)
    family = match.group(1) if match else instance_type
    if family.startswith("vt") or family.startswith("g"):
        return "G"
    if family.startswith("p"):
        return "P"
    if family[:1] in STANDARD_FAMILIES and not family.startswith(OWN_QUOTA_FAMILIES):
        return "standard"
    return None


# Deleted by hand, these stay deleted on a plain deploy: CloudFormation only acts on what changes.
NOT_RECREATED = "(CloudFormation does not recreate what was deleted outside it)"
JOB_DEFINITION_KEYS = (discovery.JOB_DEFINITION_SINGLE, discovery.JOB_DEFINITION_MULTI_NODE,
                       discovery.JOB_DEFINITION_PREDICT, discovery.JOB_DEFINITION_PREPARE)
BUCKET_KEYS = {"data bucket": discovery.DATA_BUCKET, "artifacts bucket": discovery.ARTIFACTS_BUCKET}


class NotDiscovered(Exception):
    """A discovery value a check needs is missing: the discovery check reports it."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


@dataclass
class Platform:
    """The deployed profile as the checks see it: its discovery values and the Batch reads
    several checks share (made once, on first use, by whichever check asks first)."""

    session: Session
    values: dict[str, str]
    _zones: dict[tuple[str, ...], set[str]] = field(default_factory=dict, repr=False)

    @property
    def naming(self) -> Naming:
        return self.session.naming

    @property
    def deploy(self) -> str:
        return DEPLOY.format(profile=self.session.profile)

    def value(self, key: str) -> str:
        if not self.values.get(key):
            raise NotDiscovered(key)
        return self.values[key]

    def client(self, service: str) -> Any:
        return self.session.client(service)

    @functools.cached_property
    def queue_names(self) -> list[str]:
        # A deployment from before a queue existed misses its key: the discovery check says so.
        keys = [*jobs.QUEUE_KEYS.values(), *(discovery.reserved_queue_key(name) for name in self.reservation_names)]
        return [self.values[key] for key in keys if self.values.get(key)]

    @functools.cached_property
    def reservation_names(self) -> list[str]:
        """The reserved queues' names; none when the published list cannot be read (its own check says so)."""
        try:
            return sorted(self.session.deployment.reservations)
        except BertBatchError:
            return []

    @functools.cached_property
    def queues(self) -> dict[str, dict[str, Any]]:
        """The discovered queues that exist, by name."""
        found = self.client("batch").describe_job_queues(jobQueues=self.queue_names).get("jobQueues", [])
        return {q["jobQueueName"]: q for q in found}

    @functools.cached_property
    def environments(self) -> list[dict[str, Any]]:
        """The compute environments of the queues that exist."""
        orders = [q.get("computeEnvironmentOrder", []) for q in self.queues.values()]
        arns = sorted({o["computeEnvironment"] for order in orders for o in order})
        if not arns:
            return []
        return list(self.client("batch").describe_compute_environments(
            computeEnvironments=arns).get("computeEnvironments", []))

    def zones(self, subnet_ids: list[str]) -> set[str]:
        key = tuple(sorted(subnet_ids))
        if key and key not in self._zones:
            subnets = self.client("ec2").describe_subnets(SubnetIds=list(key)).get("Subnets", [])
            self._zones[key] = {s["AvailabilityZone"] for s in subnets}
        return self._zones.get(key, set())


def spot(ce: dict[str, Any]) -> bool:
    return (ce.get("computeResources") or {}).get("type") in ("SPOT", "FARGATE_SPOT")


# --- the checks: each takes the platform and returns its rows ------------------------------------
def discovery_check(platform: Platform) -> list[Check]:
    missing = [key for key in discovery.KEYS if not platform.values.get(key)]
    if missing:
        names = ", ".join(platform.naming.parameter(key) for key in missing)
        return [Check("discovery", FAIL, f"SSM parameters missing: {names}", platform.deploy)]
    return [Check("discovery", OK, f"{len(discovery.KEYS)} SSM parameters under {platform.naming.path}")]


def queue_state(name: str, queue: dict[str, Any] | None, deploy: str) -> Check:
    check = f"queue {name}"
    if queue is None:
        return Check(check, FAIL, "does not exist", deploy)
    if queue.get("status") != "VALID":
        reason = queue.get("statusReason") or "no reason given"
        return Check(check, FAIL, f"status {queue.get('status')}: {reason}", deploy)
    if queue.get("state") != "ENABLED":
        # the cost guardrail disables the queues at 100% of the budget
        return Check(check, FAIL, f"state {queue.get('state')} (the cost guardrail disables queues at 100% of the "
                     "budget)", f"aws batch update-job-queue --job-queue {name} --state ENABLED")
    return Check(check, OK, "ENABLED, VALID")


def job_queue_checks(platform: Platform) -> list[Check]:
    return [queue_state(name, platform.queues.get(name), platform.deploy) for name in platform.queue_names]


def compute_environment_state(ce: dict[str, Any], deploy: str) -> Check:
    name = ce["computeEnvironmentName"]
    check = f"compute environment {name}"
    if ce.get("status") != "VALID":
        reason = ce.get("statusReason") or "no reason given"
        return Check(check, FAIL, f"status {ce.get('status')}: {one_line(reason)}",
                     f"fix the cause above, then {deploy}")
    if ce.get("state") != "ENABLED":
        return Check(check, FAIL, f"state {ce.get('state')}",
                     f"aws batch update-compute-environment --compute-environment {name} --state ENABLED")
    return Check(check, OK, "ENABLED, VALID")


def compute_environment_checks(platform: Platform) -> list[Check]:
    return [compute_environment_state(ce, platform.deploy) for ce in platform.environments]


def service_linked_role_checks(platform: Platform) -> list[Check]:
    wanted = [BATCH_ROLE, *([SPOT_ROLE] if any(spot(ce) for ce in platform.environments) else [])]
    iam = platform.client("iam")
    out = []
    for role, service in wanted:
        try:
            iam.get_role(RoleName=role)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                out.append(cannot_check(f"role {role}", exc))
            else:
                out.append(Check(f"role {role}", FAIL, "the service-linked role does not exist",
                                 f"aws iam create-service-linked-role --aws-service-name {service}"))
        else:
            out.append(Check(f"role {role}", OK, "exists"))
    return out


def vcpus_per_quota(environments: list[dict[str, Any]]) -> dict[Quota, int]:
    """The compute environments' maxvCpus, summed per quota they draw from."""
    needed: dict[Quota, int] = {}
    for ce in environments:
        resources = ce.get("computeResources") or {}
        for cls in {instance_class(t) for t in resources.get("instanceTypes", [])} - {None}:
            quota = QUOTAS[(str(cls), spot(ce))]
            needed[quota] = needed.get(quota, 0) + int(resources.get("maxvCpus", 0))
    return needed


def quota_check(quotas: Any, quota: Quota, vcpus: int) -> Check:
    name = f"quota {quota.code}"
    try:
        value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=quota.code)["Quota"]["Value"]
    except botocore.exceptions.ClientError as exc:
        return cannot_check(name, exc)
    detail = f"{quota.name}: {value:g} vCPUs, the compute environments may use {vcpus}"
    if value < vcpus:
        return Check(name, FAIL, detail, "aws service-quotas request-service-quota-increase --service-code ec2 "
                                         f"--quota-code {quota.code} --desired-value {vcpus}")
    return Check(name, OK, detail)


def quota_checks(platform: Platform) -> list[Check]:
    """The account's EC2 vCPU quotas against what the compute environments may launch, by quota code."""
    needed = vcpus_per_quota(platform.environments)
    quotas = platform.client("service-quotas")
    return [quota_check(quotas, quota, needed[quota]) for quota in sorted(needed, key=lambda q: q.code)]


def bucket_checks(platform: Platform) -> list[Check]:
    s3 = platform.client("s3")
    out = []
    for label, key in BUCKET_KEYS.items():
        if not platform.values.get(key):
            continue  # the discovery check reports it
        bucket = platform.values[key]
        try:
            s3.head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError as exc:
            if not is_not_found(exc) and error_code(exc) != "NoSuchBucket":
                out.append(cannot_check(label, exc))
                continue
            out.append(Check(label, FAIL, f"{bucket} does not exist",
                             f"aws s3 mb s3://{bucket} {NOT_RECREATED}, then restore what it held"))
        else:
            out.append(Check(label, OK, bucket))
    return out


def job_definition_state(batch: Any, arn: str, deploy: str) -> Check:
    name = arn.rsplit("/", 1)[-1]
    found = batch.describe_job_definitions(jobDefinitions=[arn]).get("jobDefinitions", [])
    status = found[0].get("status") if found else None
    if status == "ACTIVE":
        return Check(f"job definition {name.split(':')[0]}", OK, f"revision {name.rsplit(':', 1)[-1]} ACTIVE")
    detail = f"{name} is {status}" if status else f"{name} does not exist"
    return Check(f"job definition {name.split(':')[0]}", FAIL, detail + " (deregistered)",
                 f"CloudFormation registers a job definition again only when it changes: deploy a change to it, "
                 f"or delete the Training stack and {deploy}")


def job_definition_checks(platform: Platform) -> list[Check]:
    batch = platform.client("batch")
    return [job_definition_state(batch, platform.values[key], platform.deploy)
            for key in JOB_DEFINITION_KEYS if platform.values.get(key)]


def log_group_checks(platform: Platform) -> list[Check]:
    name = platform.value(discovery.LOG_GROUP)
    pages = platform.client("logs").get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
    if any(group["logGroupName"] == name for page in pages for group in page.get("logGroups", [])):
        return [Check("log group", OK, name)]
    return [Check("log group", FAIL, f"{name} does not exist: jobs cannot start their log stream",
                  f"aws logs create-log-group --log-group-name {name} {NOT_RECREATED}")]


def tagged_file_systems(platform: Platform) -> list[dict[str, Any]]:
    mine = {"Project": platform.naming.project, "Profile": platform.session.profile}
    found = []
    for page in platform.client("fsx").get_paginator("describe_file_systems").paginate():
        for fs in page.get("FileSystems", []):
            tags = {t["Key"]: t["Value"] for t in fs.get("Tags", [])}
            if all(tags.get(k) == v for k, v in mine.items()):
                found.append(fs)
    return found


def multi_node_zones(platform: Platform) -> set[str]:
    queue = platform.queues.get(platform.value(discovery.QUEUE_MULTI_NODE)) or {}
    arns = {o["computeEnvironment"] for o in queue.get("computeEnvironmentOrder", [])}
    subnets = [s for ce in platform.environments if ce["computeEnvironmentArn"] in arns
               for s in (ce.get("computeResources") or {}).get("subnets", [])]
    return platform.zones(subnets)


def file_system_checks(platform: Platform) -> list[Check]:
    if platform.session.deployment.fsx_mount_path is None:
        return [Check("fsx", OK, "disabled in this profile")]
    found = tagged_file_systems(platform)
    if not found:
        return [Check("fsx", FAIL, f"no FSx file system tagged Project={platform.naming.project}, "
                      f"Profile={platform.session.profile}", platform.deploy)]
    fs = found[0]
    fs_id = fs["FileSystemId"]
    if fs.get("Lifecycle") != "AVAILABLE":
        return [Check("fsx", FAIL, f"{fs_id} is {fs.get('Lifecycle')}",
                      f"aws fsx describe-file-systems --file-system-ids {fs_id}")]
    fs_zones = platform.zones(fs.get("SubnetIds", []))
    multi_node = multi_node_zones(platform)
    if multi_node and not fs_zones & multi_node:
        return [Check("fsx", FAIL, f"{fs_id} is in {', '.join(sorted(fs_zones))}, the multi-node compute "
                      f"environment in {', '.join(sorted(multi_node))}: cross-AZ Lustre traffic",
                      f"check training.multinode_subnet_index (FSx and the multi-node environment share it), "
                      f"then {platform.deploy}")]
    return [Check("fsx", OK, f"{fs_id} AVAILABLE in {', '.join(sorted(fs_zones))}")]


def default_model_checks(platform: Platform) -> list[Check]:
    definition = platform.value(discovery.JOB_DEFINITION_SINGLE)
    bucket = platform.value(discovery.ARTIFACTS_BUCKET)
    model = jobs.job_definition_parameters(platform.client("batch"), definition).get("model", "")
    # The job definitions name the staged copy (s3://<artifacts>/models/<name>/); older ones a hub id.
    name = layout.staged_model_name_of(model) if model.startswith("s3://") else models.staged_name(model)
    if not model or name is None or model.startswith("random:"):
        return [Check("default model", OK, f"{model or 'none'}: nothing to stage")]
    model = name.replace("--", "/")  # what `models import` takes
    manifest = layout.model_manifest_key(name)  # written last: the model is complete
    try:
        platform.client("s3").head_object(Bucket=bucket, Key=manifest)
    except botocore.exceptions.ClientError as exc:
        if not is_not_found(exc):
            raise
        detail = f"{model} is not staged (no {manifest})"
        if platform.values.get(discovery.INTERNET_EGRESS) == "true":
            return [Check("default model", WARN, detail + "; jobs download it from the hub each time")]
        return [Check("default model", FAIL, detail + " and jobs cannot reach a model hub",
                      f"bertbatch --profile {platform.session.profile} models import {model}")]
    return [Check("default model", OK, f"{model} staged in {layout.s3_uri(bucket, layout.model_prefix(name))}")]


def budget_checks(platform: Platform) -> list[Check]:
    account = platform.client("sts").get_caller_identity()["Account"]
    budgets = platform.client("budgets")
    name = platform.naming.prefix
    try:
        budgets.describe_budget(AccountId=account, BudgetName=name)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "NotFoundException":
            raise
        return [Check("budget", FAIL, f"no budget {name} in account {account}", platform.deploy)]
    topics: set[str] = set()
    notifications = budgets.describe_notifications_for_budget(AccountId=account, BudgetName=name)
    for notification in notifications.get("Notifications", []):
        subscribers = budgets.describe_subscribers_for_notification(
            AccountId=account, BudgetName=name, Notification=notification)
        topics |= {s["Address"] for s in subscribers.get("Subscribers", []) if s["SubscriptionType"] == "SNS"}
    budget = Check("budget", OK, f"{name}: {len(notifications.get('Notifications', []))} alerts")
    return [budget, alert_subscriptions(platform, sorted(topics))]


def alert_subscriptions(platform: Platform, topics: list[str]) -> Check:
    if not topics:
        return Check("alerts", FAIL, "the budget alerts publish to no SNS topic", platform.deploy)
    emails, pending = [], []
    sns = platform.client("sns")
    for topic in topics:
        for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic):
            for sub in page.get("Subscriptions", []):
                if sub.get("Protocol") in ("email", "email-json"):
                    emails.append(sub["Endpoint"])
                    if sub.get("SubscriptionArn") == "PendingConfirmation":
                        pending.append(sub["Endpoint"])
    if not emails:
        return Check("alerts", WARN, "no email subscription: budget and alarm alerts reach nobody",
                     f"set alert_emails in cdk.json's {platform.session.profile} profile, then {platform.deploy}")
    if pending:
        return Check("alerts", FAIL, f"not confirmed: {', '.join(pending)}",
                     "open the 'AWS Notification - Subscription Confirmation' email and confirm")
    return Check("alerts", OK, f"confirmed: {', '.join(emails)}")


RESERVATION_FIX = ("buy or create a new reservation, put its id in training.reservations of cdk.json's {profile} "
                   "profile, then {deploy} (docs/deploy.md, Reserved capacity)")
# Capacity Reservation states in which launches into it succeed now (or will, for a block's window).
RESERVATION_USABLE = ("active", "scheduled")


def reservation_state(name: str, want: discovery.Reservation, found: dict[str, Any] | None, fix: str) -> Check:
    """One reservation's row: active with instances left (ok), none left or not started yet
    (warn), or gone, expired or of another instance type (fail)."""
    check = f"reservation {name}"
    if found is None:
        return Check(check, FAIL, f"{want.reservation_id} does not exist in this account and region", fix)
    state, instance_type = found.get("State", "unknown"), found.get("InstanceType", "")
    window = reservation_window(found)
    if state not in RESERVATION_USABLE:
        return Check(check, FAIL, f"{want.reservation_id} is {state}{window}: jobs on its queue wait for ever", fix)
    if instance_type and instance_type != want.instance_type:
        return Check(check, FAIL, f"{want.reservation_id} reserves {instance_type}, the queue launches "
                     f"{want.instance_type}", fix)
    left, total = found.get("AvailableInstanceCount", 0), found.get("TotalInstanceCount", 0)
    detail = f"{want.reservation_id} {state}{window}: {left} of {total} {instance_type} free"
    if state == "scheduled":
        return Check(check, WARN, detail + " (not started: jobs wait for its start)")
    if not left:
        return Check(check, WARN, detail + ": none left, jobs wait until one of its instances is free")
    return Check(check, OK, detail)


def reservation_window(found: dict[str, Any]) -> str:
    """`, <start> to <end>` for a Capacity Block; `, ends <end>` or `, no end date` for an ODCR."""
    def day(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value)

    end = found.get("EndDate")
    if found.get("ReservationType") == "capacity-block" and found.get("StartDate") and end:
        return f", {day(found['StartDate'])} to {day(end)}"
    return f", ends {day(end)}" if end else ", no end date"


def reservation_checks(platform: Platform) -> list[Check]:
    """Each reserved queue's reservation (DescribeCapacityReservations): active, and how much is left."""
    reservations = platform.session.deployment.reservations
    if not reservations:
        return [Check("reservations", OK, "none in this profile")]
    ec2 = platform.client("ec2")
    fix = RESERVATION_FIX.format(profile=platform.session.profile, deploy=platform.deploy)
    rows = []
    for name, want in sorted(reservations.items()):
        if not want.reservation_id:  # an ODCR resource group: its members change without a deploy
            rows.append(Check(f"reservation {name}", WARN, f"targets the group {want.resource_group_arn}: doctor "
                              "checks reservations by id; see the group's reservations in the EC2 console"))
            continue
        rows.append(reservation_state(name, want, described_reservation(ec2, want.reservation_id), fix))
    return rows


def described_reservation(ec2: Any, reservation_id: str) -> dict[str, Any] | None:
    """One Capacity Reservation, or None when the account has no such id (one id per call: an
    unknown id fails the whole request)."""
    try:
        found = ec2.describe_capacity_reservations(CapacityReservationIds=[reservation_id])
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "InvalidCapacityReservationId.NotFound":
            return None
        raise
    reservations: list[dict[str, Any]] = found.get("CapacityReservations", [])
    return reservations[0] if reservations else None


# In report order. The name labels the row of a check that could not run at all.
CHECKS: tuple[tuple[str, Callable[[Platform], list[Check]]], ...] = (
    ("discovery", discovery_check),
    ("job queues", job_queue_checks),
    ("compute environments", compute_environment_checks),
    ("service-linked roles", service_linked_role_checks),
    ("quotas", quota_checks),
    ("buckets", bucket_checks),
    ("job definitions", job_definition_checks),
    ("log group", log_group_checks),
    ("fsx", file_system_checks),
    ("default model", default_model_checks),
    ("budget", budget_checks),
    ("reservations", reservation_checks),
)


def cannot_check(name: str, exc: botocore.exceptions.ClientError) -> Check:
    return Check(name, WARN, f"cannot check: {one_line(error_message(exc))}")


def isolated(name: str, check: Callable[[Platform], list[Check]], platform: Platform) -> list[Check]:
    """One check's rows, whatever goes wrong inside it: nothing it raises reaches the others."""
    try:
        return check(platform)
    except NotDiscovered as exc:
        return [Check(name, WARN, f"cannot check: SSM parameter {platform.naming.parameter(exc.key)} is missing "
                      "(see discovery)")]
    except botocore.exceptions.ClientError as exc:
        return [cannot_check(name, exc)]
    except BertBatchError as exc:
        return [Check(name, FAIL, exc.message, platform.deploy)]


def run(session: Session) -> list[Check]:
    """Every check's rows; one failed discovery row when nothing is known about a deployment."""
    try:
        values = session.deployment.values
    except NoAwsAccess as exc:  # nothing is known about the deployment: deploying is not the fix
        return [Check("discovery", FAIL, exc.message, NO_ACCESS_FIX)]
    except BertBatchError as exc:
        return [Check("discovery", FAIL, exc.message, DEPLOY.format(profile=session.profile))]
    platform = Platform(session, values)
    return [row for name, check in CHECKS for row in isolated(name, check, platform)]
