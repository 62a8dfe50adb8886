"""`bert_train.vocab_rows`: the word-embedding rows no training token uses stay out of AdamW, and
training ends where the dense embedding ends; checkpoints and saved models keep the dense layout."""

from __future__ import annotations

import pytest
import torch

from tests.container.conftest import VOCAB


def _embedding(rows: int = 20, dim: int = 4, padding_idx: int | None = 0) -> torch.nn.Embedding:
    torch.manual_seed(0)
    return torch.nn.Embedding(rows, dim, padding_idx=padding_idx)


def test_lookups_and_state_dict_are_the_dense_embeddings():
    from bert_train.vocab_rows import RowSplitEmbedding

    dense = _embedding()
    split = RowSplitEmbedding(dense, [0, 3, 5, 7])
    assert split.used_weight.shape == (4, 4) and split.unused_weight.shape == (16, 4)
    ids = torch.tensor([[3, 5, 0], [7, 7, 3]])
    assert torch.equal(split(ids), dense(ids))  # training: used rows only
    split.eval()
    any_ids = torch.tensor([[1, 19, 3]])
    assert torch.equal(split(any_ids), dense(any_ids))  # evaluation: any row
    state = split.state_dict()
    assert list(state) == ["weight"] and torch.equal(state["weight"], dense.weight)
    assert torch.equal(split.to_embedding().weight, dense.weight)


def test_only_used_rows_get_gradient_and_decay_moves_only_the_others():
    from bert_train.vocab_rows import RowSplitEmbedding

    dense = _embedding()
    split = RowSplitEmbedding(dense, [0, 3, 5])
    split(torch.tensor([3, 5, 0, 0])).sum().backward()
    assert split.used_weight.grad is not None
    assert torch.equal(split.used_weight.grad[0], torch.zeros(4))  # the padding row, as nn.Embedding
    assert torch.equal(split.used_weight.grad[1:], torch.ones(2, 4))
    before = split.weight
    split.decay(0.5)
    after = split.weight
    used = torch.tensor([0, 3, 5])
    unused = torch.tensor([i for i in range(20) if i not in (0, 3, 5)])
    assert torch.equal(after[used], before[used]) and torch.equal(after[unused], before[unused] * 0.5)


def test_load_state_dict_splits_a_dense_weight_and_rejects_a_wrong_shape():
    from bert_train.vocab_rows import RowSplitEmbedding

    split = RowSplitEmbedding(_embedding(), [1, 2])
    other = torch.randn(20, 4)
    split.load_state_dict({"weight": other})
    assert torch.equal(split.weight, other)
    with pytest.raises(RuntimeError, match=r"weight: shape \(21, 4\), expected \(20, 4\)"):
        split.load_state_dict({"weight": torch.randn(21, 4)})
    with pytest.raises(RuntimeError, match="Missing key"):
        split.load_state_dict({})


def test_install_skips_models_whose_embeddings_are_tied_to_an_output_layer():
    from transformers import BertConfig, BertForMaskedLM

    from bert_train import modeling, vocab_rows

    tokenizer, location = modeling.build_tokenizer("random:tiny", str(VOCAB), "unused")
    classifier = modeling.build_model(location, ["0", "1"], len(tokenizer))
    split = vocab_rows.install(classifier, [0, 101, 102])
    assert isinstance(classifier.bert.embeddings.word_embeddings, vocab_rows.RowSplitEmbedding) and split
    vocab_rows.uninstall(classifier)
    assert type(classifier.bert.embeddings.word_embeddings) is torch.nn.Embedding
    masked_lm = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=16))
    assert vocab_rows.install(masked_lm, [0, 1]) is None  # every row gets gradient through the output layer


@pytest.mark.slow
def test_a_training_run_with_split_rows_ends_where_the_dense_run_ends(small_data, tmp_path, monkeypatch):
    """The whole loop, weight decay on, with and without the split: same losses, same metrics and
    the same saved weights up to float rounding (the dropout masks are the same in both runs)."""
    from safetensors.torch import load_file

    from bert_train import vocab_rows
    from bert_train.train import run
    from tests.container.conftest import final_metrics, tiny_config

    install = vocab_rows.install
    runs = {}
    for split in (False, True):
        monkeypatch.setattr(vocab_rows, "install", install if split else lambda model, ids: None)
        d = tmp_path / str(split)
        result = run(tiny_config(*small_data, d / "out", d / "ckpt", epochs=1, weight_decay=0.1))
        assert result.exit_code == 0
        runs[split] = (final_metrics(d / "out"), load_file(d / "out" / "model.safetensors"))
    (dense_m, dense_w), (split_m, split_w) = runs[False], runs[True]
    for key in ("train_loss", "eval_loss", "eval_accuracy", "eval_f1"):
        assert split_m[key] == pytest.approx(dense_m[key], rel=1e-4, abs=1e-5), key
    assert set(split_w) == set(dense_w)
    for name, tensor in dense_w.items():
        assert torch.allclose(split_w[name], tensor, rtol=1e-4, atol=1e-6), name
    # weight decay 0.1 for 30 steps moves every unused row by ~3e-3: a missing decay fails above
    assert split_w["bert.embeddings.word_embeddings.weight"].shape == (len(VOCAB.read_text().splitlines()), 128)


def _trainable(split: bool):
    from bert_train import checkpoint as ckpt
    from bert_train import modeling, vocab_rows

    tokenizer, location = modeling.build_tokenizer("random:tiny", str(VOCAB), "unused")
    torch.manual_seed(0)
    model = modeling.build_model(location, ["0", "1"], len(tokenizer))
    if split:
        vocab_rows.install(model, [0, 101, 102, 2000])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[101, 2000, 102]]), labels=torch.tensor([1])).loss.backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return ckpt.Trainable(model=model, optimizer=optimizer, scheduler=scheduler, scaler=torch.amp.GradScaler("cpu"))


@pytest.mark.parametrize("written_split", [True, False])
def test_a_checkpoint_loads_only_into_the_same_row_split(tmp_path, written_split):
    """A checkpoint round-trips with the split; one whose AdamW state holds every row (the
    trainer before the split) is refused before anything changes, so resume skips it."""
    from bert_train import checkpoint as ckpt

    written = _trainable(split=written_split)
    snap = ckpt.snapshot(written, state={"step": 1}, rng=[{}], global_batch=1, world_size=1, steps_per_epoch=1,
                         labels=["0", "1"])
    ckpt.write_snapshot(snap, tmp_path)
    target = _trainable(split=True)
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    if written_split:
        ckpt.load(tmp_path, target, device=torch.device("cpu"), global_batch=1, labels=["0", "1"])
        for name, tensor in written.model.state_dict().items():
            assert torch.equal(target.model.state_dict()[name], tensor), name
        return
    with pytest.raises(ValueError, match="optimizer state does not fit"):
        ckpt.load(tmp_path, target, device=torch.device("cpu"), global_batch=1, labels=["0", "1"])
    for name, tensor in target.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name  # nothing changed
