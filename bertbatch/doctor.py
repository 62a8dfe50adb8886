"""`bertbatch doctor`: preflight checks of a deployed profile, before the first job waits in
RUNNABLE for a reason nobody can see from the CLI.

Each check reads AWS (never writes) and gives ok, warn or fail with one line of detail and, for
a failure, the command that fixes it. A check that cannot run (access denied, an API missing in
the region) is a warning, not a failure: the others still run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from bertbatch_contract import discovery, layout
from bertbatch_contract.naming import Naming

from . import jobs, models
from .aws import error_code, error_message, is_not_found, one_line
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


def _cannot_check(name: str, exc: botocore.exceptions.ClientError) -> Check:
    return Check(name, WARN, f"cannot check: {one_line(error_message(exc))}")


class Doctor:
    """Runs the checks of one profile. `checks()` yields them in order."""

    def __init__(self, session: Session):
        self.session = session
        self.profile = session.profile
        self.naming: Naming = session.naming
        self.deploy = DEPLOY.format(profile=self.profile)
        self.queues: list[dict[str, Any]] = []
        self.environments: list[dict[str, Any]] = []

    def checks(self) -> Iterator[Check]:
        try:
            deployment = self.session.deployment
        except NoAwsAccess as exc:  # nothing is known about the deployment: deploying is not the fix
            yield Check("discovery", FAIL, exc.message, NO_ACCESS_FIX)
            return
        except BertBatchError as exc:
            yield Check("discovery", FAIL, exc.message, self.deploy)
            return
        yield self.discovery(deployment.values)
        steps: tuple[Callable[[], Iterator[Check]], ...] = (
            self.job_queues, self.compute_environments, self.service_linked_roles, self.quotas, self.file_system,
            self.default_model, self.budget,
        )
        for step in steps:
            try:
                yield from step()
            except botocore.exceptions.ClientError as exc:
                yield _cannot_check(step.__name__.replace("_", " "), exc)

    # --- the checks -------------------------------------------------------------------------
    def discovery(self, values: dict[str, str]) -> Check:
        missing = [key for key in discovery.KEYS if not values.get(key)]
        if missing:
            names = ", ".join(self.naming.parameter(key) for key in missing)
            return Check("discovery", FAIL, f"SSM parameters missing: {names}", self.deploy)
        return Check("discovery", OK, f"{len(discovery.KEYS)} SSM parameters under {self.naming.path}")

    def job_queues(self) -> Iterator[Check]:
        # A deployment from before a queue existed misses its key: the discovery check says so.
        names = [self.session.get(key) for key in jobs.QUEUE_KEYS.values() if key in self.session.deployment.values]
        found = {q["jobQueueName"]: q for q in self.session.client("batch").describe_job_queues(
            jobQueues=names).get("jobQueues", [])}
        for name in names:
            queue = found.get(name)
            if queue is None:
                yield Check(f"queue {name}", FAIL, "does not exist", self.deploy)
                continue
            self.queues.append(queue)
            if queue.get("status") != "VALID":
                reason = queue.get("statusReason") or "no reason given"
                yield Check(f"queue {name}", FAIL, f"status {queue.get('status')}: {reason}", self.deploy)
            elif queue.get("state") != "ENABLED":
                # the cost guardrail disables the queues at 100% of the budget
                yield Check(f"queue {name}", FAIL, f"state {queue.get('state')} (the cost guardrail disables "
                            "queues at 100% of the budget)",
                            f"aws batch update-job-queue --job-queue {name} --state ENABLED")
            else:
                yield Check(f"queue {name}", OK, "ENABLED, VALID")

    def compute_environments(self) -> Iterator[Check]:
        arns = sorted({o["computeEnvironment"] for q in self.queues for o in q.get("computeEnvironmentOrder", [])})
        if not arns:
            return
        self.environments = self.session.client("batch").describe_compute_environments(
            computeEnvironments=arns).get("computeEnvironments", [])
        for ce in self.environments:
            name = ce["computeEnvironmentName"]
            if ce.get("status") != "VALID":
                reason = ce.get("statusReason") or "no reason given"
                yield Check(f"compute environment {name}", FAIL, f"status {ce.get('status')}: {one_line(reason)}",
                            f"fix the cause above, then {self.deploy}")
            elif ce.get("state") != "ENABLED":
                yield Check(f"compute environment {name}", FAIL, f"state {ce.get('state')}",
                            f"aws batch update-compute-environment --compute-environment {name} --state ENABLED")
            else:
                yield Check(f"compute environment {name}", OK, "ENABLED, VALID")

    def service_linked_roles(self) -> Iterator[Check]:
        wanted = [BATCH_ROLE]
        if any(self._spot(ce) for ce in self.environments):
            wanted.append(SPOT_ROLE)
        iam = self.session.client("iam")
        for role, service in wanted:
            try:
                iam.get_role(RoleName=role)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "NoSuchEntity":
                    yield _cannot_check(f"role {role}", exc)
                    continue
                yield Check(f"role {role}", FAIL, "the service-linked role does not exist",
                            f"aws iam create-service-linked-role --aws-service-name {service}")
            else:
                yield Check(f"role {role}", OK, "exists")

    @staticmethod
    def _spot(ce: dict[str, Any]) -> bool:
        return (ce.get("computeResources") or {}).get("type") in ("SPOT", "FARGATE_SPOT")

    def quotas(self) -> Iterator[Check]:
        """The compute environments' maxvCpus, summed per quota, against the account's quotas."""
        needed: dict[tuple[str, bool], int] = {}
        for ce in self.environments:
            resources = ce.get("computeResources") or {}
            classes = {instance_class(t) for t in resources.get("instanceTypes", [])} - {None}
            for cls in classes:
                key = (str(cls), self._spot(ce))
                needed[key] = needed.get(key, 0) + int(resources.get("maxvCpus", 0))
        quotas = self.session.client("service-quotas")
        for key, vcpus in sorted(needed.items()):
            quota = QUOTAS[key]
            name = f"quota {quota.code}"
            try:
                value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=quota.code)["Quota"]["Value"]
            except botocore.exceptions.ClientError as exc:
                yield _cannot_check(name, exc)
                continue
            detail = f"{quota.name}: {value:g} vCPUs, the compute environments may use {vcpus}"
            if value < vcpus:
                yield Check(name, FAIL, detail, "aws service-quotas request-service-quota-increase --service-code ec2 "
                                                f"--quota-code {quota.code} --desired-value {vcpus}")
            else:
                yield Check(name, OK, detail)

    def file_system(self) -> Iterator[Check]:
        if self.session.deployment.fsx_mount_path is None:
            yield Check("fsx", OK, "disabled in this profile")
            return
        mine = {"Project": self.naming.project, "Profile": self.profile}
        found = []
        for page in self.session.client("fsx").get_paginator("describe_file_systems").paginate():
            for fs in page.get("FileSystems", []):
                tags = {t["Key"]: t["Value"] for t in fs.get("Tags", [])}
                if all(tags.get(k) == v for k, v in mine.items()):
                    found.append(fs)
        if not found:
            yield Check("fsx", FAIL, f"no FSx file system tagged Project={mine['Project']}, Profile={self.profile}",
                        self.deploy)
            return
        fs = found[0]
        fs_id = fs["FileSystemId"]
        if fs.get("Lifecycle") != "AVAILABLE":
            yield Check("fsx", FAIL, f"{fs_id} is {fs.get('Lifecycle')}",
                        f"aws fsx describe-file-systems --file-system-ids {fs_id}")
            return
        fs_zones = self._zones(fs.get("SubnetIds", []))
        multi_node = self._multi_node_zones()
        if multi_node and not fs_zones & multi_node:
            yield Check("fsx", FAIL, f"{fs_id} is in {', '.join(sorted(fs_zones))}, the multi-node compute "
                        f"environment in {', '.join(sorted(multi_node))}: cross-AZ Lustre traffic",
                        f"check training.multinode_subnet_index (FSx and the multi-node environment share it), "
                        f"then {self.deploy}")
            return
        yield Check("fsx", OK, f"{fs_id} AVAILABLE in {', '.join(sorted(fs_zones))}")

    def _zones(self, subnet_ids: list[str]) -> set[str]:
        if not subnet_ids:
            return set()
        subnets = self.session.client("ec2").describe_subnets(SubnetIds=subnet_ids).get("Subnets", [])
        return {s["AvailabilityZone"] for s in subnets}

    def _multi_node_zones(self) -> set[str]:
        queue = self.session.get(discovery.QUEUE_MULTI_NODE)
        arns = {o["computeEnvironment"] for q in self.queues if q["jobQueueName"] == queue
                for o in q.get("computeEnvironmentOrder", [])}
        subnets = [s for ce in self.environments if ce["computeEnvironmentArn"] in arns
                   for s in (ce.get("computeResources") or {}).get("subnets", [])]
        return self._zones(subnets)

    def default_model(self) -> Iterator[Check]:
        defaults = jobs.job_definition_parameters(self.session.client("batch"),
                                                  self.session.get(discovery.JOB_DEFINITION_SINGLE))
        model = defaults.get("model", "")
        # The job definitions name the staged copy (s3://<artifacts>/models/<name>/); older ones a hub id.
        name = layout.staged_model_name_of(model) if model.startswith("s3://") else models.staged_name(model)
        if not model or name is None or model.startswith("random:"):
            yield Check("default model", OK, f"{model or 'none'}: nothing to stage")
            return
        model = name.replace("--", "/")  # what `models import` takes
        bucket = self.session.get(discovery.ARTIFACTS_BUCKET)
        manifest = layout.model_manifest_key(name)  # written last: the model is complete
        try:
            self.session.client("s3").head_object(Bucket=bucket, Key=manifest)
        except botocore.exceptions.ClientError as exc:
            if not is_not_found(exc):
                raise
            egress = self.session.deployment.values.get(discovery.INTERNET_EGRESS) == "true"
            detail = f"{model} is not staged (no {manifest})"
            if egress:
                yield Check("default model", WARN, detail + "; jobs download it from the hub each time")
            else:
                yield Check("default model", FAIL, detail + " and jobs cannot reach a model hub",
                            f"bertbatch --profile {self.profile} models import {model}")
            return
        yield Check("default model", OK, f"{model} staged in {layout.s3_uri(bucket, layout.model_prefix(name))}")

    def budget(self) -> Iterator[Check]:
        account = self.session.client("sts").get_caller_identity()["Account"]
        budgets = self.session.client("budgets")
        name = self.naming.prefix
        try:
            budgets.describe_budget(AccountId=account, BudgetName=name)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NotFoundException":
                raise
            yield Check("budget", FAIL, f"no budget {name} in account {account}", self.deploy)
            return
        topics: set[str] = set()
        notifications = budgets.describe_notifications_for_budget(AccountId=account, BudgetName=name)
        for notification in notifications.get("Notifications", []):
            subscribers = budgets.describe_subscribers_for_notification(
                AccountId=account, BudgetName=name, Notification=notification)
            topics |= {s["Address"] for s in subscribers.get("Subscribers", []) if s["SubscriptionType"] == "SNS"}
        yield Check("budget", OK, f"{name}: {len(notifications.get('Notifications', []))} alerts")
        yield from self.alert_subscriptions(sorted(topics))

    def alert_subscriptions(self, topics: list[str]) -> Iterator[Check]:
        if not topics:
            yield Check("alerts", FAIL, "the budget alerts publish to no SNS topic", self.deploy)
            return
        sns = self.session.client("sns")
        emails, pending = [], []
        for topic in topics:
            for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic):
                for sub in page.get("Subscriptions", []):
                    if sub.get("Protocol") not in ("email", "email-json"):
                        continue
                    emails.append(sub["Endpoint"])
                    if sub.get("SubscriptionArn") == "PendingConfirmation":
                        pending.append(sub["Endpoint"])
        if not emails:
            yield Check("alerts", WARN, "no email subscription: budget and alarm alerts reach nobody",
                        f"set alert_emails in cdk.json's {self.profile} profile, then {self.deploy}")
        elif pending:
            yield Check("alerts", FAIL, f"not confirmed: {', '.join(pending)}",
                        "open the 'AWS Notification - Subscription Confirmation' email and confirm")
        else:
            yield Check("alerts", OK, f"confirmed: {', '.join(emails)}")


def run(session: Session) -> list[Check]:
    return list(Doctor(session).checks())
