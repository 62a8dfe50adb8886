"""bertbatch doctor on the template-derived platform. moto has no EC2 quotas in Service Quotas
and no DescribeSubscribersForNotification in Budgets: small fakes stand in for those two calls,
answering from the templates."""

from __future__ import annotations

import pytest

from bertbatch import doctor
from bertbatch_contract import discovery, layout
from tests.platform_from_templates import Deployed, deploy

from .conftest import client
from .helpers import one_line_error


class FakeQuotas:
    """Service Quotas' GetServiceQuota for the EC2 vCPU quotas."""

    def __init__(self, values: dict[str, float]):
        self.values = values

    def get_service_quota(self, ServiceCode: str, QuotaCode: str) -> dict:  # noqa: N803 - boto3's names
        assert ServiceCode == "ec2"
        return {"Quota": {"QuotaCode": QuotaCode, "Value": self.values[QuotaCode]}}


class BudgetsWithSubscribers:
    """moto's Budgets client plus DescribeSubscribersForNotification, from the template's budget."""

    def __init__(self, real, declared: dict[str, dict]):
        self.real, self.declared = real, declared

    def __getattr__(self, name):
        return getattr(self.real, name)

    def describe_subscribers_for_notification(self, AccountId, BudgetName, Notification):  # noqa: N803
        for item in self.declared[BudgetName]["NotificationsWithSubscribers"]:
            if all(item["Notification"].get(k) == v for k, v in Notification.items() if k in item["Notification"]):
                return {"Subscribers": item["Subscribers"]}
        return {"Subscribers": []}


class PendingSns:
    """moto confirms email subscriptions at once: report some as AWS shows them before confirmation."""

    def __init__(self, real, pending: set[str]):
        self.real, self.pending = real, pending

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_paginator(self, operation):
        real = self.real.get_paginator(operation)
        pending = self.pending

        class Paginator:
            def paginate(self, **kwargs):
                for page in real.paginate(**kwargs):
                    for sub in page.get("Subscriptions", []):
                        if sub["Endpoint"] in pending:
                            sub["SubscriptionArn"] = "PendingConfirmation"
                    yield page

        return Paginator()


class FsxWithLifecycle:
    """moto's FSx describes file systems without their Lifecycle."""

    def __init__(self, real, state: dict):
        self.real, self.state = real, state

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_paginator(self, operation):
        real, state = self.real.get_paginator(operation), self.state

        class Paginator:
            def paginate(self, **kwargs):
                for page in real.paginate(**kwargs):
                    for fs in page.get("FileSystems", []):
                        fs["Lifecycle"] = state["fsx"]
                    yield page

        return Paginator()


class BatchWithStatus:
    """moto describes every compute environment as VALID: report the status a test sets."""

    def __init__(self, real, statuses: dict[str, tuple[str, str]]):
        self.real, self.statuses = real, statuses

    def __getattr__(self, name):
        return getattr(self.real, name)

    def describe_compute_environments(self, **kwargs):
        response = self.real.describe_compute_environments(**kwargs)
        for ce in response["computeEnvironments"]:
            if ce["computeEnvironmentName"] in self.statuses:
                ce["status"], ce["statusReason"] = self.statuses[ce["computeEnvironmentName"]]
        return response


def needed_vcpus(deployed: Deployed, *, cpu: bool = False) -> dict[bool, int]:
    """Spot? -> the sum of the declared GPU compute environments' maxvCpus (all G instances in
    dev), or with `cpu` of the data preparation environment (c/m instances)."""
    needed = {True: 0, False: 0}
    for ce in deployed.declared.compute_environments.values():
        if ce["computeEnvironmentName"].endswith("-ce-cpu-spot") == cpu:
            needed[ce["computeResources"]["type"] == "SPOT"] += ce["computeResources"]["maxvCpus"]
    return needed


@pytest.fixture
def deployed(aws) -> Deployed:
    return deploy()


