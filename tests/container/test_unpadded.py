"""Direct execution computes what the HF model computes: `modeling.PaddedBert` (the default for
BERT classifiers) and unpadded execution (`modeling.UnpaddedBert` + `data.collate_unpadded`) give
the same loss, logits and gradients within float tolerance, on a tiny random BERT."""

from __future__ import annotations

import pytest
import torch

from tests.container.conftest import FIXTURES, VOCAB


@pytest.fixture(scope="module")
def setup():
    from bert_train import data, modeling
    from bert_train.tasks import SINGLE_LABEL, Task

    tokenizer, location = modeling.build_tokenizer("random:tiny", str(VOCAB), "unused")
    examples = data.read_examples(str(FIXTURES / "sst2" / "train.tsv"), "sentence", "label")[:64]
    enc = data.encode(examples, tokenizer, Task(SINGLE_LABEL, ("0", "1")), 128)
    torch.manual_seed(0)
    model = modeling.build_model(location, ["0", "1"], len(tokenizer))
    return enc, tokenizer.pad_token_id, model


def _pair_encoded():
    from bert_train import data

    # Two-sentence rows: token types matter; repeated lengths make multi-sequence attention groups.
    ids = [[101, 7, 8, 102, 9, 102], [101, 5, 102, 6, 7, 102], [101, 4, 102, 3, 102], [101, 9, 102]]
    types = [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0]]
    return data.Encoded(input_ids=ids, token_type_ids=types, labels=[1, 0, 1, 0])


def test_collate_unpadded_concatenates_without_padding(setup):
    from bert_train import data

    enc, _, _ = setup
    idx = list(range(20))
    batch = data.collate_unpadded(enc, idx)
    lengths = sorted((len(enc.input_ids[i]) for i in idx), reverse=True)
    assert batch["input_ids"].shape == (sum(lengths),)
    assert [c for c, _ in batch["groups"]] and sum(c * n for c, n in batch["groups"]) == sum(lengths)
    assert [n for _, n in batch["groups"]] == sorted({*lengths}, reverse=True)
    assert batch["cls_index"].tolist() == [sum(lengths[:k]) for k in range(len(lengths))]
    assert (batch["input_ids"][batch["cls_index"]] == 101).all()  # every sequence starts with [CLS]
    assert batch["position_ids"][: lengths[0]].tolist() == list(range(lengths[0]))
    assert (batch["position_ids"][batch["cls_index"]] == 0).all()

    pairs = data.collate_unpadded(_pair_encoded(), [3, 0, 1, 2])
    assert pairs["groups"] == ((2, 6), (1, 5), (1, 3))
    assert pairs["token_type_ids"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0]
    assert pairs["labels"].tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("idx", [list(range(16)), [5], list(range(30, 64, 2))])
def test_unpadded_loss_logits_and_gradients_match_the_padded_model(setup, idx):
    from bert_train import data, modeling

    enc, pad_id, model = setup
    model.eval()  # dropout off: both paths are deterministic
    unpadded = modeling.UnpaddedBert(model)
    order = sorted(range(len(idx)), key=lambda k: -len(enc.input_ids[idx[k]]))  # rows, longest first

    model.zero_grad()
    padded_out = model(**data.collate(enc, idx, pad_id))
    padded_out.loss.backward()
    padded_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    out = unpadded(**data.collate_unpadded(enc, idx))
    out.loss.backward()

    assert out.loss.item() == pytest.approx(padded_out.loss.item(), abs=1e-5)
    torch.testing.assert_close(out.logits, padded_out.logits[order], atol=1e-5, rtol=1e-4)
    for name, param in model.named_parameters():
        if name in padded_grads:
            torch.testing.assert_close(param.grad, padded_grads[name], atol=1e-5, rtol=1e-3, msg=name)


