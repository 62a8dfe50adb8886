"""The deployed platform for tests, built from the synthesized CloudFormation templates.

moto's CloudFormation cannot deploy these templates (no PlacementGroup, BucketPolicy, Budgets,
FSx), so this module synthesizes the app in-process once per profile, resolves the intrinsics
(`Ref`, `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`, `Fn::Select`, `Fn::GetStackOutput`,
`Fn::ImportValue`...) to plausible physical names, and creates with boto3, inside `mock_aws`,
the resources the CLI reads: the VPC pieces the compute environments point at, IAM roles and
instance profiles, S3 buckets, log groups, the FSx file system, the Batch compute environments,
job queues and job definitions, the SSM discovery parameters, the SNS topic and the budget.

Nothing is hand-written: a name the stacks change is the name the tests see. `Deployed.declared`
keeps what the templates declared, API-shaped, because moto drops some of it
(DescribeJobDefinitions returns no `nodeProperties`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbatch_contract.naming import Naming
from tests.conftest import REPO

ACCOUNT = "123456789012"  # moto's default account
STACK_KINDS = ("Network", "Data", "Training", "Monitoring")  # creation order
# Values CloudFormation keeps as maps: their keys are names, not property names to camel-case.
MAP_VALUED = frozenset({"Options", "Parameters", "Tags"})
BATCH_SLR = "batch.amazonaws.com"
SERVICE_LINKED_ROLES = {BATCH_SLR: "AWSServiceRoleForBatch", "spot.amazonaws.com": "AWSServiceRoleForEC2Spot"}


# --- synthesis ------------------------------------------------------------------------------
def stack_name(profile: str, kind: str) -> str:
    return f"BertBatch-{profile}-{kind}"


@functools.cache
def synthesized(profile: str = "dev", overrides: tuple[tuple[str, str], ...] = ()) -> dict[str, dict]:
    """Stack name -> template JSON of `cdk synth` for `profile` (once per process and config)."""
    import aws_cdk as cdk

    from stacks.config import load_config
    from stacks.platform import build_platform

    context = json.loads((REPO / "cdk.json").read_text())["context"]
    config = load_config({**context, "profile": profile}, overrides=dict(overrides))
    outdir = tempfile.mkdtemp(prefix="bert-batch-synth-")
    app = cdk.App(outdir=outdir, context={k: v for k, v in context.items() if k.startswith("@aws-cdk")})
    platform = build_platform(app, config)
    assembly = app.synth()
    return {
        stack.stack_name: json.loads((Path(assembly.directory) / f"{stack.artifact_id}.template.json").read_text())
        for stack in platform.stacks
    }


# --- intrinsics -----------------------------------------------------------------------------
@dataclass
class Physical:
    """What `Ref` and `Fn::GetAtt` return for one resource."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)

    def get(self, attribute: str, where: str) -> str:
        if attribute not in self.attributes:
            raise KeyError(f"{where}: no attribute {attribute} (known: {sorted(self.attributes)})")
        return self.attributes[attribute]


