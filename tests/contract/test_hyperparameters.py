"""The hyperparameter table: conversion, bounds, messages, and what is generated from it."""

from __future__ import annotations

import argparse
import math

import pytest

from bertbatch_contract import hyperparameters as hp


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("learning_rate", "2e-5", 2e-5),
        ("learning_rate", 3e-4, 3e-4),
        ("epochs", "3", 3),
        ("epochs", 2.0, 2),
        ("seed", str(hp.MAX_SEED), hp.MAX_SEED),
        ("warmup_ratio", "0", 0.0),
        ("precision", "bf16", "bf16"),
        ("compile", "on", "on"),
        ("text_column", "  sentence ", "sentence"),
        ("run_id", "sst2-large_2", "sst2-large_2"),
        ("max_seq_length", "8192", 8192),  # ModernBERT's positions; the model's own limit is checked at load
    ],
)
def test_valid_values_are_converted(name: str, raw: object, expected: object) -> None:
    assert hp.validate({name: raw}) == {name: expected}


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("learning_rate", "nan", "--learning-rate nan: must be a number > 0 and < 1"),
        ("learning_rate", "inf", "--learning-rate inf: must be a number > 0 and < 1"),
        ("learning_rate", "-1e-5", "--learning-rate -1e-5: must be a number > 0 and < 1"),
        ("learning_rate", "0", "--learning-rate 0: must be a number > 0 and < 1"),
        ("learning_rate", "1", "--learning-rate 1: must be a number > 0 and < 1"),
        ("weight_decay", "nan", "--weight-decay nan: must be a number >= 0 and <= 1"),
        ("max_grad_norm", "0", "--max-grad-norm 0: must be a number > 0"),
        ("seed", "-1", "--seed -1: must be an integer >= 0 and <= 4294967295"),
        ("seed", str(2**32), f"--seed {2**32}: must be an integer >= 0 and <= 4294967295"),
        ("epochs", "1.5", "--epochs 1.5: must be an integer >= 1"),
        ("epochs", 1.5, "--epochs 1.5: must be an integer >= 1"),
        ("epochs", True, "--epochs True: must be an integer >= 1"),
        ("checkpoint_every_steps", "0", "--checkpoint-every-steps 0: must be an integer >= 1"),
        ("checkpoint_every_minutes", "-2", "--checkpoint-every-minutes -2: must be a number > 0"),
        ("eval_batch_size", "0", "--eval-batch-size 0: must be an integer >= 1"),
        ("max_seq_length", "8193", "--max-seq-length 8193: must be an integer >= 8 and <= 8192"),
        ("precision", "fp8", "--precision fp8: must be one of auto, bf16, fp16, fp32"),
        ("compile", "yes", "--compile yes: must be one of off, on, auto"),
        ("model", "  ", "--model '  ': must not be empty"),
        ("run_id", "a/b", "--run-id 'a/b': use 1-100 letters"),
        ("model", "Ref::model", "--model Ref::model: the job parameter was not filled in at submit"),
        ("epochs", "Ref::epochs", "--epochs Ref::epochs: the job parameter was not filled in at submit"),
    ],
)
def test_invalid_values_name_the_flag_the_value_and_the_rule(name: str, raw: object, message: str) -> None:
    with pytest.raises(hp.InvalidHyperparameter) as exc:
        hp.validate({name: raw})
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_unset_values_are_dropped_and_unknown_names_refused() -> None:
    assert hp.validate({"epochs": None, "seed": "7"}) == {"seed": 7}
    with pytest.raises(hp.InvalidHyperparameter, match="unknown hyperparameter 'epoch'"):
        hp.validate({"epoch": "3"})


def test_early_stopping_needs_eval_data_only_when_both_are_known() -> None:
    assert hp.validate({"early_stopping_patience": "2"}) == {"early_stopping_patience": 2}
    with pytest.raises(hp.InvalidHyperparameter, match="--early-stopping-patience needs --eval"):
        hp.validate({"early_stopping_patience": "2", "eval": ""})


