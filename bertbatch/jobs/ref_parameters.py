"""Hyperparameters as the job's `Ref::` parameters.

Values are checked with the contract's table (`bertbatch_contract.hyperparameters.validate`,
the function the container calls at start), so a value the container would reject is refused
here, before anything is submitted, in the container's words. What is sent is a string.
"""

from __future__ import annotations

from collections.abc import Mapping

from bertbatch_contract import hyperparameters as hp

from ..core.errors import BertBatchError

# The job parameters a user sets with options; the inputs (--train, --eval) are resolved
# against the data bucket instead.
OPTION_ROWS: tuple[hp.Hyperparameter, ...] = tuple(
    row for parameter, row in hp.JOB_PARAMETERS.items() if parameter not in hp.INPUT_PARAMETERS
)
BY_PARAMETER: dict[str, hp.Hyperparameter] = {row.parameter or row.name: row for row in OPTION_ROWS}


def as_text(row: hp.Hyperparameter, raw: object, value: hp.Value) -> str:
    """A checked value as the string the trainer gets. Numbers keep the text they were given in
    (2e-5 stays 2e-5: the container's float() reads it the same); integers and strings are
    sent normalised (03 -> 3, ' label ' -> label)."""
    if row.type is float:
        return raw.strip() if isinstance(raw, str) else str(raw)
    return hp.format_value(value)


def check(values: Mapping[str, object]) -> dict[str, str]:
    """Hyperparameters by field name (None: not given) -> the given ones as strings, by field name.

    BertBatchError with the table's one-line message on the first bad value.
    """
    try:
        checked = hp.validate(values)
    except hp.InvalidHyperparameter as exc:
        raise BertBatchError(str(exc)) from None
    return {name: as_text(hp.BY_NAME[name], values[name], value) for name, value in checked.items()}


def check_parameters(values: Mapping[str, object]) -> dict[str, str]:
    """Like `check`, for values keyed by job parameter name (a grid row); keyed the same way."""
    try:
        checked = hp.by_parameter(values)
    except hp.InvalidHyperparameter as exc:
        raise BertBatchError(str(exc)) from None
    return {
        parameter: as_text(hp.JOB_PARAMETERS[parameter], values[parameter], value)
        for parameter, value in checked.items()
    }


def to_parameters(texts: Mapping[str, str]) -> dict[str, str]:
    """Checked values by field name -> by job parameter name (the SubmitJob `parameters`)."""
    out: dict[str, str] = {}
    for name, text in texts.items():
        parameter = hp.BY_NAME[name].parameter
        if parameter is None:
            raise KeyError(f"{hp.BY_NAME[name].flag} is a trainer flag, not a job parameter")
        out[parameter] = text
    return out
