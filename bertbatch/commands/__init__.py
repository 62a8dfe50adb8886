"""The `bertbatch` commands, one module per command or group of related commands.

`bertbatch.cli` registers `COMMANDS` on the root group.
"""

from __future__ import annotations

import click

from . import compare, doctor, estimate, jobs, local, logs, models, predict, prepare, promote, runs, submit, watch

COMMANDS: tuple[click.Command, ...] = (
    submit.submit,
    watch.watch,
    jobs.status,
    logs.logs,
    jobs.list_,
    jobs.cancel,
    runs.artifacts_,
    runs.runs,
    compare.compare,
    models.models,
    promote.promote,
    predict.predict,
    estimate.estimate,
    prepare.prepare,
    local.local,
    doctor.doctor,
)
