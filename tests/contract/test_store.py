"""The tokenized store's job interface: one table of prepare flags, validation, the command, the
array children and the files each takes."""

from __future__ import annotations

import argparse

import pytest

from bertbatch_contract import hyperparameters, store
from bertbatch_contract.hyperparameters import InvalidHyperparameter


@pytest.mark.parametrize(("files", "count"), [(1, 1), (5, 3), (3, 5), (100, 7), (0, 2)])
def test_children_take_contiguous_groups_covering_every_file_once(files: int, count: int) -> None:
    groups = [store.child_files(files, child, count) for child in range(count)]
    assert [i for g in groups for i in g] == list(range(files))
    assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_the_child_comes_from_the_flags_else_the_array_job() -> None:
    assert store.children({}, {}) == (0, 1)
    env = {store.ENV_ARRAY_SIZE: "4", store.ENV_ARRAY_INDEX: "3"}
    assert store.children({}, env) == (3, 4)
    assert store.children({"num_children": 2, "child_index": 1}, env) == (1, 2)
    with pytest.raises(InvalidHyperparameter, match="child 5: must be < 4 children"):
        store.children({"child_index": 5}, env)


def test_validate_uses_the_training_tables_rows_and_words() -> None:
    values = store.validate({"input": "s3://d/x/", "output": "s3://d/store/", "max_seq_length": "64",
                             "text_pair_column": "", "workers": "3"})
    assert values == {"input": "s3://d/x/", "output": "s3://d/store/", "max_seq_length": 64, "workers": 3}
    assert store.BY_NAME["max_seq_length"] is hyperparameters.BY_NAME["max_seq_length"]
    with pytest.raises(InvalidHyperparameter, match="--output: required"):
        store.validate({"input": "x.tsv"})
    with pytest.raises(InvalidHyperparameter, match=r"--child-index 3: must be < --num-children 3"):
        store.validate({"input": "x", "output": "y", "num_children": "3", "child_index": "3"})
    with pytest.raises(InvalidHyperparameter, match="--max-seq-length 9000"):
        store.validate({"input": "x", "output": "y", "max_seq_length": "9000"})


def test_command_round_trips_through_the_parser() -> None:
    values = store.validate({"input": "in/", "output": "out/", "model": "random:tiny", "max_seq_length": 32})
    argv = store.command(values, merge=True)
    assert argv[0] == store.SUBCOMMAND and argv[-1] == store.MERGE_FLAG
    parser = argparse.ArgumentParser(allow_abbrev=False)
    store.add_options(parser)
    parsed = vars(parser.parse_args(argv[1:]))
    assert parsed.pop("merge") is True
    assert store.validate(parsed) == values


def test_the_job_command_names_a_parameter_per_job_row() -> None:
    command = store.job_command()
    assert command[0] == store.SUBCOMMAND
    pairs = dict(zip(command[1::2], command[2::2], strict=True))
    assert pairs["--input"] == "Ref::input_uri" and pairs["--output"] == "Ref::store_uri"
    assert pairs["--model"] == "Ref::model" and pairs["--max-seq-length"] == "Ref::max_seq_length"
    assert set(pairs.values()) == {f"Ref::{p}" for p in store.JOB_PARAMETERS}


def test_names() -> None:
    assert store.shard_name(3, 12) == "shards/in-000003-0012.parquet"
    assert store.partial_name(2, 10) == "partials/child-00002-of-00010.json"
    assert set(store.SETTINGS) <= set(store.BY_NAME)
