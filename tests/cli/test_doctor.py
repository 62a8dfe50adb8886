"""bertbatch doctor on the platform built from the synthesized templates (moto). What moto
lacks is stubbed with botocore's Stubber at the CLI's client factory, answering with what moto
holds plus the missing part: Service Quotas' EC2 vCPU quotas, Budgets'
DescribeSubscribersForNotification, the file systems' Lifecycle, and an email subscription still
waiting for confirmation (moto confirms at once)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber

from bertbatch.core import preflight_checks as doctor
from bertbatch_contract import discovery, layout
from tests.platform_from_templates import ACCOUNT, Deployed, deploy

from .conftest import REGION, client
from .helpers import one_line_error

# What dev's compute environments draw from (G instances On-Demand and Spot, the Spot CPUs of data
# preparation), in the order doctor asks for them: by quota code.
DEV_QUOTAS = ("L-34B43A08", "L-3819A6DF", "L-DB2E81BA")


def answered_by_moto(response: dict) -> dict:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def stub_quotas(made, values: dict[str, float]):
    stubber = Stubber(made)
    for code in DEV_QUOTAS:
        stubber.add_response("get_service_quota", {"Quota": {"QuotaCode": code, "Value": values[code]}},
                             {"ServiceCode": "ec2", "QuotaCode": code})
    stubber.activate()
    return made


def stub_budgets(made, deployed: Deployed):
    """The budget and its notifications as moto has them, with the subscribers the template declares."""
    moto = client("budgets")
    [(name, declared)] = deployed.declared.budgets.items()
    who = {"AccountId": ACCOUNT, "BudgetName": name}
    stubber = Stubber(made)
    stubber.add_response("describe_budget", answered_by_moto(moto.describe_budget(**who)), who)
    notifications = answered_by_moto(moto.describe_notifications_for_budget(**who))
    stubber.add_response("describe_notifications_for_budget", notifications, who)
    for notification in notifications["Notifications"]:
        [subscribers] = [item["Subscribers"] for item in declared["NotificationsWithSubscribers"]
                         if all(item["Notification"].get(k, v) == v for k, v in notification.items())]
        stubber.add_response("describe_subscribers_for_notification", {"Subscribers": subscribers},
                             {**who, "Notification": notification})
    stubber.activate()
    return made


def budget_topic(deployed: Deployed) -> str:
    """The topic the budget notifications publish to (the guardrail's; the alerts topic is another)."""
    (topic,) = {s["Address"] for item in next(iter(deployed.declared.budgets.values()))["NotificationsWithSubscribers"]
                for s in item["Subscribers"] if s["SubscriptionType"] == "SNS"}
    return topic


def stub_pending(made, pending: set[str]):
    """moto's subscriptions, those in `pending` as AWS lists them before the email is confirmed."""
    (topic,) = {sub["TopicArn"] for sub in client("sns").list_subscriptions()["Subscriptions"]}
    listed = answered_by_moto(client("sns").list_subscriptions_by_topic(TopicArn=topic))
    for sub in listed["Subscriptions"]:
        if sub["Endpoint"] in pending:
            sub["SubscriptionArn"] = "PendingConfirmation"
    stubber = Stubber(made)
    stubber.add_response("list_subscriptions_by_topic", listed, {"TopicArn": topic})
    stubber.activate()
    return made


def stub_fsx_lifecycle(made, lifecycle: str):
    """moto's file systems, with the Lifecycle moto leaves out."""
    listed = answered_by_moto(client("fsx").describe_file_systems())
    for fs in listed["FileSystems"]:
        fs["Lifecycle"] = lifecycle
    stubber = Stubber(made)
    stubber.add_response("describe_file_systems", listed, {})
    stubber.activate()
    return made


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
    from .conftest import PLATFORM_OVERRIDES, PROFILE, REGION

    return deploy(PROFILE, REGION, PLATFORM_OVERRIDES)  # with FSx: doctor's file-system check is tested


@pytest.fixture
def fakes(deployed, monkeypatch):
    """Quotas that cover the caps, the file system AVAILABLE, the default model staged, one
    confirmed alert email. Tests change `quotas`, `fsx` and `pending` before they run doctor."""
    from bertbatch.core import aws_clients as aws

    needed = needed_vcpus(deployed)
    state = {"quotas": {"L-3819A6DF": float(needed[True]), "L-DB2E81BA": float(needed[False]),
                        "L-34B43A08": float(needed_vcpus(deployed, cpu=True)[True])}, "pending": set(),
             "fsx": "AVAILABLE"}
    real = aws.make_client

    def make_client(service, **kwargs):
        made = real(service, **kwargs)
        if service == "service-quotas":
            return stub_quotas(made, state["quotas"])
        if service == "budgets":
            return stub_budgets(made, deployed)
        if service == "fsx":
            return stub_fsx_lifecycle(made, state["fsx"])
        if service == "sns" and state["pending"]:
            return stub_pending(made, state["pending"])
        return made

    monkeypatch.setattr(aws, "make_client", make_client)
    model = deployed.job_definition(deployed.names[discovery.JOB_DEFINITION_SINGLE])["parameters"]["model"]
    client("s3").put_object(Bucket=deployed.names[discovery.ARTIFACTS_BUCKET],
                            Key=layout.model_manifest_key(layout.staged_model_name_of(model)), Body=b"{}")
    client("sns").subscribe(TopicArn=budget_topic(deployed), Protocol="email", Endpoint="ml-oncall@example.com")
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

    from bertbatch.ui.json_fields import FIELDS

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


def test_invalid_compute_environment_shows_its_reason(deployed):
    """moto reports every compute environment VALID: the check itself gets one as AWS reports an
    invalid one."""
    name = next(iter(deployed.declared.compute_environments))
    [ce] = client("batch").describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
    ce.update(status="INVALID", statusReason="CLIENT_ERROR - not authorized to perform ec2:RunInstances")
    row = doctor.compute_environment_state(ce, "make deploy PROFILE=dev")
    assert row.name == f"compute environment {name}" and row.status == doctor.FAIL
    assert "not authorized to perform ec2:RunInstances" in row.detail


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
    topic = budget_topic(deployed)
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


# --- one problem never hides the others -------------------------------------------------------
JOB_DEFINITION_KEYS = (discovery.JOB_DEFINITION_SINGLE, discovery.JOB_DEFINITION_MULTI_NODE,
                       discovery.JOB_DEFINITION_PREDICT, discovery.JOB_DEFINITION_PREPARE)


def job_definition_row(deployed: Deployed, key: str) -> str:
    return f"job definition {deployed.names[key].rsplit('/', 1)[1].split(':')[0]}"


def every_row(deployed: Deployed) -> set[str]:
    """The rows of a ready dev platform: one per queue, compute environment, role, quota, bucket,
    job definition, and the single ones (reservations: none in dev)."""
    names = deployed.names
    return {
        "discovery", "data bucket", "artifacts bucket", "log group", "fsx", "default model", "budget", "alerts",
        "reservations", "role AWSServiceRoleForBatch", "role AWSServiceRoleForEC2Spot",
        *(f"quota {code}" for code in DEV_QUOTAS),
        *(f"queue {names[key]}" for key in (discovery.QUEUE_SPOT_FIRST, discovery.QUEUE_ON_DEMAND,
                                            discovery.QUEUE_MULTI_NODE, discovery.QUEUE_PREPARE)),
        *(f"compute environment {name}" for name in deployed.declared.compute_environments),
        *(job_definition_row(deployed, key) for key in JOB_DEFINITION_KEYS),
    }


def delete_bucket(bucket: str) -> None:
    s3 = client("s3")
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


def test_a_ready_platform_has_a_row_for_every_resource_a_job_needs(deployed, fakes, bb):
    result = bb("doctor")
    assert result.exit_code == 0, result.output
    assert set(rows(result.output)) == every_row(deployed)


@pytest.mark.parametrize("bucket_key, row", [(discovery.DATA_BUCKET, "data bucket"),
                                             (discovery.ARTIFACTS_BUCKET, "artifacts bucket")])
def test_a_deleted_bucket_fails_its_row_and_every_other_row_is_there(deployed, fakes, bb, bucket_key, row):
    bucket = deployed.names[bucket_key]
    delete_bucket(bucket)
    result = bb("doctor")
    assert result.exit_code == 1, result.output
    table = rows(result.output)
    assert table[row] == (doctor.FAIL, f"{bucket} does not exist")
    assert f"{row}: aws s3 mb s3://{bucket}" in result.output.split("To fix:", 1)[1]
    assert set(table) == every_row(deployed)


@pytest.mark.parametrize("key", JOB_DEFINITION_KEYS)
def test_a_deregistered_job_definition_fails_its_row(deployed, fakes, bb, key):
    arn = deployed.names[key]
    client("batch").deregister_job_definition(jobDefinition=arn)
    result = bb("doctor")
    assert result.exit_code == 1, result.output
    table = rows(result.output)
    status, detail = table[job_definition_row(deployed, key)]
    assert status == doctor.FAIL and "deregistered" in detail, detail
    assert f"{job_definition_row(deployed, key)}: CloudFormation registers a job definition again" in result.output
    assert set(table) == every_row(deployed)


def test_a_deleted_log_group_fails_its_row(deployed, fakes, bb):
    group = deployed.names[discovery.LOG_GROUP]
    client("logs").delete_log_group(logGroupName=group)
    result = bb("doctor")
    assert result.exit_code == 1, result.output
    table = rows(result.output)
    assert table["log group"][0] == doctor.FAIL and group in table["log group"][1]
    assert f"log group: aws logs create-log-group --log-group-name {group}" in result.output
    assert set(table) == every_row(deployed)


def test_a_missing_ssm_parameter_is_the_discovery_row_not_the_whole_report(deployed, fakes, bb):
    parameter = f"/bert-batch/dev/{discovery.JOB_DEFINITION_SINGLE}"
    client("ssm").delete_parameter(Name=parameter)
    result = bb("doctor")
    assert result.exit_code == 1, result.output
    assert "Error:" not in result.output
    table = rows(result.output)
    assert table["discovery"] == (doctor.FAIL, f"SSM parameters missing: {parameter}")
    assert "discovery: make deploy PROFILE=dev" in result.output
    # the default model is read from that job definition: it cannot be checked, and says why
    assert table["default model"] == (doctor.WARN, f"cannot check: SSM parameter {parameter} is missing "
                                                   "(see discovery)")
    assert set(table) == every_row(deployed) - {job_definition_row(deployed, discovery.JOB_DEFINITION_SINGLE)}


def test_a_check_that_cannot_run_warns_and_the_others_still_run(deployed, fakes, bb, monkeypatch):
    """Access denied to FSx: its row warns with the reason, every other row is still checked."""
    from bertbatch.core import aws_clients as aws

    made = aws.make_client

    def make_client(service, **kwargs):
        if service != "fsx":
            return made(service, **kwargs)
        denied = aws.boto_session(region=REGION).client("fsx")
        stubber = Stubber(denied)
        stubber.add_client_error("describe_file_systems", "AccessDenied", "not authorized", 403)
        stubber.activate()
        return denied

    monkeypatch.setattr(aws, "make_client", make_client)
    result = bb("doctor")
    assert result.exit_code == 0, result.output  # a warning is not a failure
    table = rows(result.output)
    assert table["fsx"] == (doctor.WARN, "cannot check: AccessDenied: not authorized")
    assert set(table) == every_row(deployed)
    assert {status for name, (status, _) in table.items() if name != "fsx"} == {doctor.OK}


# --- reserved capacity: DescribeCapacityReservations, stubbed (moto has no reservations) --------
RESERVED = {"training.reservations": (
    '[{"name": "p5", "kind": "capacity-block", "reservation_id": "cr-0123456789abcdef0", '
    '"instance_type": "p5.48xlarge", "max_vcpus": 192},'
    ' {"name": "g6", "kind": "odcr", "reservation_id": "cr-0fedcba9876543210", "instance_type": "g6.12xlarge", '
    '"max_vcpus": 96}]')}


ORDER = ("cr-0fedcba9876543210", "cr-0123456789abcdef0")


def capacity_reservation(reservation_id: str, instance_type: str, **fields) -> dict:
    return {"CapacityReservationId": reservation_id, "InstanceType": instance_type, "State": "active",
            "TotalInstanceCount": 2, "AvailableInstanceCount": 1,
            "EndDate": datetime(2026, 12, 20, 11, 30, tzinfo=UTC), **fields}


def reservation_rows(monkeypatch, answers: dict[str, dict | None]) -> dict[str, tuple[str, str]]:
    """doctor's reservation rows on a platform with the RESERVED queues; EC2 answers `answers`
    (reservation id -> the reservation, or None: no such id)."""
    from bertbatch.core import aws_clients as aws
    from bertbatch.core.session import Session

    deploy(overrides=RESERVED)
    real = aws.make_client

    def make_client(service, **kwargs):
        made = real(service, **kwargs)
        if service == "ec2":
            stubber = Stubber(made)
            for reservation_id in ORDER:  # doctor asks by reservation name: g6, then p5
                answer = answers[reservation_id]
                expected = {"CapacityReservationIds": [reservation_id]}
                if answer is None:
                    stubber.add_client_error("describe_capacity_reservations", "InvalidCapacityReservationId.NotFound",
                                             expected_params=expected)
                else:
                    stubber.add_response("describe_capacity_reservations", {"CapacityReservations": [answer]},
                                         expected)
            stubber.activate()
        return made

    monkeypatch.setattr(aws, "make_client", make_client)
    session = Session(region=REGION)
    platform = doctor.Platform(session, session.deployment.values)
    return {row.name: (row.status, row.detail) for row in doctor.isolated("reservations", doctor.reservation_checks,
                                                                          platform)}


def test_active_reservations_report_what_is_left(aws, monkeypatch):
    block = capacity_reservation("cr-0123456789abcdef0", "p5.48xlarge", ReservationType="capacity-block",
                                 StartDate=datetime(2026, 12, 6, 11, 30, tzinfo=UTC))
    odcr = capacity_reservation("cr-0fedcba9876543210", "g6.12xlarge", AvailableInstanceCount=2)
    del odcr["EndDate"]  # an ODCR without an end date
    table = reservation_rows(monkeypatch, {"cr-0123456789abcdef0": block, "cr-0fedcba9876543210": odcr})
    assert table["reservation p5"] == (doctor.OK, "cr-0123456789abcdef0 active, 2026-12-06 11:30 UTC to "
                                                  "2026-12-20 11:30 UTC: 1 of 2 p5.48xlarge free")
    assert table["reservation g6"] == (doctor.OK, "cr-0fedcba9876543210 active, no end date: 2 of 2 g6.12xlarge free")


def test_an_expired_or_missing_reservation_fails_with_the_fix(aws, monkeypatch):
    expired = capacity_reservation("cr-0123456789abcdef0", "p5.48xlarge", State="expired", AvailableInstanceCount=0)
    table = reservation_rows(monkeypatch, {"cr-0123456789abcdef0": expired, "cr-0fedcba9876543210": None})
    assert table["reservation p5"][0] == doctor.FAIL
    assert table["reservation p5"][1].startswith("cr-0123456789abcdef0 is expired, ends 2026-12-20 11:30 UTC")
    assert table["reservation g6"] == (doctor.FAIL, "cr-0fedcba9876543210 does not exist in this account and region")


def test_a_reservation_with_none_left_warns(aws, monkeypatch):
    full = capacity_reservation("cr-0fedcba9876543210", "g6.12xlarge", AvailableInstanceCount=0)
    scheduled = capacity_reservation("cr-0123456789abcdef0", "p5.48xlarge", State="scheduled",
                                     AvailableInstanceCount=0)
    table = reservation_rows(monkeypatch, {"cr-0123456789abcdef0": scheduled, "cr-0fedcba9876543210": full})
    assert table["reservation g6"][0] == doctor.WARN
    assert table["reservation g6"][1].endswith("0 of 2 g6.12xlarge free: none left, jobs wait until one of its "
                                               "instances is free")
    assert table["reservation p5"][0] == doctor.WARN
    assert table["reservation p5"][1].endswith("(not started: jobs wait for its start)")


def test_a_reservation_of_another_instance_type_fails(aws, monkeypatch):
    other = capacity_reservation("cr-0fedcba9876543210", "g5.12xlarge")
    block = capacity_reservation("cr-0123456789abcdef0", "p5.48xlarge")
    table = reservation_rows(monkeypatch, {"cr-0123456789abcdef0": block, "cr-0fedcba9876543210": other})
    assert table["reservation g6"] == (doctor.FAIL, "cr-0fedcba9876543210 reserves g5.12xlarge, the queue launches "
                                                    "g6.12xlarge")
