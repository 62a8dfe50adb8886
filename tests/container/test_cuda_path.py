"""The CUDA training path, checked on the CPU: which model runs on which device (the stock
transformers model with SDPA on CUDA, the CPU-tuned direct execution on CPU) and the background
preparation of the next batch (`batches.prefetched`: same order, errors where they happened, a
thread that ends with its consumer)."""

from __future__ import annotations

import threading

import pytest
import torch

from tests.container.conftest import VOCAB

CUDA, CPU = torch.device("cuda"), torch.device("cpu")  # device objects only: nothing runs on CUDA here


def _tiny_bert(attention: str):
    from transformers import BertConfig, BertForSequenceClassification

    from bert_train import modeling

    config = BertConfig(**modeling.TINY_BERT, vocab_size=64, num_labels=2)
    return BertForSequenceClassification._from_config(config, attn_implementation=attention)


def test_on_cuda_the_loop_calls_the_transformers_model_with_sdpa_attention():
    from bert_train import modeling

    model = _tiny_bert("eager")
    assert modeling.runner(model, CUDA) is model
    assert model.config._attn_implementation == "sdpa"


def test_on_cpu_bert_classifiers_keep_their_direct_execution():
    from bert_train import modeling

    model = _tiny_bert("eager")
    runner = modeling.runner(model, CPU)
    assert isinstance(runner, modeling.PaddedBert) and runner.model is model
    assert modeling.cpu_tuned(CPU) and not modeling.cpu_tuned(CUDA)


def test_unpadded_execution_never_runs_on_cuda(monkeypatch):
    from bert_train import modeling

    monkeypatch.setattr(modeling, "UNPADDED_BY_DEFAULT", True)
    model = _tiny_bert("sdpa")
    assert modeling.use_unpadded(model, CPU) and isinstance(modeling.runner(model, CPU), modeling.UnpaddedBert)
    assert not modeling.use_unpadded(model, CUDA) and modeling.runner(model, CUDA) is model


def test_the_background_prefetch_keeps_the_order_and_runs_ahead_of_the_consumer():
    from bert_train.batches import prefetched

    worked_on: list[int] = []
    second_prepared = threading.Event()

    def work(item: int) -> int:
        worked_on.append(item)
        if item == 1:
            second_prepared.set()
        return item * 10

    items = prefetched(iter(range(6)), work, background=True)
    assert next(items) == 0
    # While the consumer holds batch 0 (the step runs), batch 1 is prepared on the thread.
    assert second_prepared.wait(timeout=30)
    assert list(items) == [10, 20, 30, 40, 50]
    assert worked_on == list(range(6))


def test_the_inline_path_prepares_each_item_when_asked():
    from bert_train.batches import prefetched

    worked_on: list[int] = []
    items = prefetched(iter(range(3)), lambda i: worked_on.append(i) or i, background=False)
    assert next(items) == 0 and worked_on == [0]
    assert list(items) == [1, 2] and worked_on == [0, 1, 2]


def test_an_error_while_preparing_is_raised_at_its_item():
    from bert_train.batches import prefetched
    from bert_train.errors import StoreUnavailable

    def work(item: int) -> int:
        if item == 2:
            raise StoreUnavailable("shard 2 unreadable")
        return item

    items = prefetched(iter(range(5)), work, background=True)
    assert [next(items), next(items)] == [0, 1]
    with pytest.raises(StoreUnavailable, match="shard 2 unreadable"):
        next(items)


def test_closing_the_consumer_ends_the_prefetch_thread():
    from bert_train.batches import prefetched

    def endless():
        n = 0
        while True:
            yield n
            n += 1

    items = prefetched(endless(), lambda i: i, background=True, depth=1)
    assert next(items) == 0
    items.close()  # the loop returned mid-epoch (a stop, the cost cap, early stopping)
    assert not [t for t in threading.enumerate() if t.name == "bert_train-prefetch"]


def test_compile_auto_is_on_for_cuda_and_off_on_cpu():
    from bert_train.runtime import compile_enabled

    assert compile_enabled("auto", CUDA) and not compile_enabled("auto", CPU)
    assert compile_enabled("on", CPU) and not compile_enabled("off", CUDA)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "compiled"), [("on", True), ("auto", False)])
def test_a_run_under_compile_reports_the_compile_time_in_its_metrics(small_data, tmp_path, monkeypatch, caplog,
                                                                     mode, compiled):
    """--compile on runs the loop's model under torch.compile (here through dynamo's eager backend,
    so no C++ toolchain is needed) and metrics.json and the log give the first step's time."""
    from bert_train import train
    from tests.container.conftest import final_metrics, tiny_config

    real_compile, calls = torch.compile, []

    def eager_compile(model, **options):
        calls.append(options)
        return real_compile(model, backend="eager", **options)

    monkeypatch.setattr(torch, "compile", eager_compile)
    out = tmp_path / "out"
    with caplog.at_level("INFO", "bert_train"):
        result = train.run(tiny_config(*small_data, out, tmp_path / "ckpt", compile=mode, max_steps=4))
    assert result.exit_code == 0
    reported = final_metrics(out)["compile"]
    assert reported["mode"] == mode and reported["enabled"] is compiled
    assert calls == ([{"dynamic": True}] if compiled else [])
    if compiled:
        assert reported["first_step_seconds"] > 0
        assert "torch.compile: the first step took" in caplog.text
    else:
        assert reported["first_step_seconds"] is None



def test_predict_scores_unpadded_on_the_cpu_only():
    """Unpadded scoring was measured on the CPU only: a GPU runs the stock model (modeling.cpu_tuned)."""
    from bert_train import modeling, predict

    tokenizer, location = modeling.build_tokenizer("random:tiny", str(VOCAB), "unused")
    model = modeling.build_model(location, ["a", "b"], len(tokenizer))
    runner, unpadded = predict.runner_for(model, torch.device("cpu"))
    assert unpadded and isinstance(runner, modeling.UnpaddedBert)
    assert predict.runner_for(model, torch.device("cuda")) == (model, False)
