"""A job as AWS Batch would run it, end to end on the CPU.

`bertbatch submit` makes the SubmitJob request against the platform the synthesized templates
declare (tests/platform_from_templates.py) in a moto server. The job definition's command, its
parameter defaults overridden by the request's parameters (Batch's `Ref::` substitution), the
definition's environment overridden by the request's, and the variables Batch itself sets then
run through the image's real entrypoint script, one process per node: the trainer reads the
SST-2 fixture from the data bucket and writes its model and metrics to the artifacts bucket over
HTTP. `bertbatch status`, `artifacts` and `runs` read back what it wrote.

Multi-node: node 0 and node 1 of the multi-node definition as two processes on 127.0.0.1,
torchrun with gloo; Batch gives the main node's address to the child node only.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bertbatch.cli import cli
from bertbatch.core import aws_clients as bertbatch_aws
from bertbatch_contract import discovery, job, layout, teams
from tests.conftest import FIXTURES, REPO, start_moto_server
from tests.container.conftest import subprocess_env
from tests.platform_from_templates import Deployed, deploy
from tests.submit_job_rules import SubmitJobRules, check_cli_submits, node_range

pytestmark = pytest.mark.slow

PROFILE, REGION = "dev", "us-east-1"
ENTRYPOINT = REPO / "training_container" / "entrypoint.sh"
SST2 = FIXTURES / "sst2"
VOCAB = FIXTURES / "vocab.txt"
MAX_STEPS = 4
NODE_TIMEOUT_SECONDS = 240
# The model: a tiny randomly initialised BERT saved as a model directory (config, weights, the
# fixture vocab's tokenizer), staged with `bertbatch models import DIR --name tiny`, so the job as
# the CLI sends it (`--model tiny` -> the staged s3:// prefix) runs without test-only flags. A quick
# run needs --max-steps, a container-only flag with no job parameter and no CLI option: the test
# appends it to the resolved command, as a SubmitJob containerOverrides.command would carry it.
STAGED_MODEL = "tiny"
CONTAINER_ONLY_FLAGS = ("--max-steps", str(MAX_STEPS))


# --- the platform in a moto server -------------------------------------------------------------
@pytest.fixture
def moto_endpoint(monkeypatch, tmp_path) -> Iterator[str]:
    """A moto server on 127.0.0.1 that the CLI, the test and the container processes all talk to,
    with fake credentials and no AWS config, and moto's Docker-less Batch."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN", "BERT_BATCH_PROFILE",
                "BERT_BATCH_PROJECT", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    server, endpoint = start_moto_server()
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"), "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    saved = moto_api(endpoint, "config")
    try:
        # moto keeps state and configuration per process, not per server: start empty, restore after.
        moto_api(endpoint, "reset", post=True)
        moto_api(endpoint, "config", {"batch": {"use_docker": False}}, post=True)  # no Docker: jobs succeed at once
        yield endpoint
    finally:
        moto_api(endpoint, "config", {"batch": saved["batch"]}, post=True)
        server.stop()


def moto_api(endpoint: str, path: str, body: dict | None = None, *, post: bool = False) -> dict:
    """Call moto's own API (/moto-api/reset, /moto-api/config); the JSON answer, or {}."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{endpoint}/moto-api/{path}", data=data, method="POST" if post else "GET")
    with urllib.request.urlopen(request) as response:
        text = response.read()
    return json.loads(text) if text.strip().startswith(b"{") else {}


@dataclass
class Platform:
    deployed: Deployed
    endpoint: str
    submitted: list[dict] = field(default_factory=list)  # SubmitJob parameters the CLI sent

    @property
    def data_bucket(self) -> str:
        return self.deployed.names[discovery.DATA_BUCKET]

    @property
    def artifacts_bucket(self) -> str:
        return self.deployed.names[discovery.ARTIFACTS_BUCKET]

    def s3(self) -> Any:
        return bertbatch_aws.make_client("s3", region=REGION)


@pytest.fixture
def platform(moto_endpoint, monkeypatch) -> Iterator[Platform]:
    """The templates' platform in the server, the SST-2 fixture where the job definitions' default
    inputs point (datasets/train.tsv, datasets/dev.tsv), and every SubmitJob the CLI makes checked
    against SubmitJob's rules and recorded."""
    deployed = deploy(PROFILE, REGION)
    found = Platform(deployed=deployed, endpoint=moto_endpoint)
    rules = SubmitJobRules(definition_of=deployed.job_definition, shares_of=deployed.share_identifiers)
    found.submitted = check_cli_submits(monkeypatch, rules)
    s3 = found.s3()
    for key, name in ((layout.DEFAULT_TRAIN_KEY, "train.tsv"), (layout.DEFAULT_EVAL_KEY, "dev.tsv")):
        s3.upload_file(str(SST2 / name), found.data_bucket, key)
    yield found
    assert rules.found == [], rules.found


