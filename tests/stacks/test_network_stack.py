"""Network stack: VPC, endpoints, flow logs, security groups."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

from platform_constructs.network import JOB_HOST_ENDPOINTS
from stacks.config import INTERFACE_ENDPOINTS
from tests.stacks.conftest import config_for, synthesize


def _resources(template: Template, rtype: str) -> dict:
    return template.find_resources(rtype)


def test_vpc_uses_configured_cidr(dev_network):
    dev_network.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.42.0.0/16"})


def test_dev_has_only_private_isolated_subnets_in_two_azs(dev_network):
    subnets = _resources(dev_network, "AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets.values())
    dev_network.resource_count_is("AWS::EC2::InternetGateway", 0)
    dev_network.resource_count_is("AWS::EC2::NatGateway", 0)


def test_prod_spans_the_three_configured_azs(prod_network):
    azs = {s["Properties"]["AvailabilityZone"] for s in _resources(prod_network, "AWS::EC2::Subnet").values()}
    assert azs == {"us-east-1a", "us-east-1b", "us-east-1c"}


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


def _interface_endpoints(template: Template) -> dict[str, dict]:
    """Config name (ecr.api, logs, ...) -> endpoint properties."""
    found = {}
    for endpoint in _resources(template, "AWS::EC2::VPCEndpoint").values():
        props = endpoint["Properties"]
        if props["VpcEndpointType"] == "Interface":
            name = props["ServiceName"]
            if isinstance(name, str):  # a region in config: "com.amazonaws.us-east-1.ecr.api"
                service = name.split(".", 3)[-1]
            else:
                service = name["Fn::Join"][1][-1].removeprefix(".")  # [..., {"Ref": region}, ".ecr.api"]
            found[service] = props
    return found


@pytest.mark.parametrize(
    "service, actions",
    [("ecr.api", "ecr:*"), ("ecr.dkr", "ecr:*"), ("logs", "logs:*"), ("sts", "sts:*"), ("monitoring", "cloudwatch:*")],
)
def test_interface_endpoints_admit_only_this_accounts_principals(dev_network, variant_network, service, actions):
    template = dev_network if service in JOB_HOST_ENDPOINTS else variant_network
    assert _interface_endpoints(template)[service]["PolicyDocument"]["Statement"] == [
        {
            "Sid": "ThisAccountsPrincipals",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": actions,
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}},
        }
    ]


@pytest.mark.parametrize("service", ["ecs", "ecs-agent", "ecs-telemetry"])
def test_ecs_endpoints_keep_the_default_policy(dev_network, variant_network, service):
    # Amazon ECS does not support endpoint policies on its interface endpoints.
    template = dev_network if service in JOB_HOST_ENDPOINTS else variant_network
    assert "PolicyDocument" not in _interface_endpoints(template)[service]


@pytest.mark.parametrize("service", INTERFACE_ENDPOINTS)
def test_interface_endpoint_with_private_dns(dev_network, variant_network, service):
    template = dev_network if service in JOB_HOST_ENDPOINTS else variant_network
    endpoints = [
        e["Properties"]
        for e in _resources(template, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    names = [json.dumps(e["ServiceName"]) for e in endpoints]
    matching = [
        e
        for e, name in zip(endpoints, names, strict=True)
        if name.endswith(f'.{service}"]]}}') or f'.{service}"' in name
    ]
    assert matching, f"no interface endpoint for {service}: {names}"
    assert matching[0]["PrivateDnsEnabled"] is True


def test_endpoints_are_selectable_in_config(dev_variant):
    synth = dev_variant
    template = Template.from_stack(synth.platform.network)
    interface = [
        e
        for e in _resources(template, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    assert len(interface) == 6


def test_by_default_only_the_endpoints_a_job_host_uses(dev_network, prod_network):
    for template in (dev_network, prod_network):
        assert sorted(_interface_endpoints(template)) == sorted(JOB_HOST_ENDPOINTS)


def test_dev_endpoints_sit_in_one_az_and_prods_in_every_az(dev_network, prod_network):
    assert {len(e["SubnetIds"]) for e in _interface_endpoints(dev_network).values()} == {1}
    assert {len(e["SubnetIds"]) for e in _interface_endpoints(prod_network).values()} == {3}


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


def _group_logical_id(template: Template, description_prefix: str) -> str:
    groups = _resources(template, "AWS::EC2::SecurityGroup")
    return next(k for k, v in groups.items() if v["Properties"]["GroupDescription"].startswith(description_prefix))


def test_compute_group_egress_is_https_plus_itself(dev_network):
    compute = _group_logical_id(dev_network, "GPU training instances")
    props = _resources(dev_network, "AWS::EC2::SecurityGroup")[compute]["Properties"]
    assert props["SecurityGroupEgress"] == [
        {
            "CidrIp": "0.0.0.0/0",
            "Description": "HTTPS to AWS APIs, ECR, S3",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]
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
    compute = _group_logical_id(variant_network, "GPU training instances")
    fsx = _group_logical_id(variant_network, "FSx for Lustre")
    for rule in _resources(variant_network, "AWS::EC2::SecurityGroupIngress").values():
        props = rule["Properties"]
        if props["GroupId"] != {"Fn::GetAtt": [fsx, "GroupId"]}:
            continue
        source = props["SourceSecurityGroupId"]["Fn::GetAtt"][0]
        assert source in (compute, fsx)
        if source == compute:
            assert (props["FromPort"], props["ToPort"]) in ((988, 988), (1018, 1023))
        else:
            # Lustre servers among themselves; the FSx L2 also opens 988-1023 within the group.
            assert 988 <= props["FromPort"] <= props["ToPort"] <= 1023


def test_no_ingress_from_the_internet(dev_network, prod_network):
    for template in (dev_network, prod_network):
        text = json.dumps(template.to_json())
        for group in _resources(template, "AWS::EC2::SecurityGroup").values():
            for rule in group["Properties"].get("SecurityGroupIngress", []):
                assert rule.get("CidrIp") != "0.0.0.0/0"
        assert '"CidrIpv6": "::/0"' not in text


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
