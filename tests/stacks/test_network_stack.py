"""Network stack: VPC, endpoints, flow logs, security groups."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Capture, Match, Matcher, Template

from platform_constructs.network import JOB_HOST_ENDPOINTS
from stacks.config import INTERFACE_ENDPOINTS
from tests.stacks.conftest import config_for, every, synthesize

ENDPOINT = "AWS::EC2::VPCEndpoint"


def test_vpc_uses_configured_cidr(dev_network):
    dev_network.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.42.0.0/16"})


def test_dev_has_only_private_isolated_subnets_in_two_azs(dev_network):
    dev_network.resource_count_is("AWS::EC2::Subnet", 2)
    dev_network.all_resources_properties("AWS::EC2::Subnet", {"MapPublicIpOnLaunch": False})
    dev_network.resource_count_is("AWS::EC2::InternetGateway", 0)
    dev_network.resource_count_is("AWS::EC2::NatGateway", 0)


def test_prod_spans_the_three_configured_azs(prod_network):
    prod_network.all_resources_properties("AWS::EC2::Subnet", {"AvailabilityZone": Match.string_like_regexp(
        r"^us-east-1[abc]$")})
    for az in ("us-east-1a", "us-east-1b", "us-east-1c"):
        prod_network.has_resource_properties("AWS::EC2::Subnet", {"AvailabilityZone": az})


def test_s3_gateway_endpoint(dev_network):
    dev_network.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Gateway",
            "ServiceName": {"Fn::Join": ["", Match.array_with([Match.string_like_regexp(r"\.s3$")])]},
        },
    )


ACCOUNT = {"Ref": "AWS::AccountId"}
PARTITION = {"Ref": "AWS::Partition"}
REGION = {"Ref": "AWS::Region"}


def test_s3_gateway_endpoint_reaches_only_this_accounts_buckets_and_the_aws_package_buckets(dev_network):
    dev_network.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Gateway",
            "PolicyDocument": {
                "Statement": [
                    {
                        "Sid": "ThisAccountsBuckets",
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Action": "s3:*",
                        "Resource": "*",
                        "Condition": {"StringEquals": {"aws:ResourceAccount": ACCOUNT}},
                    },
                    {
                        "Sid": "ReadEcrLayersAndAmazonLinuxPackages",
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Action": "s3:GetObject",
                        "Resource": [
                            {"Fn::Join": ["", ["arn:", PARTITION, ":s3:::al2023-repos-", REGION, "-*/*"]]},
                            {"Fn::Join": ["", ["arn:", PARTITION, ":s3:::prod-", REGION, "-starport-layer-bucket/*"]]},
                        ],
                    },
                ],
                "Version": "2012-10-17",
            },
        },
    )


def _interface_endpoint(service: str, region: str | None = None, **properties) -> dict:
    """Properties of the interface endpoint of `service` (a config name: ecr.api, logs, ...)."""
    # With a region in config (prod) the service name is literal, else joined with the stack's region.
    name = (f"com.amazonaws.{region}.{service}" if region
            else {"Fn::Join": ["", ["com.amazonaws.", REGION, f".{service}"]]})
    return {"VpcEndpointType": "Interface", "ServiceName": name, **properties}


def _interface_endpoint_count(template: Template) -> int:
    return len(template.find_resources(ENDPOINT, {"Properties": {"VpcEndpointType": "Interface"}}))


@pytest.mark.parametrize(
    "service, actions",
    [("ecr.api", "ecr:*"), ("ecr.dkr", "ecr:*"), ("logs", "logs:*"), ("sts", "sts:*"), ("monitoring", "cloudwatch:*")],
)
def test_interface_endpoints_admit_only_this_accounts_principals(dev_network, variant_network, service, actions):
    template = dev_network if service in JOB_HOST_ENDPOINTS else variant_network
    template.has_resource_properties(ENDPOINT, _interface_endpoint(service, PolicyDocument={"Statement": Match.exact([
        {
            "Sid": "ThisAccountsPrincipals",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": actions,
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}},
        }
    ])}))


@pytest.mark.parametrize("service", ["ecs", "ecs-agent", "ecs-telemetry"])
def test_ecs_endpoints_keep_the_default_policy(dev_network, variant_network, service):
    # Amazon ECS does not support endpoint policies on its interface endpoints.
    template = dev_network if service in JOB_HOST_ENDPOINTS else variant_network
    template.has_resource_properties(ENDPOINT, _interface_endpoint(service, PolicyDocument=Match.absent()))


@pytest.mark.parametrize("service", INTERFACE_ENDPOINTS)
def test_interface_endpoint_with_private_dns(dev_network, variant_network, service):
    template = dev_network if service in JOB_HOST_ENDPOINTS else variant_network
    template.has_resource_properties(ENDPOINT, _interface_endpoint(service, PrivateDnsEnabled=True))


def test_endpoints_are_selectable_in_config(dev_variant):
    synth = dev_variant
    template = Template.from_stack(synth.platform.network)
    template.resource_properties_count_is(ENDPOINT, {"VpcEndpointType": "Interface"}, 6)


def test_by_default_only_the_endpoints_a_job_host_uses(dev_network, prod_network, prod):
    for template, region in ((dev_network, None), (prod_network, prod.config.region)):
        template.resource_properties_count_is(ENDPOINT, {"VpcEndpointType": "Interface"}, len(JOB_HOST_ENDPOINTS))
        for service in JOB_HOST_ENDPOINTS:
            template.has_resource_properties(ENDPOINT, _interface_endpoint(service, region))


def test_dev_endpoints_sit_in_one_az_and_prods_in_every_az(dev_network, prod_network):
    for template, azs in ((dev_network, 1), (prod_network, 3)):
        template.resource_properties_count_is(
            ENDPOINT, {"VpcEndpointType": "Interface", "SubnetIds": [Match.any_value()] * azs},
            _interface_endpoint_count(template))


def test_endpoint_security_group_admits_https_from_the_vpc_only(dev_network):
    dev_network.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "GroupDescription": Match.string_like_regexp("Interface endpoints"),
            "SecurityGroupIngress": [
                Match.object_like({"CidrIp": "10.42.0.0/16", "FromPort": 443, "ToPort": 443, "IpProtocol": "tcp"})
            ],
        },
    )


def test_flow_logs_all_traffic_to_cloudwatch(dev_network):
    dev_network.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs", "ResourceType": "VPC"},
    )


def test_flow_log_group_is_encrypted_with_retention(dev_network):
    dev_network.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": "/bert-batch/dev/vpc-flow-logs",
            "RetentionInDays": 30,
            "KmsKeyId": {"Fn::GetAtt": [Match.string_like_regexp("LogsKey"), "Arn"]},
        },
    )


def test_prod_keeps_flow_logs_as_long_as_every_other_log(prod_network, prod):
    assert prod.config.log_retention_days == 365
    prod_network.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/bert-batch/prod/vpc-flow-logs", "RetentionInDays": 365}
    )


def test_logs_key_rotates_and_admits_only_project_log_groups(dev_network):
    dev_network.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "AllowCloudWatchLogs",
                                "Condition": {
                                    "ArnLike": {
                                        "kms:EncryptionContext:aws:logs:arn": {
                                            "Fn::Join": ["", Match.array_with([":log-group:/bert-batch/dev/*"])]
                                        }
                                    }
                                },
                            }
                        )
                    ]
                )
            },
        },
    )


def _described(description_prefix: str) -> Matcher:
    return Match.string_like_regexp("^" + re.escape(description_prefix))


def _group_logical_id(template: Template, description_prefix: str) -> str:
    (logical_id,) = template.find_resources(
        "AWS::EC2::SecurityGroup", {"Properties": {"GroupDescription": _described(description_prefix)}})
    return logical_id


def test_compute_group_egress_is_https_plus_itself(dev_network):
    compute = _group_logical_id(dev_network, "GPU training instances")
    dev_network.has_resource_properties("AWS::EC2::SecurityGroup", {
        "GroupDescription": _described("GPU training instances"),
        "SecurityGroupEgress": Match.exact([
            {
                "CidrIp": "0.0.0.0/0",
                "Description": "HTTPS to AWS APIs, ECR, S3",
                "FromPort": 443,
                "IpProtocol": "tcp",
                "ToPort": 443,
            }
        ]),
    })
    dev_network.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "IpProtocol": "-1",
            "GroupId": {"Fn::GetAtt": [compute, "GroupId"]},
            "SourceSecurityGroupId": {"Fn::GetAtt": [compute, "GroupId"]},
        },
    )


@pytest.mark.parametrize("from_port, to_port", [(988, 988), (1018, 1023)])
def test_fsx_group_admits_lustre_ports_from_compute(variant_network, from_port, to_port):
    compute = _group_logical_id(variant_network, "GPU training instances")
    fsx = _group_logical_id(variant_network, "FSx for Lustre")
    variant_network.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "IpProtocol": "tcp",
            "FromPort": from_port,
            "ToPort": to_port,
            "GroupId": {"Fn::GetAtt": [fsx, "GroupId"]},
            "SourceSecurityGroupId": {"Fn::GetAtt": [compute, "GroupId"]},
        },
    )


def test_fsx_group_has_no_other_sources(variant_network):
    compute = {"Fn::GetAtt": [_group_logical_id(variant_network, "GPU training instances"), "GroupId"]}
    fsx = {"Fn::GetAtt": [_group_logical_id(variant_network, "FSx for Lustre"), "GroupId"]}
    ingress = "AWS::EC2::SecurityGroupIngress"
    into_fsx = len(variant_network.find_resources(ingress, {"Properties": {"GroupId": fsx}}))
    # From the compute group: the two Lustre port ranges (test above) and nothing else.
    from_compute = {"GroupId": fsx, "SourceSecurityGroupId": compute}
    variant_network.resource_properties_count_is(ingress, from_compute, 2)
    for ports in ((988, 988), (1018, 1023)):
        variant_network.has_resource_properties(ingress, {**from_compute, "FromPort": ports[0], "ToPort": ports[1]})
    # Every other rule: Lustre servers among themselves; the FSx L2 also opens 988-1023 within the group.
    from_port, to_port = Capture(), Capture()
    variant_network.resource_properties_count_is(
        ingress, {"GroupId": fsx, "SourceSecurityGroupId": fsx, "FromPort": from_port, "ToPort": to_port}, into_fsx - 2)
    for low, high in zip(every(from_port, Capture.as_number), every(to_port, Capture.as_number), strict=True):
        assert 988 <= low <= high <= 1023


def test_no_ingress_from_the_internet(dev_network, prod_network):
    for template in (dev_network, prod_network):
        template.resource_properties_count_is("AWS::EC2::SecurityGroup", {
            "SecurityGroupIngress": Match.array_with([Match.object_like({"CidrIp": "0.0.0.0/0"})])}, 0)
        template.resource_properties_count_is("AWS::EC2::SecurityGroupIngress", {"CidrIp": "0.0.0.0/0"}, 0)
        assert '"CidrIpv6": "::/0"' not in json.dumps(template.to_json())


def test_nat_gateway_adds_public_subnets(dev_variant):
    synth = dev_variant
    template = Template.from_stack(synth.platform.network)
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    template.resource_count_is("AWS::EC2::Subnet", 4)


def test_existing_vpc_is_imported_without_lookup():
    existing = {
        "vpc_id": "vpc-0123456789abcdef0",
        "availability_zones": ["us-east-1a", "us-east-1b"],
        "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    }
    synth = synthesize(config_for("dev", **{"network.existing_vpc": json.dumps(existing), "data.fsx.enabled": "true"}))
    template = Template.from_stack(synth.platform.network)
    template.resource_count_is("AWS::EC2::VPC", 0)
    template.resource_count_is("AWS::EC2::VPCEndpoint", 0)
    template.has_resource_properties("AWS::EC2::SecurityGroup", {"VpcId": "vpc-0123456789abcdef0"})
    data = Template.from_stack(synth.platform.data)
    data.has_resource_properties("AWS::FSx::FileSystem", {"SubnetIds": ["subnet-0123456789abcdef0"]})


def test_without_fsx_no_lustre_security_group_or_rules(dev_network, variant_network):
    def lustre_mentions(template):
        return [k for k, r in template.to_json()["Resources"].items() if "lustre" in json.dumps(r).lower()]

    assert lustre_mentions(variant_network), "the variant has FSx: expected its security group and rules"
    assert lustre_mentions(dev_network) == []