def bertbatch(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="bertbatch",
                                terminal_width=200, color=False)
    assert result.exit_code == 0, result.output
    return result


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


# --- what Batch runs ---------------------------------------------------------------------------
def targets(target_nodes: str, node: int) -> bool:
    """Whether a `targetNodes` range (0:, 1:3, 2) holds `node`."""
    low, high = node_range(target_nodes)
    return low <= node and (high is None or node <= high)


def container_of(definition: dict, node: int | None) -> dict:
    """The container properties of the definition (single-node) or of the node range holding `node`."""
    if node is None:
        return definition["containerProperties"]
    for properties in definition["nodeProperties"]["nodeRangeProperties"]:
        if targets(properties["targetNodes"], node):
            return properties["container"]
    raise AssertionError(f"no node range of {definition['jobDefinitionName']} holds node {node}")


def overrides_of(request: dict, node: int | None) -> dict:
    """The container overrides of the request (single-node) or those targeting `node`."""
    if node is None:
        return request.get("containerOverrides") or {}
    merged: dict = {}
    for override in (request.get("nodeOverrides") or {}).get("nodePropertyOverrides", []):
        if targets(override["targetNodes"], node):
            merged.update(override.get("containerOverrides") or {})
    return merged


def resolved_command(definition: dict, request: dict, node: int | None = None) -> list[str]:
    """The command with `Ref::name` replaced the way Batch does: the request's parameters over
    the definition's defaults."""
    parameters = {**definition.get("parameters", {}), **request.get("parameters", {})}
    command = overrides_of(request, node).get("command") or container_of(definition, node)["command"]
    resolved = [parameters.get(word[len("Ref::"):], word) if word.startswith("Ref::") else word for word in command]
    unresolved = [word for word in resolved if word.startswith("Ref::")]
    assert not unresolved, f"no value for {unresolved}: Batch would pass them literally"
    return resolved


def job_environment(definition: dict, request: dict, node: int | None = None) -> dict[str, str]:
    """The definition's environment with the request's overrides (same name: the request wins)."""
    env = {e["name"]: e["value"] for e in container_of(definition, node).get("environment", [])}
    env.update({e["name"]: e["value"] for e in overrides_of(request, node).get("environment", [])})
    return env


def image_environment(tmp: Path) -> dict[str, str]:
    """What the Dockerfile's ENV gives every container, with the scratch and cache directories
    in this test's temporary directory."""
    return {"BERT_TRAIN_WORK_DIR": str(tmp / "work"), "BERT_TRAIN_CACHE_DIR": str(tmp / "cache"),
            "HF_HOME": str(tmp / "hf"), "BERT_TRAIN_IMAGE": "bert-batch-training:e2e"}


