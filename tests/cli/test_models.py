"""Model staging: `models import` / `models list`, and `submit --model` resolving staged names
and refusing hub models jobs cannot download. Nothing reaches a model hub: the hub download is
monkeypatched."""

from __future__ import annotations

import hashlib
import json

import pytest

from bertbatch_contract import discovery, hyperparameters, layout
from bertbatch_contract.naming import Naming

from .helpers import deny_s3_puts, hook_clients, one_line_error, stage_model, submitted_id

HUB_ERROR = ("Error: model 'bert-base-uncased' is not staged and jobs cannot reach the internet: "
             "run bertbatch models import bert-base-uncased")


def model_dir(root, *, weights: bytes = b"\x00weights\x01", config: str = '{"model_type": "bert"}'):
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(config)
    (root / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\ngood\n")
    (root / "tokenizer_config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(weights)
    (root / ".cache").mkdir(exist_ok=True)
    (root / ".cache" / "lock").write_text("not uploaded")
    return root


@pytest.fixture
def puts(monkeypatch):
    """Keys of every S3 object written (PutObject and uploads) through bertbatch.core.aws_clients.make_client."""
    keys: list[str] = []

    def record(params, **_):
        keys.append(params["Key"])

    hook_clients(monkeypatch, *((f"provide-client-params.s3.{op}", record) for op in ("PutObject",
                                                                                     "CreateMultipartUpload")))
    return keys


def objects(platform, prefix: str) -> dict[str, dict]:
    found = platform.s3.list_objects_v2(Bucket=platform.artifacts_bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: o for o in found}


def manifest(platform, name: str) -> dict:
    body = platform.s3.get_object(Bucket=platform.artifacts_bucket, Key=layout.model_manifest_key(name))["Body"]
    return json.loads(body.read())


# --- import ------------------------------------------------------------------------------------
def test_import_a_local_directory_uploads_files_then_the_manifest(platform, bb, tmp_path, puts):
    src = model_dir(tmp_path / "tiny-bert")
    r = bb("models", "import", src)
    assert r.exit_code == 0, r.output
    prefix = layout.model_prefix("tiny-bert")
    assert f"Staged model tiny-bert at s3://{platform.artifacts_bucket}/{prefix}" in r.output
    assert set(objects(platform, prefix)) == {"config.json", "vocab.txt", "tokenizer_config.json",
                                              "model.safetensors", "manifest.json"}
    assert puts[-1] == layout.model_manifest_key("tiny-bert")  # written last
    m = manifest(platform, "tiny-bert")
    files = {f["path"]: f for f in m["files"]}
    weights = (src / "model.safetensors").read_bytes()
    assert files["model.safetensors"] == {"path": "model.safetensors", "size": len(weights),
                                          "sha256": hashlib.sha256(weights).hexdigest()}
    assert m["source"] == str(src.resolve()) and m["name"] == "tiny-bert" and m["format"] == 1
    assert m["total_bytes"] == sum(f["size"] for f in m["files"])
    head = platform.s3.head_object(Bucket=platform.artifacts_bucket, Key=prefix + "model.safetensors")
    assert head["Metadata"]["sha256"] == hashlib.sha256(weights).hexdigest()


def test_reimporting_the_same_files_uploads_nothing(platform, bb, tmp_path, puts):
    src = model_dir(tmp_path / "m")
    assert bb("models", "import", src, "--name", "m1").exit_code == 0
    written = len(puts)
    r = bb("models", "import", src, "--name", "m1")
    assert r.exit_code == 0, r.output
    assert "already staged with these files" in r.output
    assert len(puts) == written


def test_interrupted_import_is_not_staged_and_resumes(platform, bb, tmp_path, monkeypatch):
    import botocore.exceptions

    from bertbatch.core import aws_clients as aws

    src = model_dir(tmp_path / "m")
    uploads: list[str] = []

    def drop_the_third_upload(params, **_):
        uploads.append(params["url_path"])
        if len(uploads) == 3:  # the network goes away half-way
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    real = hook_clients(monkeypatch, ("before-call.s3.PutObject", drop_the_third_upload))
    r = bb("models", "import", src, "--name", "half")
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith("Error: cannot reach AWS"), r.output
    assert "manifest.json" not in objects(platform, layout.model_prefix("half"))
    listed = [json.loads(line) for line in bb("models", "list", "-o", "json").output.splitlines()]
    assert [(m["name"], m["state"]) for m in listed] == [("half", "incomplete")]
    train = put_inputs(platform)
    assert one_line_error(bb("submit", "--train", train, "--model", "half")).startswith(
        "Error: model 'half' is not staged")

    monkeypatch.setattr(aws, "make_client", real)
    r = bb("models", "import", src, "--name", "half")
    assert r.exit_code == 0, r.output
    assert "(2 uploaded, 2 unchanged" in r.output  # the two that finished before are kept
    assert manifest(platform, "half")["name"] == "half"


@pytest.mark.parametrize(("remove", "fragment"), [
    ("config.json", "no config.json: not a model directory"),
    ("vocab.txt", "no tokenizer files"),
    ("model.safetensors", "no model weights"),
])
def test_import_checks_the_directory_before_uploading(platform, bb, tmp_path, puts, remove, fragment):
    src = model_dir(tmp_path / "m")
    (src / remove).unlink()
    one_line_error(bb("models", "import", src), str(src), fragment)
    assert puts == []


def test_import_refuses_a_bad_config_and_a_bad_name(platform, bb, tmp_path, puts):
    src = model_dir(tmp_path / "m", config="{nope")
    one_line_error(bb("models", "import", src), "config.json: not valid JSON")
    one_line_error(bb("models", "import", model_dir(tmp_path / "ok"), "--name", "bad name"),
                   "--name 'bad name': a model name is letters, digits")
    one_line_error(bb("models", "import", model_dir(tmp_path / "ok"), "--name", "a..b"), "--name 'a..b'")
    assert puts == []


def test_other_files_under_a_staged_name_need_replace(platform, bb, tmp_path):
    assert bb("models", "import", model_dir(tmp_path / "a"), "--name", "x").exit_code == 0
    changed = model_dir(tmp_path / "b", weights=b"other weights")
    (changed / "vocab.txt").unlink()
    (changed / "tokenizer.json").write_text("{}")
    one_line_error(bb("models", "import", changed, "--name", "x"), "already staged", "--replace")
    r = bb("models", "import", changed, "--name", "x", "--replace")
    assert r.exit_code == 0, r.output
    assert "vocab.txt" not in objects(platform, layout.model_prefix("x"))  # the old version's file is gone
    assert {f["path"] for f in manifest(platform, "x")["files"]} == {
        "config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"}


def test_import_from_the_hub_downloads_on_this_machine(platform, bb, tmp_path, monkeypatch):
    import huggingface_hub

    calls: list[dict] = []
    snapshot = model_dir(tmp_path / "snapshot")

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    r = bb("models", "import", "google/bert_uncased_L-2_H-128_A-2", "-o", "json")
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    assert record["name"] == "google--bert_uncased_L-2_H-128_A-2" and record["uploaded"] == 4
    (call,) = calls
    assert call["repo_id"] == "google/bert_uncased_L-2_H-128_A-2"
    assert "*.safetensors" in call["allow_patterns"] and "*.h5" not in call["allow_patterns"]
    assert manifest(platform, "google--bert_uncased_L-2_H-128_A-2")["source"] == "hf://google/bert_uncased_L-2_H-128_A-2"


def test_hub_without_safetensors_falls_back_to_bin(platform, bb, tmp_path, monkeypatch):
    import huggingface_hub

    with_bin = model_dir(tmp_path / "bin")
    (with_bin / "model.safetensors").unlink()
    (with_bin / "pytorch_model.bin").write_bytes(b"bin")
    no_weights = model_dir(tmp_path / "none")
    (no_weights / "model.safetensors").unlink()
    patterns: list[list[str]] = []

    def fake(**kwargs):
        patterns.append(kwargs["allow_patterns"])
        return str(with_bin if "*.bin" in kwargs["allow_patterns"] else no_weights)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    r = bb("models", "import", "bert-base-uncased")
    assert r.exit_code == 0, r.output
    assert [("*.safetensors" in p, "*.bin" in p) for p in patterns] == [(True, False), (False, True)]
    assert "pytorch_model.bin" in objects(platform, layout.model_prefix("bert-base-uncased"))


def test_hub_download_failure_is_one_line(platform, bb, monkeypatch):
    import huggingface_hub

    def fake(**kwargs):
        raise OSError("Repository Not Found for url: https://huggingface.co/api/models/nope/x\nmore")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    r = bb("models", "import", "nope/x")
    assert r.exit_code == 1 and r.output.splitlines()[-1] == (
        "Error: cannot download 'nope/x' from the Hugging Face hub: "
        "Repository Not Found for url: https://huggingface.co/api/models/nope/x"), r.output


def test_import_needs_a_deployment_before_downloading(aws, bb, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **_: pytest.fail("downloaded"))
    one_line_error(bb("models", "import", "bert-base-uncased"), "not deployed")


def test_models_list_table_and_json(platform, bb, tmp_path):
    assert bb("models", "list").output.startswith("No models staged")
    assert bb("models", "import", model_dir(tmp_path / "m"), "--name", "m1").exit_code == 0
    r = bb("models", "list")
    assert r.exit_code == 0, r.output
    (row,) = [line for line in r.output.splitlines() if line.startswith("m1")]
    assert row.split()[:3] == ["m1", "staged", "4"]
    (record,) = [json.loads(line) for line in bb("models", "list", "-o", "json").output.splitlines()]
    assert record["name"] == "m1" and record["state"] == "staged" and record["files"] == 4
    assert record["uri"] == f"s3://{platform.artifacts_bucket}/models/m1/"


def test_an_upload_failure_is_one_line_and_nothing_is_staged(platform, bb, tmp_path, monkeypatch):
    deny_s3_puts(monkeypatch, lambda path: path.endswith("/model.safetensors"))
    src = model_dir(tmp_path / "m")
    key = layout.model_prefix("denied") + "model.safetensors"
    r = bb("models", "import", src, "--name", "denied")
    # the files uploaded before it are listed (stderr), then one error line and no traceback
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    error = r.output.splitlines()[-1]
    assert error.startswith(f"Error: cannot upload {src / 'model.safetensors'} to "
                            f"s3://{platform.artifacts_bucket}/{key} (AccessDenied)"), error
    assert "not staged" in error
    assert "manifest.json" not in objects(platform, layout.model_prefix("denied"))
    listed = [json.loads(line) for line in bb("models", "list", "-o", "json").output.splitlines()]
    assert [(m["name"], m["state"]) for m in listed] == [("denied", "incomplete")]


# --- submit --model ------------------------------------------------------------------------------
def put_inputs(platform) -> str:
    platform.put_dataset("datasets/dev.tsv")
    return platform.put_dataset("datasets/train.tsv")


def test_submit_a_staged_name_sends_its_s3_prefix(platform, bb, submit_spy):
    uri = stage_model(platform.s3, platform.artifacts_bucket, "my-bert")
    r = bb("submit", "--train", put_inputs(platform), "--model", "my-bert")
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["parameters"]["model"] == uri == f"s3://{platform.artifacts_bucket}/models/my-bert/"


def test_submit_a_hub_id_with_org_finds_its_staged_name(platform, bb, submit_spy):
    uri = stage_model(platform.s3, platform.artifacts_bucket, "google--bert_uncased_L-2_H-128_A-2")
    r = bb("submit", "--train", put_inputs(platform), "--model", "google/bert_uncased_L-2_H-128_A-2")
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["parameters"]["model"] == uri


def test_submit_refuses_a_hub_model_that_is_not_staged(platform, bb, submit_spy):
    r = bb("submit", "--train", put_inputs(platform), "--model", "bert-base-uncased")
    assert one_line_error(r) == HUB_ERROR
    assert submit_spy == []


def test_submit_refuses_the_default_model_when_it_is_not_staged(platform, bb, submit_spy):
    assert hyperparameters.default("model") == "bert-base-uncased"
    assert one_line_error(bb("submit", "--train", put_inputs(platform))) == HUB_ERROR
    assert submit_spy == []


def test_submit_sends_the_staged_default_model(platform, bb, submit_spy):
    uri = stage_model(platform.s3, platform.artifacts_bucket, "bert-base-uncased")
    r = bb("submit", "--train", put_inputs(platform))
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["parameters"]["model"] == uri


def test_a_corrupt_manifest_is_listed_as_corrupt_and_refused_by_submit(platform, bb, submit_spy):
    stage_model(platform.s3, platform.artifacts_bucket, "cut")
    key = layout.model_manifest_key("cut")
    platform.s3.put_object(Bucket=platform.artifacts_bucket, Key=key, Body=b'{"format": 1, "files": [')
    uri = f"s3://{platform.artifacts_bucket}/{key}"
    (record,) = [json.loads(line) for line in bb("models", "list", "-o", "json").output.splitlines()]
    assert (record["name"], record["state"], record["corrupt"]) == ("cut", "corrupt", [f"{uri}: not valid JSON"])
    one_line_error(bb("submit", "--train", put_inputs(platform), "--model", "cut"),
                   f"--model cut: staged model 'cut' has a corrupt manifest, {uri}: not valid JSON")
    assert submit_spy == []


@pytest.mark.parametrize("model", ["s3://somewhere/models/x/", "s3://elsewhere/runs/r-1/"])
def test_submit_passes_s3_models_through(platform, bb, submit_spy, model):
    r = bb("submit", "--train", put_inputs(platform), "--model", model)
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["parameters"]["model"] == model


def test_submit_passes_a_hub_name_through_when_jobs_reach_the_internet(platform, bb, submit_spy):
    platform.client("ssm").put_parameter(Name=Naming(platform.profile).parameter(discovery.INTERNET_EGRESS),
                                         Value="true", Type="String", Overwrite=True)
    r = bb("submit", "--train", put_inputs(platform), "--model", "bert-large-uncased")
    assert r.exit_code == 0, r.output
    assert submit_spy[0]["parameters"]["model"] == "bert-large-uncased"


def test_submit_grid_rows_resolve_their_models(platform, bb, submit_spy, tmp_path):
    uri = stage_model(platform.s3, platform.artifacts_bucket, "bert-base-uncased")
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps([{"model": "bert-base-uncased"}, {"model": "s3://somewhere/models/x/"}]))
    r = bb("submit", "--train", put_inputs(platform), "--grid", grid)
    assert r.exit_code == 0, r.output
    env = {e["name"]: e["value"] for e in submit_spy[0]["containerOverrides"]["environment"]}
    assert [row["model"] for row in json.loads(env["BERT_BATCH_GRID"])] == [uri, "s3://somewhere/models/x/"]
    grid.write_text(json.dumps([{"model": "bert-large-uncased"}, {"model": "s3://somewhere/models/x/"}]))
    one_line_error(bb("submit", "--train", put_inputs(platform), "--grid", grid), "model 'bert-large-uncased'")
    submitted_id(r.output)
