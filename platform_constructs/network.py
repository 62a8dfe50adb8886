"""The VPC that GPU jobs run in: private subnets, endpoints, flow logs, security groups."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from platform_constructs.nag import acknowledge_compliance

# Config names of interface endpoints -> the AWS service.
INTERFACE_ENDPOINT_SERVICES: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "ecr.api": ec2.InterfaceVpcEndpointAwsService.ECR,
    "ecr.dkr": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "ecs-agent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "ecs-telemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
    "sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
}

# What a job host in an isolated subnet (no NAT) needs, and so the default list:
# - ecr.api, ecr.dkr: pull the training image (its layers come through the S3 gateway endpoint);
# - logs: the awslogs driver ships the job's output (the container's EMF metrics ride on it);
# - ecs, ecs-agent: the ECS agent registers the instance with the cluster and receives its jobs.
# Not by default: ecs-telemetry (the agent opens no telemetry session: batch_compute.py turns
# task metrics and Docker health checks off), sts (task credentials come from the ECS agent,
# nothing in the VPC assumes a role), monitoring (nothing in the VPC calls PutMetricData).
JOB_HOST_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "ecs", "ecs-agent")

# Interface endpoints whose services accept an endpoint policy -> the actions it lets through.
# Amazon ECS (ecs, ecs-agent, ecs-telemetry) does not support endpoint policies: those keep the
# default ("Controlling access to Amazon ECS by attaching an endpoint policy to the VPC endpoint
# isn't currently supported", Amazon ECS Developer Guide, vpc-endpoints.html).
ENDPOINT_POLICY_ACTIONS: dict[str, str] = {
    "ecr.api": "ecr:*",
    "ecr.dkr": "ecr:*",
    "logs": "logs:*",
    "sts": "sts:*",
    "monitoring": "cloudwatch:*",
}

# AWS-owned buckets the hosts read through the S3 gateway endpoint (not in this account):
# - ECR image layers: "arn:aws:s3:::prod-region-starport-layer-bucket/*" (Amazon ECR User Guide,
#   "Minimum Amazon S3 bucket permissions for Amazon ECR",
#   https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html);
# - the Amazon Linux 2023 dnf mirrors (`dnf install lustre-client` at boot), served from the
#   buckets al2023-repos-<region>-<suffix>. Every compute environment runs an AL2023 image, so
#   the Amazon Linux 2 buckets are not listed. Read-only: nothing can be written outside this
#   account through the endpoint.
AWS_PACKAGE_OBJECTS = (
    f"arn:{Aws.PARTITION}:s3:::prod-{Aws.REGION}-starport-layer-bucket/*",
    f"arn:{Aws.PARTITION}:s3:::al2023-repos-{Aws.REGION}-*/*",
)

# Lustre: 988 for the LNet service, 1018-1023 for the clients' reserved ports.
LUSTRE_PORTS: tuple[ec2.Port, ...] = (ec2.Port.tcp(988), ec2.Port.tcp_range(1018, 1023))


class GpuVpc(Construct):
    """A new VPC for GPU compute: private subnets only (public ones just for NAT gateways),
    an S3 gateway endpoint (this account's buckets and the AWS package buckets only), interface
    endpoints (this account's principals only, where the service takes an endpoint policy) and,
    with a log group, flow logs.

    Attributes: `vpc`, `compute_subnets` (private subnets, one per AZ), `private_subnets`,
    `endpoint_security_group`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc_cidr: str,
        availability_zones: Sequence[str],
        az_count: int,
        nat_gateways: int,
        interface_endpoints: Sequence[str],
        interface_endpoint_az_count: int | None = None,
        flow_log_group: logs.ILogGroup | None,
    ) -> None:
        """`availability_zones` when explicit, else `az_count` AZs that CDK picks offline. The
        interface endpoints sit in the first `interface_endpoint_az_count` AZs (None: every AZ);
        jobs in the other AZs reach them across AZs."""
        super().__init__(scope, construct_id)
        with_nat = nat_gateways > 0
        private_type = ec2.SubnetType.PRIVATE_WITH_EGRESS if with_nat else ec2.SubnetType.PRIVATE_ISOLATED
        subnets = [ec2.SubnetConfiguration(name="compute", subnet_type=private_type, cidr_mask=20)]
        if with_nat:
            # Public subnets exist only to hold the NAT gateways.
            subnets.insert(0, ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24))
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(vpc_cidr),
            max_azs=None if availability_zones else az_count,
            availability_zones=list(availability_zones) or None,
            nat_gateways=nat_gateways,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
        )
        self.compute_subnets = ec2.SubnetSelection(subnet_type=private_type)

        if flow_log_group is not None:
            flow_log = self.vpc.add_flow_log(
                "FlowLog",
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                traffic_type=ec2.FlowLogTrafficType.ALL,
            )
            acknowledge_compliance(
                flow_log.node.find_child("IAMRole"),
                "IAMNoInlinePolicy",
                "The flow-log delivery role's only policy is CDK's inline grant to write this VPC's "
                "flow-log group; it is never attached anywhere else.",
            )

        # S3 through a gateway endpoint: free, and image layers from ECR come from S3. It is the
        # only way out of an isolated VPC, so it reaches this account's buckets and the AWS
        # package buckets only (account condition, not bucket names: the Data stack that owns
        # the buckets depends on this stack).
        s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.compute_subnets]
        )
        for statement in s3_endpoint_statements():
            s3_endpoint.add_to_policy(statement)
        self.endpoint_security_group: ec2.SecurityGroup | None = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface endpoints: HTTPS from inside the VPC",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(ec2.Peer.ipv4(vpc_cidr), ec2.Port.tcp(443), "HTTPS from the VPC")
        # Each endpoint bills per AZ-hour: fewer AZs cost less, at the price of AZ resilience.
        endpoint_subnets = ec2.SubnetSelection(subnets=list(self.private_subnets)[:interface_endpoint_az_count])
        for name in interface_endpoints:
            endpoint = self.vpc.add_interface_endpoint(
                _endpoint_id(name),
                service=INTERFACE_ENDPOINT_SERVICES[name],
                subnets=endpoint_subnets,
                security_groups=[self.endpoint_security_group],
                private_dns_enabled=True,
                open=False,  # the endpoint security group above already admits the VPC
            )
            if name in ENDPOINT_POLICY_ACTIONS:
                endpoint.add_to_policy(this_accounts_principals(ENDPOINT_POLICY_ACTIONS[name]))

    @property
    def private_subnets(self) -> Sequence[ec2.ISubnet]:
        return _selected(self.vpc, self.compute_subnets)