@pytest.fixture
def fakes(deployed, monkeypatch):
    """Quotas that cover the caps, the default model staged, one confirmed alert email."""
    from bertbatch import aws

    needed = needed_vcpus(deployed)
    state = {"quotas": {"L-3819A6DF": float(needed[True]), "L-DB2E81BA": float(needed[False]),
                        "L-34B43A08": float(needed_vcpus(deployed, cpu=True)[True]),
                        "L-7212CCBC": 0.0, "L-417A185B": 0.0}, "pending": set(), "fsx": "AVAILABLE",
             "compute_environments": {}}
    real = aws.make_client

    def make_client(service, **kwargs):
        if service == "service-quotas":
            return FakeQuotas(state["quotas"])
        made = real(service, **kwargs)
        if service == "budgets":
            return BudgetsWithSubscribers(made, deployed.declared.budgets)
        if service == "sns":
            return PendingSns(made, state["pending"])
        if service == "fsx":
            return FsxWithLifecycle(made, state)
        if service == "batch":
            return BatchWithStatus(made, state["compute_environments"])
        return made

    monkeypatch.setattr(aws, "make_client", make_client)
    model = deployed.job_definition(deployed.names[discovery.JOB_DEFINITION_SINGLE])["parameters"]["model"]
    client("s3").put_object(Bucket=deployed.names[discovery.ARTIFACTS_BUCKET],
                            Key=layout.model_manifest_key(layout.staged_model_name_of(model)), Body=b"{}")
    (topic,) = deployed.declared.topics
    client("sns").subscribe(TopicArn=topic, Protocol="email", Endpoint="ml-oncall@example.com")
    return state


def rows(output: str) -> dict[str, tuple[str, str]]:
    """check name -> (status, detail) from the table."""
    found = {}
    for line in output.splitlines():
        for status in (doctor.OK, doctor.WARN, doctor.FAIL):
            marker = f"  {status}  "
            if marker in line:
                name, _, detail = line.partition(marker)
                found[name.strip()] = (status, detail.strip())
                break
    return found


def test_a_ready_platform_passes_every_check(deployed, fakes, bb):
    result = bb("doctor")
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert {status for status, _ in table.values()} == {doctor.OK}, result.output
    for key in ("queue/spot-first", "queue/on-demand", "queue/multi-node"):
        assert table[f"queue {deployed.names[key]}"][0] == doctor.OK
    assert len([name for name in table if name.startswith("compute environment ")]) == 4  # 3 GPU, 1 CPU
    assert "role AWSServiceRoleForBatch" in table and "role AWSServiceRoleForEC2Spot" in table
    needed = needed_vcpus(deployed)
    assert table["quota L-3819A6DF"][1].endswith(f"may use {needed[True]}")
    assert table["quota L-DB2E81BA"][1].endswith(f"may use {needed[False]}")
    assert "quota L-417A185B" not in table  # no P instances in dev
    cpu = needed_vcpus(deployed, cpu=True)
    assert cpu == {True: 32, False: 0}  # the data preparation environment: Spot only
    assert table["quota L-34B43A08"][1] == ("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests: "
                                            "32 vCPUs, the compute environments may use 32")
    assert "AVAILABLE in us-east-1a" in table["fsx"][1]
    assert "confirmed: ml-oncall@example.com" in table["alerts"][1]
    assert "is ready" in result.output and "To fix" not in result.output


def test_failures_name_the_fix_and_exit_non_zero(deployed, fakes, bb):
    batch = client("batch")
    batch.update_job_queue(jobQueue=deployed.names[discovery.QUEUE_ON_DEMAND], state="DISABLED")
    client("iam").delete_role(RoleName="AWSServiceRoleForEC2Spot")
    fakes["quotas"]["L-DB2E81BA"] = 8.0
    fakes["pending"].add("ml-oncall@example.com")
    result = bb("doctor")
    assert result.exit_code == 1, result.output
    table = rows(result.output)
    failed = {name for name, (status, _) in table.items() if status == doctor.FAIL}
    on_demand = deployed.names[discovery.QUEUE_ON_DEMAND]
    assert failed == {f"queue {on_demand}", "role AWSServiceRoleForEC2Spot", "quota L-DB2E81BA", "alerts"}
    fixes = result.output.split("To fix:", 1)[1]
    assert f"aws batch update-job-queue --job-queue {on_demand} --state ENABLED" in fixes
    assert "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com" in fixes
    desired = needed_vcpus(deployed)[False]
    assert f"--quota-code L-DB2E81BA --desired-value {desired}" in fixes
    assert "4 check(s) failed" in result.output


