"""The model registry in moto: `promote`, `models list/show`, NAME@ALIAS for submit, and the
conditional write that keeps two promotes from taking the same version."""

from __future__ import annotations

import json

import pytest

from bertbatch.models import registry
from bertbatch_contract import layout

from .helpers import deny_s3_puts, one_line_error, stage_model

pytestmark = pytest.mark.usefixtures("default_model_staged")

METRICS = {"eval_accuracy": 0.91, "eval_f1": 0.9, "train_loss": 0.2}


def put_finished_run(platform, run_id: str, metrics: dict | None = METRICS, *, labels: bool = True) -> None:
    """A training run's output as the trainer leaves it (metrics.json last)."""
    prefix = layout.run_prefix(run_id)
    extra = {prefix + "config.json": b'{"model_type": "bert"}',
             prefix + layout.TRAINING_ARGS_FILE: json.dumps({"train": "s3://d/datasets/train.tsv",
                                                             "eval": "s3://d/datasets/dev.tsv",
                                                             "text_column": "sentence"}).encode()}
    if labels:
        extra[prefix + layout.LABEL_MAP_FILE] = b'{"labels": ["negative", "positive"]}'
    platform.put_run(run_id, metrics, extra)


def stored(platform, key: str) -> dict:
    return json.loads(platform.s3.get_object(Bucket=platform.artifacts_bucket, Key=key)["Body"].read())


