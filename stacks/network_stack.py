"""Network stack: the VPC, its endpoints and flow logs, and the security groups."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from platform_constructs.kms import ProjectKey
from platform_constructs.logs import encrypted_log_group
from platform_constructs.network import ComputeSecurityGroups, GpuVpc, ImportedVpc
from stacks.config import PlatformConfig


class NetworkStack(Stack):
    """Exposes `vpc`, `compute_subnets`, `private_subnets`, `compute_security_group`,
    `fsx_security_group` (None when FSx is disabled)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        naming, network_config = config.naming, config.network
        existing = network_config.existing_vpc
        network: GpuVpc | ImportedVpc
        if existing is not None:
            network = ImportedVpc(
                self,
                "Network",
                vpc_id=existing.vpc_id,
                vpc_cidr=existing.vpc_cidr,
                availability_zones=existing.availability_zones,
                private_subnet_ids=existing.private_subnet_ids,
                private_subnet_route_table_ids=existing.private_subnet_route_table_ids,
            )
        else:
            removal = config.removal_policy_value
            logs_key = ProjectKey(
                self,
                "LogsKey",
                alias=naming.key_alias("network-logs"),
                description=f"{naming.project} {naming.profile}: VPC flow logs",
                removal_policy=removal,
            )
            logs_key.allow_log_groups(naming.path)
            flow_log_group = encrypted_log_group(
                self,
                "FlowLogs",
                name=naming.log_group("vpc-flow-logs"),
                key=logs_key.key,
                days=network_config.flow_log_retention_days,
                removal_policy=removal,
            )
            network = GpuVpc(
                self,
                "Network",
                vpc_cidr=network_config.vpc_cidr,
                availability_zones=network_config.availability_zones,
                az_count=network_config.az_count,
                nat_gateways=network_config.nat_gateways,
                interface_endpoints=network_config.interface_endpoints,
                interface_endpoint_az_count=network_config.interface_endpoint_az_count,
                flow_log_group=flow_log_group,
            )
        groups = ComputeSecurityGroups(self, "SecurityGroups", vpc=network.vpc, fsx=config.data.fsx.enabled)

        self.vpc: ec2.IVpc = network.vpc
        self.compute_subnets: ec2.SubnetSelection = network.compute_subnets
        self.private_subnets = list(network.private_subnets)
        self.compute_security_group: ec2.ISecurityGroup = groups.compute
        self.fsx_security_group: ec2.ISecurityGroup | None = groups.fsx
