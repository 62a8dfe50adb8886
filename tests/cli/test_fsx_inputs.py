"""`submit --train /fsx/...`: accepted when the profile has FSx (checked through the data-bucket
object the path mirrors), refused with one line when it has none."""

from __future__ import annotations

import pytest

from bertbatch_contract import discovery
from bertbatch_contract.naming import Naming

from .helpers import one_line_error

pytestmark = pytest.mark.usefixtures("default_model_staged")


def test_fsx_path_is_sent_as_given(platform, bb, submit_spy):
    assert platform.names[discovery.FSX_MOUNT_PATH] == "/fsx"
    platform.put_dataset("datasets/sst2/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    r = bb("submit", "--train", "/fsx/datasets/sst2/train.tsv")
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["parameters"]["train_uri"] == "/fsx/datasets/sst2/train.tsv"


def test_fsx_path_must_exist_in_the_linked_bucket(platform, bb, submit_spy):
    platform.put_dataset("datasets/dev.tsv")
    one_line_error(bb("submit", "--train", "/fsx/datasets/missing.tsv"),
                   "--train /fsx/datasets/missing.tsv (from FSx)", "no such object")
    assert submit_spy == []


def test_fsx_path_is_refused_without_fsx(platform, bb, submit_spy):
    platform.client("ssm").put_parameter(Name=Naming(platform.profile).parameter(discovery.FSX_MOUNT_PATH),
                                         Value="none", Type="String", Overwrite=True)
    one_line_error(bb("submit", "--train", "/fsx/datasets/sst2/train.tsv"),
                   "--train /fsx/datasets/sst2/train.tsv: this profile has no FSx file system")
    assert submit_spy == []


@pytest.mark.parametrize("path", ["/home/me/train.tsv", "/fsx/../etc/passwd"])
def test_other_local_paths_are_refused(platform, bb, submit_spy, path):
    one_line_error(bb("submit", "--train", path), f"--train {path}: use an s3:// URI, a path under /fsx/")
    assert submit_spy == []