def test_unpadded_matches_padded_with_token_types_and_in_bf16(setup):
    from bert_train import data, modeling

    _, pad_id, model = setup
    model.eval()
    enc = _pair_encoded()
    idx = [0, 1, 2, 3]
    order = sorted(range(len(idx)), key=lambda k: -len(enc.input_ids[idx[k]]))  # rows, longest first
    padded = model(**data.collate(enc, idx, pad_id)).logits[order]
    unpadded = modeling.UnpaddedBert(model)(**data.collate_unpadded(enc, idx)).logits
    torch.testing.assert_close(unpadded, padded, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded16 = model(**data.collate(enc, idx, pad_id)).logits.float()[order]
        unpadded16 = modeling.UnpaddedBert(model)(**data.collate_unpadded(enc, idx)).logits.float()
    torch.testing.assert_close(unpadded16, padded16, atol=3e-2, rtol=3e-2)


def test_unpadded_training_mode_applies_dropout(setup):
    from bert_train import data, modeling

    enc, _, model = setup
    unpadded = modeling.UnpaddedBert(model)
    batch = data.collate_unpadded(enc, list(range(8)))
    model.train()
    try:
        first, second = unpadded(**batch).logits, unpadded(**batch).logits
    finally:
        model.eval()
    assert not torch.equal(first, second)


def test_only_bert_sequence_classifiers_run_unpadded(setup):
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    from bert_train import modeling

    _, _, model = setup
    assert modeling.supports_direct(model)
    relative = BertForSequenceClassification(BertConfig(**modeling.TINY_BERT, vocab_size=64,
                                                        position_embedding_type="relative_key"))
    assert not modeling.supports_direct(relative)
    assert not modeling.supports_direct(BertForMaskedLM(BertConfig(**modeling.TINY_BERT, vocab_size=64)))
    with pytest.raises(ValueError, match="BERT sequence classifiers only"):
        modeling.UnpaddedBert(relative)


@pytest.mark.slow
def test_a_training_run_unpadded_matches_the_padded_run(small_data, tmp_path, monkeypatch):
    """The whole loop (training steps, evaluation, metrics) with unpadded execution switched on
    ends where the padded run ends. Dropout is off in this model: the two paths draw different
    dropout masks, so only then can their losses be compared."""
    import json

    from bert_train import modeling
    from bert_train.train import run
    from tests.container.conftest import final_metrics, tiny_config

    config_file = tmp_path / "no-dropout.json"
    config_file.write_text(json.dumps({**modeling.TINY_BERT, "hidden_dropout_prob": 0.0,
                                       "attention_probs_dropout_prob": 0.0}))
    results = {}
    for unpadded in (False, True):
        monkeypatch.setattr(modeling, "UNPADDED_BY_DEFAULT", unpadded)
        d = tmp_path / str(unpadded)
        result = run(tiny_config(*small_data, d / "out", d / "ckpt", model=f"random:{config_file}", epochs=1))
        assert result.exit_code == 0
        results[unpadded] = (result, final_metrics(d / "out"))
    (padded, padded_m), (unpadded_run, unpadded_m) = results[False], results[True]
    assert unpadded_run.padding_fraction == 0 < padded.padding_fraction
    for key in ("train_loss", "eval_loss", "eval_f1"):
        assert unpadded_m[key] == pytest.approx(padded_m[key], rel=1e-3, abs=1e-4), key
    assert unpadded_m["eval_accuracy"] == pytest.approx(padded_m["eval_accuracy"], abs=0.007)


@pytest.mark.parametrize("idx", [list(range(16)), [5], list(range(30, 64, 2))])
def test_padded_bert_loss_logits_and_gradients_match_the_model(setup, idx):
    from bert_train import data, modeling

    enc, pad_id, model = setup
    model.eval()
    batch = data.collate(enc, idx, pad_id)
    model.zero_grad()
    reference = model(**batch)
    reference.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    out = modeling.PaddedBert(model)(**batch)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(reference.loss.item(), abs=1e-6)
    torch.testing.assert_close(out.logits, reference.logits, atol=1e-6, rtol=1e-5)
    assert set(grads) == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, param in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(param.grad, grads[name], atol=1e-6, rtol=1e-4, msg=name)


def test_padded_bert_with_token_types_and_in_training_mode_draws_the_same_dropout(setup):
    """Same dropout generator state, same masks in the same order: the training-mode losses of
    the model and of PaddedBert agree, so the direct path changes nothing about training."""
    from bert_train import data, dropout, modeling

    _, pad_id, model = setup
    batch = data.collate(_pair_encoded(), [0, 1, 2, 3], pad_id)
    assert not bool(batch["attention_mask"].all())  # a padded batch: the mask is used
    dropout.install(model)
    model.train()
    try:
        losses = []
        for runner in (model, modeling.PaddedBert(model)):
            dropout.seed(3)
            losses.append(runner(**batch).loss.item())
        dropout.seed(4)
        other = model(**batch).loss.item()
    finally:
        model.eval()
        dropout.uninstall(model)
    assert losses[1] == pytest.approx(losses[0], abs=1e-6) and other != pytest.approx(losses[0], abs=1e-6)
