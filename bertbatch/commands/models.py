"""`bertbatch models import`, `models list` and `models show`: base models staged in the artifacts
bucket (the logic is `bertbatch.models.staging`) and fine-tuned models registered by promote
(`bertbatch.models.registry`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from bertbatch_contract import discovery, layout

from ..core.errors import BertBatchError
from ..core.options import target_options
from ..core.session import Session, pass_session
from ..models import registry
from ..models import staging as models_mod
from ..runs.artifacts import format_value, human_size, metric_value
from ..ui import terminal
from ..ui.output_format import JSON, output_option, print_lines, print_record
from ..ui.progress_view import TransferView
from .local import LOCAL_RUNS_DIR, local_flag, local_runs_root


@click.group()
def models() -> None:
    """Stage base models in S3 for jobs that cannot reach a model hub.

    The job subnets have no internet route: a job loads its model from
    s3://<artifacts-bucket>/models/<name>/, and `submit --model NAME` resolves a staged name to
    that prefix. Import on a machine that can reach the hub (or from a local directory).

    \b
    Examples:
      bertbatch models import bert-base-uncased
      bertbatch models list
    """


@models.command(name="import")
@click.argument("source", metavar="NAME_OR_DIR")
@click.option("--name", metavar="NAME",
              help="Staged name (default: the hub id with '/' as '--', or the directory's name)")
@click.option("--replace", is_flag=True, help="Replace a staged model of that name that has other files")
@output_option
@target_options()
@pass_session
def import_(session: Session, source: str, name: str | None, replace: bool, output: str) -> None:
    """Copy a model and its tokenizer to s3://<artifacts-bucket>/models/<name>/.

    NAME_OR_DIR is a local directory (with config.json, tokenizer files and weights) or a
    Hugging Face hub id, downloaded here first (into the local Hugging Face cache). The
    manifest (files, sizes, sha256, source, time) is written last: an interrupted import is
    not staged, and importing the same files again uploads nothing.

    \b
    Examples:
      bertbatch models import bert-base-uncased
      bertbatch models import ./my-bert --name my-bert-v2
      bertbatch submit --model bert-base-uncased --train sst2/train.tsv
    """
    directory = Path(source)
    is_directory = directory.is_dir()
    if not is_directory and (source.startswith((".", "/", "~")) or not models_mod.HUB_ID.fullmatch(source)):
        raise BertBatchError(f"{source}: no such directory, and not a Hugging Face hub id (like org/name)")
    staged = models_mod.check_name(
        name if name is not None else directory.resolve().name if is_directory else models_mod.staged_name(source),
        what="--name" if name is not None else "model name",
    )
    bucket = session.get(discovery.ARTIFACTS_BUCKET)  # the deployment first: no download if it is missing
    if not is_directory:
        click.echo(f"Downloading {source} from the Hugging Face hub ...", err=True)
        directory = models_mod.download_from_hub(source)
    files = models_mod.check_directory(directory)
    origin = str(directory.resolve()) if is_directory else f"hf://{source}"
    with TransferView(sum(f.size for f in files), verb="uploaded") as view:
        result = models_mod.stage(session.client("s3"), bucket, staged, origin, files, replace=replace, view=view)
    if output == JSON:
        print_record("models import", {"name": result.name, "uri": result.uri, "uploaded": result.uploaded,
                                       "skipped": result.skipped, "size": result.total_bytes})
        return
    if result.unchanged:
        click.echo(f"Model {staged} is already staged with these files at {result.uri}")
    else:
        click.echo(f"Staged model {staged} at {result.uri} ({result.uploaded} uploaded, {result.skipped} unchanged, "
                   f"{human_size(result.total_bytes)})")
    click.echo(f"  use it:  bertbatch submit --model {staged}")


def registered_records(store: registry.Store) -> list[dict[str, Any]]:
    """`models list` records of the registered models in `store`."""
    records = []
    for name in registry.registered_names(store):
        found = registry.versions(store, name)
        corrupt = registry.corrupt_records(store, name)
        latest = found[-1] if found else {}
        records.append({"name": name, "kind": "registered", "state": "corrupt" if corrupt else "registered",
                        "uri": store.uri(layout.model_prefix(name)), "files": None, "size": None,
                        "source": latest.get("run_id"), "imported": latest.get("created"),
                        "versions": len(found), "aliases": registry.aliases(store, name), "corrupt": corrupt})
    return records


def warn_corrupt(problems: list[str]) -> None:
    """One stderr line per record that could not be read (the listing goes on without it)."""
    for problem in problems:
        click.echo(f"Warning: corrupt record {problem}", err=True)


def model_records(session: Session, local: bool) -> tuple[list[dict[str, Any]], str]:
    """(the staged and registered models, where they were looked for); --local: registered only."""
    if local:
        store: registry.Store = registry.DirectoryStore(local_runs_root())
        return registered_records(store), f"{store.uri(layout.MODELS_PREFIX)}{os.sep}"
    bucket = session.get(discovery.ARTIFACTS_BUCKET)
    registered = registered_records(registry.S3Store(session.client("s3"), bucket))
    names = {r["name"] for r in registered}
    staged = [{**m.record(), "kind": "staged", "versions": None, "aliases": None}
              for m in models_mod.list_models(session.client("s3"), bucket) if m.name not in names]
    return staged + registered, layout.s3_uri(bucket, layout.MODELS_PREFIX)


@models.command(name="list")
@local_flag(f"The models promote --local registered ({LOCAL_RUNS_DIR}/models/), not S3's")
@output_option
@target_options()
@pass_session
def list_(session: Session, local: bool, output: str) -> None:
    """The models staged in the artifacts bucket (incomplete: an import that did not finish) and
    the models registered by promote, with their versions and aliases. A record that cannot be
    read is skipped: its model shows as corrupt, with the record's URI (a warning; `corrupt` in
    JSON), and the others are listed as usual.

    --local lists the models registered by `promote --local` (local-runs/models/), with no AWS call.

    \b
    Examples:
      bertbatch models list
      bertbatch models list -o json | jq -r 'select(.state == "staged") | .name'
      bertbatch models list --local
    """
    records, where = model_records(session, local)
    records.sort(key=lambda r: (r["kind"], r["name"]))
    if output == JSON:
        print_lines("models list", records)
        return
    warn_corrupt([problem for r in records for problem in r["corrupt"]])
    if not records:
        what = "registered" if local else "staged or registered"
        terminal.echo_wrapped(f"No models {what} under {where} (see: "
                              f"{'' if local else 'bertbatch models import --help, '}bertbatch promote --help)")
        return
    rows = []
    for r in records:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted((r["aliases"] or {}).items()))
        rows.append((r["name"], r["state"], r["files"], r["versions"], aliases or None,
                     human_size(r["size"]) if r["size"] is not None else None, r["source"], r["imported"], r["uri"]))
    terminal.print_table(("NAME", "STATE", "FILES", "VERSIONS", "ALIASES", "SIZE", "SOURCE", "UPDATED", "URI"), rows,
                         right=(2, 3, 5), drop=("URI", "SOURCE", "FILES", "SIZE", "UPDATED", "VERSIONS"))


@models.command(name="show")
@click.argument("name", metavar="NAME")
@local_flag(f"A model promote --local registered ({LOCAL_RUNS_DIR}/models/)")
@output_option
@target_options()
@pass_session
def show(session: Session, name: str, local: bool, output: str) -> None:
    """The versions of a registered model: run, metrics, data, when and by whom, and its aliases.

    \b
    Examples:
      bertbatch models show sst2-sentiment
      bertbatch models show sst2-sentiment -o json | jq -r 'select(.aliases | index("production")) | .run_id'
      bertbatch models show tiny --local
    """
    models_mod.check_name(name, what="NAME")
    store: registry.Store = (registry.DirectoryStore(local_runs_root()) if local
                             else registry.S3Store(session.client("s3"), session.get(discovery.ARTIFACTS_BUCKET)))
    found = registry.versions(store, name)
    warn_corrupt(registry.corrupt_records(store, name))
    if not found:
        raise BertBatchError(f"model {name!r} has no registered versions (see: bertbatch models list"
                             f"{' --local' if local else ''})")
    by_version: dict[int, list[str]] = {}
    for alias, version in registry.aliases(store, name).items():
        by_version.setdefault(version, []).append(alias)
    records = [{"name": name, "version": r["version"], "aliases": sorted(by_version.get(int(r["version"]), [])),
                "run_id": r.get("run_id"), "uri": r.get("uri"), "metrics": r.get("metrics"), "data": r.get("data"),
                "created": r.get("created"), "created_by": r.get("created_by")} for r in found]
    if output == JSON:
        print_lines("models show", records)
        return
    rows = []
    for r in records:
        metrics = r["metrics"] or {}
        rows.append((r["version"], ", ".join(r["aliases"]) or None, r["run_id"],
                     format_value(metric_value(metrics, "eval_accuracy")),
                     format_value(metric_value(metrics, "eval_f1")),
                     (r["data"] or {}).get("train"), r["created"], r["created_by"]))
    terminal.print_table(("VERSION", "ALIASES", "RUN", "EVAL_ACCURACY", "EVAL_F1", "TRAIN", "CREATED", "BY"), rows,
                         right=(0, 3, 4), drop=("BY", "TRAIN", "CREATED", "EVAL_F1"))
