"""`bert_train.dropout`: masks with the right drop rate and scale, reproducible from the saved
generator state, the same gradients as the mask applied by hand, and a model that computes what
transformers computes when no dropout applies (evaluation), and is plain again after `uninstall`."""

from __future__ import annotations

import pytest
import torch

from tests.container.conftest import VOCAB


def test_keep_mask_drops_p_and_scales_by_the_exact_keep_probability():
    from bert_train import dropout

    dropout.seed(1)
    keep, scale = dropout.keep_mask(torch.Size([400, 1000]), 0.1)
    assert keep.dtype == torch.bool and keep.shape == (400, 1000)
    dropped = 1 - keep.float().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.002)  # 400k draws: 4 standard deviations is 0.0019
    threshold = round(0.1 * 65536)
    assert scale == 65536 / (65536 - threshold)
    x = torch.ones(400, 1000)
    assert dropout.apply_dropout(x, 0.1, True).mean().item() == pytest.approx(1.0, abs=0.005)  # unbiased


def test_same_generator_state_same_masks():
    from bert_train import dropout

    dropout.seed(3)
    state = dropout.get_state()
    first, _ = dropout.keep_mask(torch.Size([64, 64]), 0.3)
    second, _ = dropout.keep_mask(torch.Size([64, 64]), 0.3)
    dropout.set_state(state)
    again, _ = dropout.keep_mask(torch.Size([64, 64]), 0.3)
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_gradient_is_the_mask_times_the_scale():
    from bert_train import dropout

    dropout.seed(5)
    x = torch.randn(32, 16, requires_grad=True)
    out = dropout.apply_dropout(x, 0.25, True)
    out.sum().backward()
    kept = out.detach() != 0
    scale = 65536 / (65536 - round(0.25 * 65536))
    assert torch.allclose(out.detach()[kept], x.detach()[kept] * scale)
    assert torch.equal(x.grad, kept.float() * scale)
    assert torch.equal(dropout.apply_dropout(x, 0.25, False), x)  # eval: identity
    assert torch.equal(dropout.apply_dropout(x, 0.0, True), x)
    torch.manual_seed(0)
    nearly_all = dropout.apply_dropout(x, 0.999999, True)  # p rounds to 1 at 1/65536: torch's dropout
    assert torch.isfinite(nearly_all).all() and (nearly_all == 0).float().mean() > 0.99


@pytest.fixture()
def tiny_bert():
    from bert_train import modeling

    tokenizer, location = modeling.build_tokenizer("random:tiny", str(VOCAB), "unused")
    torch.manual_seed(0)
    model = modeling.build_model(location, ["0", "1"], len(tokenizer))
    batch = tokenizer(["a fine film", "dull and far too long for its thin story"], padding=True, return_tensors="pt")
    return model, dict(batch)


def test_installed_model_evaluates_exactly_like_transformers_and_uninstalls(tiny_bert, tmp_path):
    import json

    from bert_train import dropout

    model, batch = tiny_bert
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    n_dropouts = sum(type(m) is torch.nn.Dropout for m in model.modules())
    assert dropout.install(model) == n_dropouts > 0
    assert model.config._attn_implementation == dropout.ATTENTION
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, before)  # no dropout applies: SDPA, unchanged
    dropout.uninstall(model)
    assert sum(type(m) is torch.nn.Dropout for m in model.modules()) == n_dropouts
    model.save_pretrained(tmp_path)
    assert dropout.ATTENTION not in json.dumps(json.loads((tmp_path / "config.json").read_text()))


def test_training_attention_matches_the_eager_attention_with_its_mask(tiny_bert):
    """With a drop probability that rounds to zero the masked path keeps everything: it must then
    compute transformers' own attention, padding mask included."""
    from transformers.models.bert.modeling_bert import eager_attention_forward

    from bert_train import dropout

    model, batch = tiny_bert
    model.train()
    module = model.bert.encoder.layer[0].attention.self
    valid = batch["attention_mask"].bool()  # SDPA's mask format: True = attend
    assert not valid.all()  # the short sentence is padded
    n = valid.shape[1]
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 2, n, 64) for _ in range(3))
    bool_mask = valid[:, None, None, :].expand(2, 1, n, n)
    additive = torch.zeros(2, 1, n, n).masked_fill(~bool_mask, torch.finfo(torch.float32).min)
    ours, _ = dropout.attention(module, q, k, v, bool_mask, scaling=0.125, dropout=1e-9)
    theirs, _ = eager_attention_forward(module, q, k, v, additive, scaling=0.125, dropout=0.0)
    assert torch.allclose(ours, theirs, atol=1e-6)
    dropped, _ = dropout.attention(module, q, k, v, bool_mask, scaling=0.125, dropout=0.5)
    assert not torch.allclose(dropped, theirs, atol=1e-3)  # and p=0.5 does drop


def test_a_training_step_draws_masks_only_from_this_generator(tiny_bert):
    """Same generator state, same loss: nothing else random in a CPU training step."""
    from bert_train import dropout

    model, batch = tiny_bert
    dropout.install(model)
    model.train()
    losses = []
    for _ in range(2):
        dropout.seed(11)
        torch.manual_seed(99 + len(losses))  # torch's generator differs: must not matter
        losses.append(model(**batch, labels=torch.tensor([1, 0])).loss.item())
    dropout.seed(12)
    other = model(**batch, labels=torch.tensor([1, 0])).loss.item()
    assert losses[0] == losses[1] != other
