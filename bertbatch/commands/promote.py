"""`bertbatch promote`: record a finished run as a version of a registered model, move an alias."""

from __future__ import annotations

import click

from bertbatch_contract import discovery

from ..core.errors import BertBatchError
from ..core.options import target_options
from ..core.session import Session, pass_session
from ..models import registry
from ..models import staging as models_mod
from ..ui.output_format import JSON, output_option, print_record
from .local import LOCAL_RUNS_DIR, local_runs_root


@click.command()
@click.argument("run_id", metavar="RUN_ID")
@click.option("--name", required=True, metavar="NAME", help="Registered model name, e.g. sst2-sentiment")
@click.option("--alias", metavar="ALIAS", help="Point this alias (e.g. production) at the version")
@click.option("--local", is_flag=True, help=f"A bertbatch local run: the registry under {LOCAL_RUNS_DIR}/")
@output_option
@target_options()
@pass_session
def promote(session: Session, run_id: str, name: str, alias: str | None, local: bool, output: str) -> None:
    """Register a finished run's model as a version of NAME, and move ALIAS to it.

    The version record (number, run id, metrics, data, time, who) goes under
    s3://<artifacts>/models/<name>/versions/, the alias under aliases/. Only a run whose
    metrics.json exists can be promoted; promoting the same run again reuses its version.
    Then --model NAME@ALIAS or NAME@VERSION works for predict and as submit's base model.

    \b
    Examples:
      bertbatch promote sst2-run-1 --name sst2-sentiment --alias production
      bertbatch promote random-tiny-20261121-190500-3fa2 --name tiny --alias production --local
      bertbatch predict --model sst2-sentiment@production --input rows.jsonl
    """
    models_mod.check_name(name)
    if alias is not None:
        registry.check_alias(alias)
    store: registry.Store
    if local:
        store, who = registry.DirectoryStore(local_runs_root()), registry.caller(None)
    else:
        s3 = session.client("s3")
        bucket = session.get(discovery.ARTIFACTS_BUCKET)
        if models_mod.read_manifest(s3, bucket, name) is not None:
            raise BertBatchError(f"--name {name}: a staged base model has this name (bertbatch models list): "
                                 "choose another")
        store, who = registry.S3Store(s3, bucket), registry.caller(lambda: session.client("sts"))
    result = registry.promote(store, run_id, name, alias, who)
    if output == JSON:
        print_record("promote", {"name": result.name, "version": result.version, "alias": result.alias,
                                 "run_id": result.run_id, "uri": result.uri, "created": result.created,
                                 "previous_version": result.previous})
        return
    what = "Registered" if result.created else "Already registered:"
    click.echo(f"{what} {name} version {result.version} <- run {run_id} ({result.uri})")
    if alias is not None:
        moved = "" if result.previous in (None, result.version) else f" (was version {result.previous})"
        click.echo(f"  {name}@{alias} -> version {result.version}{moved}")
        click.echo(f"  use it:  bertbatch predict --model {name}@{alias} --input ROWS{' --local' if local else ''}")