def promote(bb, *args: str) -> dict:
    r = bb("promote", *args, "-o", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_promote_records_a_version_and_moves_the_alias(platform, bb):
    put_finished_run(platform, "run-a")
    put_finished_run(platform, "run-b", {**METRICS, "eval_accuracy": 0.95})
    first = promote(bb, "run-a", "--name", "sst2-sentiment", "--alias", "production")
    assert (first["version"], first["created"], first["previous_version"]) == (1, True, None)
    second = promote(bb, "run-b", "--name", "sst2-sentiment", "--alias", "production")
    assert (second["version"], second["created"], second["previous_version"]) == (2, True, 1)

    record = stored(platform, layout.model_version_key("sst2-sentiment", 2))
    assert record["run_id"] == "run-b"
    assert record["uri"] == f"s3://{platform.artifacts_bucket}/{layout.run_prefix('run-b')}"
    assert record["metrics"]["eval_accuracy"] == 0.95
    assert record["data"]["train"] == "s3://d/datasets/train.tsv"
    assert record["created_by"].startswith("arn:aws:")  # the STS caller identity
    assert stored(platform, layout.model_alias_key("sst2-sentiment", "production"))["version"] == 2


def test_promoting_the_same_run_again_reuses_its_version(platform, bb):
    put_finished_run(platform, "run-a")
    promote(bb, "run-a", "--name", "m", "--alias", "staging")
    again = promote(bb, "run-a", "--name", "m", "--alias", "production")
    assert (again["version"], again["created"]) == (1, False)
    keys = [o["Key"] for o in platform.s3.list_objects_v2(Bucket=platform.artifacts_bucket,
                                                            Prefix=layout.model_prefix("m"))["Contents"]]
    assert sorted(keys) == sorted([layout.model_version_key("m", 1), layout.model_alias_key("m", "staging"),
                                   layout.model_alias_key("m", "production")])


def test_only_a_finished_run_with_labels_can_be_promoted(platform, bb):
    put_finished_run(platform, "running", metrics=None)
    one_line_error(bb("promote", "running", "--name", "m"), "run running has not finished", layout.METRICS_FILE)
    put_finished_run(platform, "no-labels", labels=False)
    one_line_error(bb("promote", "no-labels", "--name", "m"), layout.LABEL_MAP_FILE)
    one_line_error(bb("promote", "run-a", "--name", "m", "--alias", "3"), "--alias '3'")
    stage_model(platform.s3, platform.artifacts_bucket, "base")
    put_finished_run(platform, "run-a")
    one_line_error(bb("promote", "run-a", "--name", "base"), "staged base model")


def registry_keys(platform, name: str = "m") -> list[str]:
    found = platform.s3.list_objects_v2(Bucket=platform.artifacts_bucket, Prefix=layout.model_prefix(name))
    return sorted(o["Key"] for o in found.get("Contents", []))


@pytest.mark.parametrize(("args", "fragment"), [
    (["run-a", "--name", "m", "--alias", "production\n"], "--alias 'production\\n'"),
    (["run-a", "--name", "m\n", "--alias", "production"], "--name 'm\\n'"),
    (["run-a\n", "--name", "m", "--alias", "production"], "RUN_ID 'run-a\\n'"),
])
def test_a_name_with_a_trailing_newline_is_refused_before_any_write(platform, bb, args, fragment):
    put_finished_run(platform, "run-a")
    one_line_error(bb("promote", *args), fragment)
    assert registry_keys(platform) == []


def fail_alias_writes(monkeypatch) -> None:
    """PutObject of an alias record is denied (a policy that allows versions/ only, say)."""
    deny_s3_puts(monkeypatch, lambda path: f"/{layout.MODEL_ALIASES_DIR}" in path)


def test_a_failed_alias_write_removes_the_version_it_recorded(platform, bb, monkeypatch):
    put_finished_run(platform, "run-a")
    fail_alias_writes(monkeypatch)
    alias_uri = f"s3://{platform.artifacts_bucket}/{layout.model_alias_key('m', 'production')}"
    one_line_error(bb("promote", "run-a", "--name", "m", "--alias", "production"),
                   f"--alias production: cannot write {alias_uri} (AccessDenied)", "nothing was promoted")
    assert registry_keys(platform) == []


def test_a_failed_alias_write_keeps_a_version_registered_before(platform, bb, monkeypatch):
    put_finished_run(platform, "run-a")
    promote(bb, "run-a", "--name", "m")
    fail_alias_writes(monkeypatch)
    one_line_error(bb("promote", "run-a", "--name", "m", "--alias", "production"),
                   "(AccessDenied); version 1 was already registered and is unchanged")
    assert registry_keys(platform) == [layout.model_version_key("m", 1)]


def test_a_lost_conditional_write_takes_the_next_version(platform):
    """Another promote writes version 1 between this one's listing and its write."""
    put_finished_run(platform, "run-a")
    put_finished_run(platform, "run-b")
    store = registry.S3Store(platform.s3, platform.artifacts_bucket)
    real_create = store.create
    raced = []

    def create(key: str, body: bytes) -> bool:
        if not raced:
            raced.append(key)
            registry.promote(registry.S3Store(platform.s3, platform.artifacts_bucket), "run-b", "m", None, "other")
        return real_create(key, body)

    store.create = create  # type: ignore[method-assign]
    result = registry.promote(store, "run-a", "m", "production", "me")
    assert raced == [layout.model_version_key("m", 1)]
    assert (result.version, result.created) == (2, True)
    assert [r["run_id"] for r in registry.versions(store, "m")] == ["run-b", "run-a"]


def test_s3_refuses_a_second_create_of_a_version(platform):
    store = registry.S3Store(platform.s3, platform.artifacts_bucket)
    assert store.create("models/m/versions/000001.json", b"{}") is True
    assert store.create("models/m/versions/000001.json", b"{}") is False


def test_models_list_and_show(platform, bb):
    stage_model(platform.s3, platform.artifacts_bucket, "tiny-base")
    put_finished_run(platform, "run-a")
    put_finished_run(platform, "run-b")
    promote(bb, "run-a", "--name", "sst2-sentiment", "--alias", "production")
    promote(bb, "run-b", "--name", "sst2-sentiment", "--alias", "staging")
    listed = {r["name"]: r for r in map(json.loads, bb("models", "list", "-o", "json").output.splitlines())}
    assert listed["sst2-sentiment"]["kind"] == "registered"
    assert (listed["sst2-sentiment"]["versions"], listed["sst2-sentiment"]["aliases"]) == (
        2, {"production": 1, "staging": 2})
    assert (listed["tiny-base"]["kind"], listed["tiny-base"]["state"]) == ("staged", "staged")
    table = bb("models", "list").output
    assert "production=1, staging=2" in table

    shown = [json.loads(line) for line in bb("models", "show", "sst2-sentiment", "-o", "json").output.splitlines()]
    assert [(r["version"], r["run_id"], r["aliases"]) for r in shown] == [(1, "run-a", ["production"]),
                                                                           (2, "run-b", ["staging"])]
    assert shown[0]["metrics"] == METRICS
    assert "0.9100" in bb("models", "show", "sst2-sentiment").output
    one_line_error(bb("models", "show", "nothing"), "model 'nothing' has no registered versions")


def put_corrupt(platform, key: str) -> str:
    """A record cut short (an interrupted upload by hand, a bad edit): not valid JSON."""
    platform.s3.put_object(Bucket=platform.artifacts_bucket, Key=key, Body=b'{"version": 2, "run_')
    return f"s3://{platform.artifacts_bucket}/{key}"


def test_one_corrupt_record_is_flagged_and_the_others_listed(platform, bb):
    put_finished_run(platform, "run-a")
    promote(bb, "run-a", "--name", "good", "--alias", "production")
    promote(bb, "run-a", "--name", "bad", "--alias", "production")
    corrupt_version = put_corrupt(platform, layout.model_version_key("bad", 2))
    corrupt_alias = put_corrupt(platform, layout.model_alias_key("bad", "staging"))
    r = bb("models", "list", "-o", "json")
    assert r.exit_code == 0, r.output
    listed = {m["name"]: m for m in map(json.loads, r.stdout.splitlines())}
    assert (listed["good"]["state"], listed["good"]["corrupt"]) == ("registered", [])
    bad = listed["bad"]
    assert (bad["state"], bad["versions"], bad["aliases"]) == ("corrupt", 1, {"production": 1})
    assert bad["corrupt"] == [f"{corrupt_alias}: not valid JSON", f"{corrupt_version}: not valid JSON"]
    table = bb("models", "list")
    assert table.exit_code == 0 and "corrupt" in table.stdout
    assert f"Warning: corrupt record {corrupt_version}: not valid JSON" in table.stderr
    shown = bb("models", "show", "bad", "-o", "json")
    assert [json.loads(line)["version"] for line in shown.stdout.splitlines()] == [1]
    assert corrupt_version in shown.stderr


def test_promote_repairs_a_corrupt_alias_by_overwriting_it(platform, bb):
    put_finished_run(platform, "run-a")
    promote(bb, "run-a", "--name", "m")
    put_corrupt(platform, layout.model_alias_key("m", "production"))
    result = promote(bb, "run-a", "--name", "m", "--alias", "production")
    assert (result["version"], result["previous_version"]) == (1, None)
    assert stored(platform, layout.model_alias_key("m", "production"))["version"] == 1


def test_promote_skips_a_corrupt_version_number(platform, bb):
    put_finished_run(platform, "run-a")
    put_corrupt(platform, layout.model_version_key("m", 1))
    assert promote(bb, "run-a", "--name", "m")["version"] == 2


def test_models_import_refuses_a_registered_name(platform, bb, tmp_path):
    put_finished_run(platform, "run-a")
    promote(bb, "run-a", "--name", "taken")
    src = tmp_path / "taken"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "vocab.txt").write_text("[PAD]\n")
    (src / "model.safetensors").write_bytes(b"w")
    one_line_error(bb("models", "import", src), "model 'taken' is a registered model")