def start_node(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """The image's ENTRYPOINT with the job's command as its arguments, output to `log`."""
    base = subprocess_env()  # offline, one thread, bert_train and the contract on PYTHONPATH as in the image
    with open(log, "w") as out:
        return subprocess.Popen(["bash", str(ENTRYPOINT), *command], env={**base, **env}, stdout=out,
                                stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, log: Path) -> int:
    try:
        return process.wait(timeout=NODE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"node did not finish in {NODE_TIMEOUT_SECONDS} s:\n{log.read_text()[-3000:]}") from None


def batch_environment(platform: Platform, tmp: Path, definition: dict, request: dict, job_id: str,
                      node: int | None = None) -> dict[str, str]:
    """Everything a container of this job sees: the image's ENV, the job's environment, Batch's
    own variables, and the moto endpoint standing in for AWS."""
    env = {**image_environment(tmp), **job_environment(definition, request, node)}
    # The job's /fsx volume: an empty directory here, so the trainer falls back to S3 as on a host
    # whose FSx has not imported the datasets.
    if job.ENV_FSX_MOUNT in env:
        mount = tmp / "fsx"
        mount.mkdir(parents=True, exist_ok=True)
        env[job.ENV_FSX_MOUNT] = str(mount)
    node_job_id = job_id if node is None else f"{job_id}#{node}"  # a multi-node job's nodes are <job-id>#<node>
    env.update({job.ENV_BATCH_JOB_ID: node_job_id, job.ENV_BATCH_ATTEMPT: "1", "AWS_ENDPOINT_URL": platform.endpoint})
    return env


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-init BERT classifier with the fixture vocab's tokenizer, as a model directory."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.models.bert.tokenization_bert import BertTokenizerFast

    from bert_train import modeling

    directory = tmp_path_factory.mktemp("tiny-model")
    tokenizer = BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(modeling.random_config("random:tiny", len(tokenizer)))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def tiny_model(platform, tiny_model_dir) -> str:
    """The tiny model staged in the artifacts bucket; its s3:// prefix."""
    imported = json.loads(bertbatch("models", "import", str(tiny_model_dir), "--name", STAGED_MODEL,
                                    "-o", "json").stdout)
    return str(imported["uri"])


def submit(*args: str) -> dict:
    return json.loads(bertbatch("submit", "--model", STAGED_MODEL, "-o", "json", *args).stdout)


# --- checks of what the CLI reads back -------------------------------------------------------
def stored_json(platform: Platform, key: str) -> dict:
    return json.loads(platform.s3().get_object(Bucket=platform.artifacts_bucket, Key=key)["Body"].read())


def check_cli_reads_the_run(platform: Platform, job_id: str, run_id: str, *, world_size: int) -> dict:
    """`status`, `artifacts` and `runs` show the run the container wrote; returns its metrics."""
    prefix = layout.run_prefix(run_id)
    metrics = stored_json(platform, prefix + layout.METRICS_FILE)
    assert (metrics["run_id"], metrics["global_step"], metrics["world_size"]) == (run_id, MAX_STEPS, world_size)
    assert metrics["eval_accuracy"] is not None and metrics["train_loss"] is not None

    status = json.loads(bertbatch("status", job_id, "-o", "json").output)
    assert (status["job_id"], status["run_id"]) == (job_id, run_id)

    listed = json_lines(bertbatch("artifacts", run_id, "-o", "json").output)
    stored = {o["Key"] for o in platform.s3().list_objects_v2(Bucket=platform.artifacts_bucket,
                                                               Prefix=prefix)["Contents"]}
    outputs = {o["uri"] for o in listed if o["kind"] == "output"}
    assert outputs == {layout.s3_uri(platform.artifacts_bucket, key) for key in stored}
    assert {uri.rsplit("/", 1)[1] for uri in outputs} >= {layout.METRICS_FILE, "config.json", "model.safetensors"}
    table = bertbatch("artifacts", run_id).output
    assert layout.s3_uri(platform.artifacts_bucket, prefix + layout.METRICS_FILE) in table

    (run,) = [r for r in json_lines(bertbatch("runs", "-o", "json").output) if r["run_id"] == run_id]
    assert (run["state"], run["metrics"]) == ("finished", metrics)
    (row,) = [line for line in bertbatch("runs").output.splitlines() if line.startswith(run_id)]
    assert "finished" in row and f"{metrics['eval_accuracy']:.4f}" in row and f"{metrics['train_loss']:.4f}" in row
    return metrics


def check_defaults_reached_the_trainer(platform: Platform, definition: dict, run_id: str, model: str) -> None:
    """The trainer ran with the definition's default parameters (model: the submitted one)."""
    args = stored_json(platform, layout.run_prefix(run_id) + layout.TRAINING_ARGS_FILE)
    defaults = definition["parameters"]
    assert (args["train"], args["eval"]) == (defaults["train_uri"], defaults["eval_uri"])
    assert args["model"] == model
    for name in ("epochs", "batch_size", "max_seq_length"):
        assert args[name] == int(defaults[name]), name
    assert args["learning_rate"] == float(defaults["learning_rate"])
    assert (args["text_column"], args["label_column"]) == (defaults["text_column"], defaults["label_column"])


# --- the tests ---------------------------------------------------------------------------------
def test_single_node_job_runs_through_the_entrypoint_and_the_cli_reads_it(platform, tiny_model, tmp_path):
    submitted = submit()
    (request,) = platform.submitted
    assert request["parameters"]["model"] == tiny_model  # the staged name, resolved to its prefix
    definition = platform.deployed.job_definition(request["jobDefinition"])
    assert definition["type"] == "container"

    # The job as sent, with only --max-steps added (CONTAINER_ONLY_FLAGS).
    command = [*resolved_command(definition, request), *CONTAINER_ONLY_FLAGS]
    env = batch_environment(platform, tmp_path, definition, request, submitted["job_id"])
    assert env[job.ENV_RUN_ID] == submitted["run_id"]
    log = tmp_path / "node.log"
    assert finish(start_node(command, env, log), log) == job.EXIT_OK, log.read_text()[-3000:]

    check_defaults_reached_the_trainer(platform, definition, submitted["run_id"], tiny_model)
    check_cli_reads_the_run(platform, submitted["job_id"], submitted["run_id"], world_size=1)


def test_a_plain_submit_job_with_the_definitions_defaults_runs_once_the_default_model_is_staged(
        platform, tiny_model_dir, tmp_path):
    """`aws batch submit-job --job-name N --job-queue Q --job-definition D --share-identifier T`, as
    AWS documents it for a fair-share queue: no parameters, so every Ref:: takes the definition's
    default. The default model is its staged
    copy in the artifacts bucket: before `models import` the job fails in one line that says
    what to run; after it, the same request trains."""
    names = platform.deployed.names
    batch = bertbatch_aws.make_client("batch", region=REGION)
    request = {"jobName": "plain", "jobQueue": names[discovery.QUEUE_SPOT_FIRST],
               "jobDefinition": names[discovery.JOB_DEFINITION_SINGLE], "shareIdentifier": teams.DEFAULT_TEAM}
    job_id = batch.submit_job(**request)["jobId"]
    definition = platform.deployed.job_definition(request["jobDefinition"])
    command = [*resolved_command(definition, request), *CONTAINER_ONLY_FLAGS]
    model = command[command.index("--model") + 1]
    assert model == f"s3://{platform.artifacts_bucket}/models/bert-base-uncased/"

    env = batch_environment(platform, tmp_path / "before", definition, request, job_id)
    log = tmp_path / "before.log"
    assert finish(start_node(command, env, log), log) == job.EXIT_BAD_INPUT
    assert (f"bert_train: error: {model}: model bert-base-uncased is not staged (no manifest.json): "
            "run bertbatch models import bert-base-uncased") in log.read_text()

    bertbatch("models", "import", str(tiny_model_dir), "--name", "bert-base-uncased")
    env = batch_environment(platform, tmp_path / "after", definition, request, job_id)
    log = tmp_path / "after.log"
    assert finish(start_node(command, env, log), log) == job.EXIT_OK, log.read_text()[-3000:]


def test_multi_node_job_runs_node_0_and_node_1_through_torchrun(platform, tiny_model, tmp_path, reserved_port):
    submitted = submit("--nodes", "2")
    (request,) = platform.submitted
    definition = platform.deployed.job_definition(request["jobDefinition"])
    nodes = request["nodeOverrides"]["numNodes"]
    assert (definition["type"], nodes) == ("multinode", 2)
    main_node = definition["nodeProperties"]["mainNode"]

    port = str(reserved_port)  # the rendezvous port (the entrypoint's MASTER_PORT)
    started = []
    for node in range(nodes):
        env = batch_environment(platform, tmp_path / f"node{node}", definition, request, submitted["job_id"], node)
        env.update({job.ENV_BATCH_NUM_NODES: str(nodes), job.ENV_BATCH_NODE_INDEX: str(node),
                    job.ENV_BATCH_MAIN_NODE_INDEX: str(main_node), "MASTER_PORT": port})
        if node != main_node:  # Batch sets it on the child nodes only
            env[job.ENV_BATCH_MAIN_NODE_ADDR] = "127.0.0.1"
        command = [*resolved_command(definition, request, node), *CONTAINER_ONLY_FLAGS]
        log = tmp_path / f"node{node}.log"
        started.append((start_node(command, env, log), log))
    codes = [finish(process, log) for process, log in started]
    assert codes == [job.EXIT_OK] * nodes, "\n".join(log.read_text()[-2000:] for _, log in started)

    check_defaults_reached_the_trainer(platform, definition, submitted["run_id"], tiny_model)
    metrics = check_cli_reads_the_run(platform, submitted["job_id"], submitted["run_id"], world_size=nodes)
    assert metrics["global_batch_size"] == nodes * int(definition["parameters"]["batch_size"])


def test_submit_refuses_a_random_model_the_job_could_not_build(platform):
    """A random:* model needs --vocab PATH, a file on this machine no job parameter carries."""
    result = CliRunner().invoke(cli, ["submit", "--model", "random:tiny"], prog_name="bertbatch")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --model random:tiny: random:* models are built on this machine for tests and benchmarks: use "
        "bertbatch local, or stage a model with bertbatch models import DIR"]
    assert platform.submitted == []