def test_every_default_passes_its_own_validation() -> None:
    for row in hp.HYPERPARAMETERS:
        if row.default is not None:
            assert hp.validate({row.name: row.default}) == {row.name: row.default}, row.name


def test_by_parameter_maps_job_parameter_names() -> None:
    assert hp.by_parameter({"train_uri": "s3://b/k", "learning_rate": "3e-5"}) == {
        "train_uri": "s3://b/k",
        "learning_rate": 3e-5,
    }
    with pytest.raises(hp.InvalidHyperparameter, match="unknown job parameter 'vocab'"):
        hp.by_parameter({"vocab": "vocab.txt"})


def test_job_command_passes_every_job_parameter_as_its_flag() -> None:
    command = hp.job_command()
    pairs = dict(zip(command[::2], command[1::2], strict=True))
    assert pairs == {row.flag: f"Ref::{name}" for name, row in hp.JOB_PARAMETERS.items()}
    assert command[:4] == ["--train", "Ref::train_uri", "--eval", "Ref::eval_uri"]


def test_parameter_defaults_are_the_table_defaults_except_the_inputs() -> None:
    defaults = hp.parameter_defaults()
    assert not set(defaults) & set(hp.INPUT_PARAMETERS)
    assert defaults["learning_rate"] == "2e-5"
    assert defaults["epochs"] == "3"
    for parameter, text in defaults.items():
        row = hp.JOB_PARAMETERS[parameter]
        assert row.parse(text) == row.default if text else row.optional


def test_every_trainer_flag_is_a_job_parameter_unless_it_says_why_not() -> None:
    for row in hp.HYPERPARAMETERS:
        assert bool(row.parameter) != bool(row.container_only), row.name
    assert set(hp.parameter_defaults()) == set(hp.JOB_PARAMETERS) - set(hp.INPUT_PARAMETERS)


def test_a_row_neither_placed_nor_explained_is_refused() -> None:
    with pytest.raises(ValueError, match="hyperparameter dropout: give it a job parameter"):
        hp._check_placed([hp.Hyperparameter("dropout", float, 0.1, "dropout", "model")])


def test_an_empty_job_parameter_leaves_an_optional_flag_unset() -> None:
    """What the job definitions' "" default means: the trainer's own default (None)."""
    assert hp.validate({"max_steps": "", "text_pair_column": "", "seed": "7"}) == {"seed": 7}
    with pytest.raises(hp.InvalidHyperparameter, match="--seed : must be an integer"):
        hp.validate({"seed": ""})  # a flag with a default still needs a value


@pytest.mark.parametrize(("value", "text"), [(2e-5, "2e-5"), (1e-10, "1e-10"), (0.06, "0.06"), (1.0, "1"), (3, "3")])
def test_format_value_round_trips(value: float, text: str) -> None:
    assert hp.format_value(value) == text
    assert math.isclose(float(text), value)


def test_generated_argparse_has_every_flag_and_keeps_strings_for_validate() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    hp.add_arguments(parser)
    ns = parser.parse_args(["--train", "data.tsv", "--learning-rate", "5"])
    assert vars(ns) == {"train": "data.tsv", "learning_rate": "5"}
    flags = {a for action in parser._actions for a in action.option_strings}
    assert {row.flag for row in hp.HYPERPARAMETERS} <= flags
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --train is required


def test_eval_steps_needs_eval_data_only_when_both_are_known() -> None:
    assert hp.validate({"eval_steps": "100"}) == {"eval_steps": 100}
    with pytest.raises(hp.InvalidHyperparameter, match="--eval-steps 0: must be an integer >= 1"):
        hp.validate({"eval_steps": "0"})
    with pytest.raises(hp.InvalidHyperparameter, match="--eval-steps needs --eval"):
        hp.validate({"eval_steps": "100", "eval": ""})