def test_submit_takes_name_at_alias_or_version_as_its_base_model(platform, bb, submit_spy):
    put_finished_run(platform, "run-a")
    put_finished_run(platform, "run-b")
    promote(bb, "run-a", "--name", "m", "--alias", "production")
    promote(bb, "run-b", "--name", "m")
    train = platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    for model, run_id in (("m@production", "run-a"), ("m@2", "run-b")):
        r = bb("submit", "--train", train, "--model", model)
        assert r.exit_code == 0, r.output
        assert submit_spy[-1]["parameters"]["model"] == f"s3://{platform.artifacts_bucket}/runs/{run_id}/"
    one_line_error(bb("submit", "--train", train, "--model", "m@canary"), "model 'm' has no alias 'canary'",
                   "production")
    one_line_error(bb("submit", "--train", train, "--model", "m@7"), "model 'm' has no version 7")


def test_submit_refuses_random_models(platform, bb, submit_spy):
    train = platform.put_dataset("datasets/train.tsv")
    platform.put_dataset("datasets/dev.tsv")
    one_line_error(bb("submit", "--train", train, "--model", "random:tiny"),
                   "random:* models are built on this machine for tests and benchmarks: use bertbatch local, "
                   "or stage a model with bertbatch models import DIR")
    assert submit_spy == []