def suffix(*parts: str, length: int = 12) -> str:
    """The random-looking tail CloudFormation gives generated names, stable per resource."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length].upper()


class Resolver:
    """Resolves template values to plausible physical values.

    Resources whose ids AWS assigns (VPC, subnets, security groups, the FSx file system) are
    created in moto the first time something refers to them (`creators`); every other physical
    name follows CloudFormation's rules: the name property when the template sets one, else
    `<stack>-<logical id>-<random>`.
    """

    def __init__(self, templates: dict[str, dict], region: str, creators: dict[str, Callable[..., Physical]]):
        self.templates, self.region, self.creators = templates, region, creators
        self.physical: dict[tuple[str, str], Physical] = {}

    def resource(self, stack: str, logical: str) -> dict:
        return self.templates[stack]["Resources"][logical]

    def pseudo(self, stack: str, name: str) -> str | None:
        return {
            "AWS::Region": self.region, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:stack/{stack}/{suffix(stack)}",
        }.get(name)

    def of(self, stack: str, logical: str) -> Physical:
        key = (stack, logical)
        if key not in self.physical:
            resource = self.resource(stack, logical)
            creator = self.creators.get(resource["Type"])
            self.physical[key] = creator(self, stack, logical) if creator else self.named(stack, logical)
        return self.physical[key]

    def named(self, stack: str, logical: str) -> Physical:
        resource = self.resource(stack, logical)
        rtype, props = resource["Type"], resource.get("Properties", {})
        name_property = NAME_PROPERTIES.get(rtype)
        given = props.get(name_property) if name_property else None
        if rtype == "AWS::Budgets::Budget":
            given = props["Budget"].get("BudgetName")
        name = self.resolve(stack, given) if given else f"{stack}-{logical[:40]}-{suffix(stack, logical)}"
        if rtype == "AWS::S3::Bucket" and not given:
            name = name.lower()[:63]
        return physical_of(rtype, name, self.region, stack, logical)

    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value if v != {"Ref": "AWS::NoValue"}]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref" or fn.startswith("Fn::"):
                return self.intrinsic(stack, fn, arg)
        return {k: self.resolve(stack, v) for k, v in value.items() if v != {"Ref": "AWS::NoValue"}}

    def intrinsic(self, stack: str, fn: str, arg: Any) -> Any:
        if fn == "Ref":
            pseudo = self.pseudo(stack, arg)
            return pseudo if pseudo is not None else self.of(stack, arg).ref
        if fn == "Fn::GetAtt":
            logical, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.of(stack, logical).get(attribute, f"{stack}/{logical}")
        if fn == "Fn::Join":
            separator, items = arg
            return separator.join(str(v) for v in self.resolve(stack, items))
        if fn == "Fn::Sub":
            return self.sub(stack, *(arg if isinstance(arg, list) else [arg, {}]))
        if fn == "Fn::Select":
            index, items = self.resolve(stack, arg)
            return items[int(index)]
        if fn == "Fn::Split":
            separator, text = self.resolve(stack, arg)
            return text.split(separator)
        if fn == "Fn::GetAZs":
            return [f"{self.region}{letter}" for letter in "abcdef"]
        if fn == "Fn::Base64":
            return base64.b64encode(str(self.resolve(stack, arg)).encode()).decode()
        if fn == "Fn::GetStackOutput":  # CDK's cross-stack reference (same account and region)
            other = self.resolve(stack, arg["StackName"])
            return self.output(other, self.resolve(stack, arg["OutputName"]))
        if fn == "Fn::ImportValue":
            export = self.resolve(stack, arg)
            for other, template in self.templates.items():
                for name, output in template.get("Outputs", {}).items():
                    if output.get("Export", {}).get("Name") == export:
                        return self.output(other, name)
            raise KeyError(f"{stack}: no stack exports {export!r}")
        raise NotImplementedError(f"{stack}: intrinsic {fn} is not resolved by tests/platform_from_templates.py")

    def output(self, stack: str, name: str) -> Any:
        return self.resolve(stack, self.templates[stack]["Outputs"][name]["Value"])

    def sub(self, stack: str, text: str, variables: dict) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(stack, variables[name]))
            if name.startswith("!"):  # ${!Literal}
                return "${" + name[1:] + "}"
            pseudo = self.pseudo(stack, name)
            if pseudo is not None:
                return pseudo
            logical, _, attribute = name.partition(".")
            if attribute:
                return str(self.intrinsic(stack, "Fn::GetAtt", [logical, attribute]))
            return self.of(stack, logical).ref

        return re.sub(r"\$\{([^}]+)\}", one, text)


NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::Batch::ComputeEnvironment": "ComputeEnvironmentName",
    "AWS::Batch::JobQueue": "JobQueueName",
    "AWS::Batch::SchedulingPolicy": "Name",
    "AWS::Batch::JobDefinition": "JobDefinitionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SSM::Parameter": "Name",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Events::Rule": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::KMS::Alias": "AliasName",
}


def physical_of(rtype: str, name: str, region: str, stack: str, logical: str) -> Physical:
    """`Ref` and the attributes the templates use, per resource type (CloudFormation's docs)."""
    arn = f"arn:aws:{{}}:{region}:{ACCOUNT}:{{}}"
    if rtype == "AWS::S3::Bucket":
        return Physical(name, {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com",
                               "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com"})
    if rtype == "AWS::IAM::Role":
        return Physical(name, {"Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "RoleId": "AROA" + suffix(name)})
    if rtype == "AWS::IAM::InstanceProfile":
        return Physical(name, {"Arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{name}"})
    if rtype == "AWS::IAM::ManagedPolicy":
        policy = f"arn:aws:iam::{ACCOUNT}:policy/{name}"
        return Physical(policy, {"PolicyArn": policy})
    if rtype == "AWS::Batch::ComputeEnvironment":
        ce = arn.format("batch", f"compute-environment/{name}")
        return Physical(ce, {"ComputeEnvironmentArn": ce})
    if rtype == "AWS::Batch::JobQueue":
        queue = arn.format("batch", f"job-queue/{name}")
        return Physical(queue, {"JobQueueArn": queue})
    if rtype == "AWS::Batch::SchedulingPolicy":
        policy = arn.format("batch", f"scheduling-policy/{name}")
        return Physical(policy, {"Arn": policy})
    if rtype == "AWS::Batch::JobDefinition":  # the first revision of a new definition
        return Physical(arn.format("batch", f"job-definition/{name}:1"))
    if rtype == "AWS::Logs::LogGroup":
        return Physical(name, {"Arn": arn.format("logs", f"log-group:{name}:*")})
    if rtype == "AWS::SNS::Topic":
        topic = arn.format("sns", name)
        return Physical(topic, {"TopicArn": topic, "TopicName": name})
    if rtype == "AWS::SQS::Queue":
        return Physical(f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}",
                        {"Arn": arn.format("sqs", name), "QueueName": name})
    if rtype == "AWS::Lambda::Function":
        return Physical(name, {"Arn": arn.format("lambda", f"function:{name}")})
    if rtype == "AWS::Events::Rule":
        return Physical(name, {"Arn": arn.format("events", f"rule/{name}")})
    if rtype == "AWS::KMS::Key":
        key_id = "-".join(suffix(stack, logical, length=32).lower()[i:j] for i, j in ((0, 8), (8, 12), (12, 16),
                                                                                    (16, 20), (20, 32)))
        return Physical(key_id, {"Arn": arn.format("kms", f"key/{key_id}"), "KeyId": key_id})
    if rtype == "AWS::EC2::LaunchTemplate":
        return Physical("lt-" + suffix(stack, logical, length=17).lower(),
                        {"LatestVersionNumber": "1", "DefaultVersionNumber": "1"})
    if rtype == "AWS::EC2::PlacementGroup":
        return Physical(name, {"GroupName": name})
    return Physical(name, {"Arn": arn.format(rtype.split("::")[1].lower(), name)})


# --- case conversion ------------------------------------------------------------------------
def api_shaped(value: Any, *, keep: bool = False) -> Any:
    """CloudFormation's PascalCase properties as the API's camelCase (maps such as Tags and
    Parameters keep their keys)."""
    if isinstance(value, list):
        return [api_shaped(v) for v in value]
    if isinstance(value, dict) and not keep:
        return {k[:1].lower() + k[1:]: api_shaped(v, keep=k in MAP_VALUED) for k, v in value.items()}
    return value


def only_members(client: Any, operation: str, request: dict) -> tuple[dict, list[str]]:
    """The request limited to the operation's input members, and what was left out (update-only
    properties such as ReplaceComputeEnvironment)."""
    members = set(client.meta.service_model.operation_model(operation).input_shape.members)
    return {k: v for k, v in request.items() if k in members}, sorted(set(request) - members)


def tag_list(tags: Any) -> list[dict[str, str]]:
    if isinstance(tags, dict):
        return [{"Key": k, "Value": v} for k, v in tags.items()]
    return list(tags or [])


# --- the deployment -------------------------------------------------------------------------
@dataclass
class Declared:
    """What the templates declared, API-shaped, by physical name."""

    compute_environments: dict[str, dict] = field(default_factory=dict)
    job_queues: dict[str, dict] = field(default_factory=dict)
    scheduling_policies: dict[str, dict] = field(default_factory=dict)  # by ARN
    job_definitions: dict[str, dict] = field(default_factory=dict)  # by ARN
    parameters: dict[str, str] = field(default_factory=dict)  # SSM name -> value
    buckets: list[str] = field(default_factory=list)
    log_groups: list[str] = field(default_factory=list)
    file_systems: dict[str, dict] = field(default_factory=dict)  # id -> FSx request
    budgets: dict[str, dict] = field(default_factory=dict)  # name -> CreateBudget request
    topics: list[str] = field(default_factory=list)
    left_out: dict[str, list[str]] = field(default_factory=dict)  # resource -> properties moto was not sent
    not_created: dict[str, int] = field(default_factory=dict)  # resource type -> count


@dataclass
class Deployed:
    profile: str
    region: str
    names: dict[str, str]  # discovery key -> value
    declared: Declared
    templates: dict[str, dict]
    resolver: Resolver

    def job_definition(self, arn_or_name: str) -> dict:
        """The declared job definition for an ARN, `name` or `name:revision`."""
        for arn, definition in self.declared.job_definitions.items():
            name_revision = arn.split("/", 1)[1]
            if arn_or_name in (arn, name_revision, name_revision.split(":")[0]):
                return definition
        raise KeyError(f"no job definition {arn_or_name} in the templates")

    def share_identifiers(self, queue: str) -> set[str] | None:
        """The share identifiers a queue (name or ARN) schedules by; None for a FIFO queue."""
        declared = self.declared.job_queues[queue.rsplit("/", 1)[-1]]
        policy = declared.get("schedulingPolicyArn")
        if policy is None:
            return None
        shares = self.declared.scheduling_policies[policy]["fairsharePolicy"]["shareDistribution"]
        return {share["shareIdentifier"] for share in shares}

    def resources(self, kind: str, rtype: str) -> Iterator[tuple[str, dict]]:
        stack = stack_name(self.profile, kind)
        for logical, resource in self.templates[stack]["Resources"].items():
            if resource["Type"] == rtype:
                yield logical, self.resolver.resolve(stack, resource.get("Properties", {}))


class _Builder:
    def __init__(self, profile: str, region: str, templates: dict[str, dict]):
        from bertbatch.core.aws_clients import boto_session

        self.session = boto_session(region=region)
        self.clients: dict[str, Any] = {}
        self.profile, self.region = profile, region
        self.declared = Declared()
        self.resolver = Resolver(templates, region, {
            "AWS::EC2::VPC": self.vpc, "AWS::EC2::Subnet": self.subnet,
            "AWS::EC2::SecurityGroup": self.security_group, "AWS::FSx::FileSystem": self.file_system,
        })

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = self.session.client(service)
        return self.clients[service]

    def props(self, stack: str, logical: str) -> dict:
        return self.resolver.resolve(stack, self.resolver.resource(stack, logical).get("Properties", {}))

    # resources whose ids AWS assigns: created when first referred to
    def vpc(self, _resolver: Resolver, stack: str, logical: str) -> Physical:
        props = self.props(stack, logical)
        ec2 = self.client("ec2")
        vpc_id = ec2.create_vpc(CidrBlock=props["CidrBlock"])["Vpc"]["VpcId"]
        (default_group,) = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
        )["SecurityGroups"]
        return Physical(vpc_id, {"CidrBlock": props["CidrBlock"], "VpcId": vpc_id,
                                 "DefaultSecurityGroup": default_group["GroupId"]})

    def subnet(self, _resolver: Resolver, stack: str, logical: str) -> Physical:
        props = self.props(stack, logical)
        subnet = self.client("ec2").create_subnet(
            VpcId=props["VpcId"], CidrBlock=props["CidrBlock"], AvailabilityZone=props["AvailabilityZone"]
        )["Subnet"]
        return Physical(subnet["SubnetId"], {"AvailabilityZone": subnet["AvailabilityZone"],
                                             "SubnetId": subnet["SubnetId"]})

    def security_group(self, _resolver: Resolver, stack: str, logical: str) -> Physical:
        props = self.props(stack, logical)
        name = f"{stack}-{logical}-{suffix(stack, logical)}"
        group_id = self.client("ec2").create_security_group(
            GroupName=name, Description=props["GroupDescription"], VpcId=props["VpcId"]
        )["GroupId"]
        return Physical(group_id, {"GroupId": group_id, "VpcId": props["VpcId"]})

    def file_system(self, _resolver: Resolver, stack: str, logical: str) -> Physical:
        props = self.props(stack, logical)
        request = {
            "FileSystemType": props["FileSystemType"], "StorageCapacity": props["StorageCapacity"],
            "SubnetIds": props["SubnetIds"], "SecurityGroupIds": props.get("SecurityGroupIds", []),
            "LustreConfiguration": props.get("LustreConfiguration", {}), "Tags": tag_list(props.get("Tags")),
        }
        if "FileSystemTypeVersion" in props:
            request["FileSystemTypeVersion"] = props["FileSystemTypeVersion"]
        fs = self.client("fsx").create_file_system(**request)["FileSystem"]
        self.declared.file_systems[fs["FileSystemId"]] = request
        mount_name = (fs.get("LustreConfiguration") or {}).get("MountName") or suffix(fs["FileSystemId"], length=8)
        return Physical(fs["FileSystemId"], {
            "LustreMountName": mount_name, "DNSName": f"{fs['FileSystemId']}.fsx.{self.region}.amazonaws.com",
        })

    # every other resource the CLI or doctor reads
    def create(self, stack: str, logical: str, rtype: str) -> None:
        create = getattr(self, "create_" + rtype.split("::", 1)[1].replace("::", "_").lower(), None)
        if create is None:
            self.declared.not_created[rtype] = self.declared.not_created.get(rtype, 0) + 1
            return
        create(stack, logical, self.props(stack, logical), self.resolver.of(stack, logical))

    def create_ec2_vpc(self, *_: Any) -> None:  # created by `of` above, when first needed
        pass

    create_ec2_subnet = create_ec2_securitygroup = create_fsx_filesystem = create_ec2_vpc

    def create_iam_role(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        self.client("iam").create_role(RoleName=physical.ref, Path=props.get("Path", "/"),
                                       AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))

    def create_iam_instanceprofile(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        iam = self.client("iam")
        iam.create_instance_profile(InstanceProfileName=physical.ref, Path=props.get("Path", "/"))
        for role in props.get("Roles", []):
            iam.add_role_to_instance_profile(InstanceProfileName=physical.ref, RoleName=role)

    def create_s3_bucket(self, _stack: str, _logical: str, _props: dict, physical: Physical) -> None:
        request: dict[str, Any] = {"Bucket": physical.ref}
        if self.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client("s3").create_bucket(**request)
        self.declared.buckets.append(physical.ref)

    def create_logs_loggroup(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        logs = self.client("logs")
        logs.create_log_group(logGroupName=physical.ref)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=physical.ref, retentionInDays=props["RetentionInDays"])
        self.declared.log_groups.append(physical.ref)

    def create_ssm_parameter(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        self.client("ssm").put_parameter(Name=physical.ref, Value=str(props["Value"]), Type=props.get("Type", "String"),
                                         Description=props.get("Description", ""), Tags=tag_list(props.get("Tags")))
        self.declared.parameters[physical.ref] = str(props["Value"])

    def create_sns_topic(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        self.client("sns").create_topic(Name=physical.attributes["TopicName"], Tags=tag_list(props.get("Tags")))
        self.declared.topics.append(physical.ref)

    def create_sns_subscription(self, _stack: str, _logical: str, props: dict, _physical: Physical) -> None:
        self.client("sns").subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"])

    def create_budgets_budget(self, _stack: str, logical: str, props: dict, physical: Physical) -> None:
        request = {"AccountId": ACCOUNT, "Budget": props["Budget"],
                   "NotificationsWithSubscribers": props.get("NotificationsWithSubscribers", [])}
        for notification in request["NotificationsWithSubscribers"]:
            notification["Notification"]["Threshold"] = float(notification["Notification"]["Threshold"])
        budget = request["Budget"]
        budget["BudgetLimit"]["Amount"] = str(budget["BudgetLimit"]["Amount"])
        self.client("budgets").create_budget(**request)
        self.declared.budgets[physical.ref] = request

    def _batch(self, operation: str, request: dict, resource: str) -> dict:
        batch = self.client("batch")
        sent, left_out = only_members(batch, operation, request)
        if left_out:
            self.declared.left_out[resource] = left_out
        getattr(batch, re.sub(r"(?<!^)([A-Z])", r"_\1", operation).lower())(**sent)
        return sent

    def create_batch_computeenvironment(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        request = api_shaped(props)
        request["type"] = request["type"].upper()
        # No ServiceRole in the template: Batch uses its service-linked role (moto needs it named).
        request.setdefault("serviceRole", service_linked_role_arn(BATCH_SLR))
        name = request["computeEnvironmentName"]
        self.declared.compute_environments[name] = self._batch("CreateComputeEnvironment", request, name)

    def create_batch_schedulingpolicy(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        request = api_shaped(props)
        policies = self.declared.scheduling_policies
        policies[physical.ref] = self._batch("CreateSchedulingPolicy", request, request["name"])

    def create_batch_jobqueue(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        request = api_shaped(props)
        name = request["jobQueueName"]
        self.declared.job_queues[name] = self._batch("CreateJobQueue", request, name)

    def create_batch_jobdefinition(self, _stack: str, _logical: str, props: dict, physical: Physical) -> None:
        request = api_shaped(props)
        request["type"] = request["type"].lower()
        name = request["jobDefinitionName"]
        sent = self._batch("RegisterJobDefinition", request, name)
        (registered,) = self.client("batch").describe_job_definitions(jobDefinitionName=name)["jobDefinitions"]
        if registered["jobDefinitionArn"] != physical.ref:  # what the SSM parameter and outputs say
            raise AssertionError(f"job definition {name}: registered as {registered['jobDefinitionArn']}, "
                                 f"the templates refer to {physical.ref}")
        self.declared.job_definitions[physical.ref] = sent


def service_linked_role_arn(service: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/{service}/{SERVICE_LINKED_ROLES[service]}"


def create_service_linked_role(iam: Any, service: str) -> None:
    """As AWS names it (moto's CreateServiceLinkedRole spells these two differently)."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName=SERVICE_LINKED_ROLES[service], Path=f"/aws-service-role/{service}/",
                    AssumeRolePolicyDocument=json.dumps(trust))


def deploy(profile: str = "dev", region: str = "us-east-1", overrides: dict[str, str] | None = None) -> Deployed:
    """Create the profile's platform in the active moto mock (call inside `mock_aws`)."""
    templates = synthesized(profile, tuple(sorted((overrides or {}).items())))
    builder = _Builder(profile, region, templates)
    for service in SERVICE_LINKED_ROLES:  # an account where Batch and Spot were used before
        create_service_linked_role(builder.client("iam"), service)
    for kind in STACK_KINDS:
        stack = stack_name(profile, kind)
        for logical, resource in templates[stack]["Resources"].items():
            builder.create(stack, logical, resource["Type"])
    naming = Naming(profile)
    names = {name[len(naming.path):]: value for name, value in builder.declared.parameters.items()
             if name.startswith(naming.path)}
    return Deployed(profile=profile, region=region, names=names, declared=builder.declared, templates=templates,
                    resolver=builder.resolver)