def s3_endpoint_statements() -> list[iam.PolicyStatement]:
    """The S3 gateway endpoint's policy: anything on this account's buckets (the roles decide
    what), and reading the AWS-owned package buckets."""
    return [
        iam.PolicyStatement(
            sid="ThisAccountsBuckets",
            principals=[iam.AnyPrincipal()],
            actions=["s3:*"],
            resources=["*"],
            conditions={"StringEquals": {"aws:ResourceAccount": Aws.ACCOUNT_ID}},
        ),
        # ECR's layer downloads are presigned by ECR, and the package mirrors are read
        # anonymously: neither carries this account, so they are named instead.
        iam.PolicyStatement(
            sid="ReadEcrLayersAndAmazonLinuxPackages",
            principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject"],
            resources=list(AWS_PACKAGE_OBJECTS),
        ),
    ]


def this_accounts_principals(actions: str) -> iam.PolicyStatement:
    """An interface endpoint policy: only this account's principals get through (no foreign
    credentials can carry data out through the endpoint)."""
    return iam.PolicyStatement(
        sid="ThisAccountsPrincipals",
        principals=[iam.AnyPrincipal()],
        actions=[actions],
        resources=["*"],
        conditions={"StringEquals": {"aws:PrincipalAccount": Aws.ACCOUNT_ID}},
    )


class ImportedVpc(Construct):
    """An existing VPC imported from IDs (no lookup: synth stays offline). It keeps its own
    endpoints and flow logs.

    Attributes: `vpc`, `compute_subnets` (its private subnets), `private_subnets`,
    `endpoint_security_group` (None).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc_id: str,
        vpc_cidr: str,
        availability_zones: Sequence[str],
        private_subnet_ids: Sequence[str],
        private_subnet_route_table_ids: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc: ec2.IVpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=vpc_id,
            vpc_cidr_block=vpc_cidr,
            availability_zones=list(availability_zones),
            private_subnet_ids=list(private_subnet_ids),
            private_subnet_route_table_ids=list(private_subnet_route_table_ids) or None,
        )
        self.compute_subnets = ec2.SubnetSelection(subnets=self.vpc.private_subnets)
        self.endpoint_security_group: ec2.SecurityGroup | None = None

    @property
    def private_subnets(self) -> Sequence[ec2.ISubnet]:
        return _selected(self.vpc, self.compute_subnets)


def _selected(vpc: ec2.IVpc, selection: ec2.SubnetSelection) -> Sequence[ec2.ISubnet]:
    return vpc.select_subnets(subnet_type=selection.subnet_type, subnets=selection.subnets).subnets


def _endpoint_id(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(".", "-").split("-")) + "Endpoint"


class ComputeSecurityGroups(Construct):
    """Security groups for GPU instances and for FSx for Lustre.

    compute: egress HTTPS (endpoints, S3, ECR) and all traffic within itself (NCCL, EFA);
    fsx: Lustre ports from compute only (and from itself: Lustre servers talk to each other).
    Without `fsx` (FSx disabled) there is no FSx group and no Lustre rule: `fsx` is None.
    """

    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, fsx: bool = True) -> None:
        super().__init__(scope, construct_id)
        self.compute = ec2.SecurityGroup(
            self,
            "Compute",
            vpc=vpc,
            description="GPU training instances: HTTPS out, all traffic among themselves (NCCL/EFA)",
            allow_all_outbound=False,
        )
        self.compute.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs, ECR, S3")
        self.compute.add_ingress_rule(self.compute, ec2.Port.all_traffic(), "NCCL/EFA between training nodes")
        acknowledge_compliance(
            self.compute,
            "EC2RestrictedCommonPorts",
            "The all-traffic ingress rule's only source is this security group itself: training "
            "nodes exchange NCCL/EFA traffic on dynamic ports; nothing outside the group can connect.",
        )
        self.compute.add_egress_rule(self.compute, ec2.Port.all_traffic(), "NCCL/EFA between training nodes")

        self.fsx: ec2.SecurityGroup | None = None
        if not fsx:
            return
        self.fsx = ec2.SecurityGroup(
            self,
            "Fsx",
            vpc=vpc,
            description="FSx for Lustre: Lustre ports from the compute security group only",
            allow_all_outbound=False,
        )
        for port in LUSTRE_PORTS:
            self.fsx.add_ingress_rule(self.compute, port, "Lustre from GPU instances")
            self.fsx.add_ingress_rule(self.fsx, port, "Lustre between file servers")
            self.fsx.add_egress_rule(self.fsx, port, "Lustre between file servers")
            self.compute.add_egress_rule(self.fsx, port, "Lustre client to FSx")
