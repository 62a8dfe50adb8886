"""Long inputs: the model's own position limit, head+tail truncation, truncation counts, and
chunked documents (windows pooled per document) in training, evaluation and predict."""

from __future__ import annotations

from bert_train.__main__ import main
from bertbatch_contract import job

from .conftest import tiny_args


def test_max_seq_length_beyond_512_reaches_the_models_own_limit(small_data, tmp_path, capsys):
    code = main(tiny_args(*small_data, tmp_path / "out", tmp_path / "ckpt", max_seq_length=1024))
    err = capsys.readouterr().err.strip()
    assert code == job.EXIT_BAD_INPUT
    assert err == ("bert_train: error: --max-seq-length 1024 exceeds the model's 128 positions "
                   "(max_position_embeddings of random:tiny); use --max-seq-length 128 or less, with "
                   "--long-text head+tail or chunk for longer texts")
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()