def test_json_lines_carry_each_check_and_its_fix(deployed, fakes, bb):
    import json

    from bertbatch.json_fields import FIELDS

    client("iam").delete_role(RoleName="AWSServiceRoleForEC2Spot")
    result = bb("doctor", "-o", "json")
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(list(r) == list(FIELDS["doctor"]) for r in records)
    by_check = {r["check"]: r for r in records}
    spot = by_check["role AWSServiceRoleForEC2Spot"]
    assert spot["status"] == doctor.FAIL and "spot.amazonaws.com" in spot["fix"]
    assert by_check["role AWSServiceRoleForBatch"]["status"] == doctor.OK
    assert by_check["role AWSServiceRoleForBatch"]["fix"] is None


def test_invalid_compute_environment_shows_its_reason(deployed, fakes, bb):
    name = next(iter(deployed.declared.compute_environments))
    fakes["compute_environments"][name] = ("INVALID", "CLIENT_ERROR - not authorized to perform ec2:RunInstances")
    result = bb("doctor")
    assert result.exit_code == 1
    status, detail = rows(result.output)[f"compute environment {name}"]
    assert status == doctor.FAIL and "not authorized to perform ec2:RunInstances" in detail


def test_fsx_not_available_and_model_not_staged(deployed, fakes, bb):
    (fs_id,) = deployed.declared.file_systems
    fakes["fsx"] = "CREATING"
    s3 = client("s3")
    bucket = deployed.names[discovery.ARTIFACTS_BUCKET]
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=layout.MODELS_PREFIX)["Contents"]:
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    result = bb("doctor")
    table = rows(result.output)
    assert table["fsx"] == (doctor.FAIL, f"{fs_id} is CREATING")
    status, detail = table["default model"]
    # dev's job subnets have no internet route: an unstaged hub model cannot load
    assert status == doctor.FAIL and "bert-base-uncased is not staged" in detail and "cannot reach" in detail
    assert "bertbatch --profile dev models import bert-base-uncased" in result.output


def test_dev_without_alert_emails_warns(deployed, fakes, bb):
    (topic,) = deployed.declared.topics
    sns = client("sns")
    for sub in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
        if sub["Protocol"] == "email":
            sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    result = bb("doctor")
    assert result.exit_code == 0, result.output
    assert rows(result.output)["alerts"][0] == doctor.WARN
    assert "set alert_emails in cdk.json's dev profile" in result.output


def test_not_deployed_is_one_failed_check(aws, bb):
    result = bb("doctor")
    assert result.exit_code == 1
    table = rows(result.output)
    assert list(table) == ["discovery"] and "no SSM parameters under /bert-batch/dev/" in table["discovery"][1]
    assert "make deploy PROFILE=dev" in result.output


def test_instance_classes():
    assert [doctor.instance_class(t) for t in ("g5.xlarge", "g6e.xlarge", "vt1.3xlarge", "p4d.24xlarge", "m5.large")] \
        == ["G", "G", "G", "P", "standard"]
    assert doctor.instance_class("inf2.xlarge") is None and doctor.instance_class("trn1.2xlarge") is None


def test_unknown_option_is_one_line(bb):
    one_line_error(bb("doctor", "--bogus"), "--bogus")


def test_without_aws_access_the_fix_is_access_not_a_deploy(bb, monkeypatch, tmp_path):
    """A fresh machine with no AWS config: nothing is known about a deployment, so `make deploy`
    would be the wrong advice."""
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    result = bb("doctor")
    assert result.exit_code == 1
    assert "no AWS region" in result.output
    assert "give AWS access to the account the platform is deployed in" in result.output
    assert "make deploy" not in result.output


def test_the_table_fits_80_columns(deployed, fakes, bb):
    result = bb("doctor", width=80)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    # Details wrap between words; check names and ids stay whole (a long name on a line of its own).
    for whole in ("quota L-DB2E81BA", deployed.names[discovery.QUEUE_SPOT_FIRST], "us-east-1a", "144 vCPUs,",
                  "ml-oncall@example.com"):
        assert whole in result.output, whole
