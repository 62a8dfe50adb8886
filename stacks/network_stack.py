"""Network stack: the VPC, its endpoints and flow logs, and the security groups."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack, aws_ec2 as ec2
from constructs import Construct

from platform_constructs.kms import ProjectKey
from platform_constructs.logs import encrypted_log_group
from platform_constructs.network import ComputeSecurityGroups, GpuVpc
from stacks.config import PlatformConfig


class NetworkStack(Stack):
    """Exposes `vpc`, `compute_subnets`, `private_subnets`, `compute_security_group`,
    `fsx_security_group`."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = config.removal_policy_value
        flow_log_group = None
        if config.network.existing_vpc is None:
            logs_key = ProjectKey(
                self,
                "LogsKey",
                alias=f"alias/{config.project_name}-{config.profile}-network-logs",
                description=f"{config.project_name} {config.profile}: VPC flow logs",
                removal_policy=removal,
            )
            prefix = f"/{config.project_name}/{config.profile}/"
            logs_key.allow_log_groups(prefix)
            flow_log_group = encrypted_log_group(
                self,
                "FlowLogs",
                name=f"{prefix}vpc-flow-logs",
                key=logs_key.key,
                days=config.network.flow_log_retention_days,
                removal_policy=removal,
            )
        network = GpuVpc(self, "Network", config=config.network, flow_log_group=flow_log_group)
        groups = ComputeSecurityGroups(self, "SecurityGroups", vpc=network.vpc)

        self.vpc: ec2.IVpc = network.vpc
        self.compute_subnets: ec2.SubnetSelection = network.compute_subnets
        self.private_subnets = list(network.private_subnets)
        self.compute_security_group: ec2.ISecurityGroup = groups.compute
        self.fsx_security_group: ec2.ISecurityGroup = groups.fsx
