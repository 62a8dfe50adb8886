"""One side of the throughput comparison, in its own process (so its peak RSS is its own).

    python -m bench._side SPEC.json OUT.json

SPEC: side (baseline|tuned|contender|contender_unpadded|contender_stock), model spec (random:...), train/eval/vocab
paths, batch size, steps, learning rate, max sequence length, seed, precision, threads, work dir.
OUT gets the measurements.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    """Current resident set size (VmRSS) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def labels_of(path: str) -> list[str]:
    """The label set as the container infers it (numeric order)."""
    from bert_train import data

    return data.infer_labels(data.read_examples(path, "sentence", "label"), path)


def initial_model(spec: dict, labels: list[str], vocab_size: int):
    """The random-init model both sides start from: the container's BertConfig for the shape,
    seeded the way the container seeds before building its model (same seed -> same weights)."""
    import random

    import numpy as np
    import torch
    from transformers import BertForSequenceClassification

    from bert_train import modeling

    config = modeling.random_config(spec["model"], vocab_size)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {x: i for i, x in enumerate(labels)}
    torch.manual_seed(spec["seed"])
    random.seed(spec["seed"])
    np.random.seed(spec["seed"])
    return BertForSequenceClassification(config)


# --- the peers: transformers' real Trainer, as run_glue.py's defaults and as a user tunes it ------


def peer_precision(spec: dict) -> str:
    """The precision the container's `auto` picks on this hardware; the tuned peer uses the same."""
    import torch

    from bert_train.runtime import choose_precision

    return choose_precision(spec.get("precision", "auto"), torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def run_trainer(spec: dict, *, tuned: bool) -> dict:
    """run_glue.py defaults (`tuned=False`: every example padded to max_length, fp32, random
    order) or the best-configured Trainer (`tuned=True`: dynamic padding, length-grouped sampling,
    the container's precision choice, fused AdamW)."""
    import numpy as np
    import torch
    from transformers import (
        BertTokenizerFast,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    from bert_train import data

    hf_logging.set_verbosity_error()
    t_prep = time.perf_counter()
    tokenizer = BertTokenizerFast(vocab=spec["vocab"], do_lower_case=True)
    labels = labels_of(spec["train"])
    label2id = {x: i for i, x in enumerate(labels)}
    precision = peer_precision(spec) if tuned else "fp32"

    def load(path):
        ex = data.read_examples(path, "sentence", "label")
        texts, ids = [e.text for e in ex], [label2id[e.label] for e in ex]
        if tuned:
            # run_glue with --pad_to_max_length False: no padding at tokenization, padded per batch.
            enc = tokenizer(texts, max_length=spec["max_seq_length"], truncation=True)
            return RowsDataset([{"input_ids": i, "token_type_ids": t, "attention_mask": m, "labels": y}
                                for i, t, m, y in zip(enc["input_ids"], enc["token_type_ids"],
                                                      enc["attention_mask"], ids, strict=True)])
        # run_glue: tokenize with padding="max_length" (pad_to_max_length=True is its default),
        # max_length=max_seq_length (128), truncation=True; labels mapped to ids.
        enc = tokenizer(texts, padding="max_length", max_length=spec["max_seq_length"], truncation=True,
                        return_tensors="pt")
        enc["labels"] = torch.tensor(ids)
        return TensorDictDataset(dict(enc))

    train_ds, eval_ds = load(spec["train"]), load(spec["eval"])
    prep_seconds = time.perf_counter() - t_prep

    set_seed(spec["seed"])  # run_glue sets the seed before building the model
    model = initial_model(spec, labels, len(tokenizer))
    digest = weights_digest(model)
    rss_before = rss_mb()

    counts = {"on": True, "real": 0, "computed": 0, "samples": 0}
    step_ends: list[float] = []

    def count_inputs(module, args, kwargs):
        # Counted at the model's forward in training mode: the data loader reads one batch ahead
        # (accelerate), so counting in the collator would count a batch that is never trained on.
        if module.training and counts["on"]:
            counts["real"] += int(kwargs["attention_mask"].sum())
            counts["computed"] += int(kwargs["input_ids"].numel())
            counts["samples"] += int(kwargs["input_ids"].shape[0])

    model.register_forward_pre_hook(count_inputs, with_kwargs=True)
    # run_glue's collator when padding to max length; DataCollatorWithPadding when it does not.
    collator = DataCollatorWithPadding(tokenizer) if tuned else default_data_collator

    class Timer(TrainerCallback):
        t_begin = t_end = None
        steps = 0

        def on_train_begin(self, args, state, control, **kw):
            Timer.t_begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available() and state.global_step in (1, args.max_steps):
                torch.cuda.synchronize()  # the GPU's queue done: step 1 and the last step are timed whole
            Timer.t_end = time.perf_counter()
            Timer.steps = state.global_step
            step_ends.append(Timer.t_end)

        def on_train_end(self, args, state, control, **kw):
            counts["on"] = False  # the eval below uses the same collator

    tuning = dict(train_sampling_strategy="group_by_length", bf16=precision == "bf16", optim="adamw_torch_fused",
                  per_device_eval_batch_size=2 * spec["batch_size"],
                  use_cpu=not torch.cuda.is_available()) if tuned else {}  # Trainer wants use_cpu for CPU bf16
    args = TrainingArguments(
        output_dir=str(Path(spec["work_dir"]) / "trainer"),
        per_device_train_batch_size=spec["batch_size"],
        max_steps=spec["steps"],
        learning_rate=spec["learning_rate"],
        seed=spec["seed"],
        report_to=[],
        save_strategy="no",  # throughput without checkpoint writes (the contender's are off too)
        disable_tqdm=True,
        **tuning,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
        compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
        callbacks=[Timer()],
    )
    out = trainer.train()
    train_seconds = Timer.t_end - Timer.t_begin
    t_eval = time.perf_counter()
    ev = trainer.evaluate()
    eval_seconds = time.perf_counter() - t_eval
    if tuned:
        epoch_padding = epoch_plan_padding_trainer(trainer, train_ds)
        what = ("transformers Trainer, tuned: DataCollatorWithPadding (dynamic padding), "
                "train_sampling_strategy='group_by_length', fused AdamW, "
                f"{precision} (the container's choice on this hardware), eval batch {2 * spec['batch_size']}")
    else:
        attention_mask = train_ds.columns["attention_mask"]
        # Every example is padded to max_length: the whole-epoch plan pads exactly like these steps.
        epoch_padding = 1 - float(attention_mask.sum()) / attention_mask.numel()
        what = ("transformers Trainer, run_glue.py defaults: pad every example to max_length, fp32, "
                "AdamW (torch fused), linear schedule without warmup, weight decay 0, default data loader")
    return {
        "side": "tuned" if tuned else "baseline",
        "what": what,
        "precision": precision,
        "optimizer": str(args.optim.value if hasattr(args.optim, "value") else args.optim),
        "steps": Timer.steps,
        "samples": counts["samples"],
        "real_tokens": counts["real"],
        "computed_tokens": counts["computed"],
        "train_seconds": train_seconds,
        "trainer_train_runtime": out.metrics.get("train_runtime"),
        "steady_seconds": step_ends[-1] - step_ends[0] if len(step_ends) > 1 else None,
        "epoch_plan_padding_fraction": epoch_padding,
        "eval_accuracy": ev.get("eval_accuracy"),
        "eval_loss": ev.get("eval_loss"),
        "eval_seconds": eval_seconds,
        "prep_seconds": prep_seconds,
        "initial_weights": digest,
        "rss_before_train_mb": rss_before,
        "train_loss": out.training_loss,
    }


def epoch_plan_padding_trainer(trainer, train_ds) -> float:
    """Padding over one whole epoch of the tuned Trainer's own sampler (LengthGroupedSampler)."""
    sampler = trainer._get_train_sampler(train_ds)
    order = list(iter(sampler))
    batch = trainer.args.per_device_train_batch_size
    lengths = [len(train_ds[i]["input_ids"]) for i in range(len(train_ds))]
    real = computed = 0
    for k in range(0, len(order) - batch + 1, batch):
        rows = [lengths[i] for i in order[k : k + batch]]
        real += sum(rows)
        computed += max(rows) * len(rows)
    return 1 - real / computed if computed else 0.0


class RowsDataset:
    """A list of tokenized rows (what a tokenized `datasets.Dataset` without padding hands Trainer)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class TensorDictDataset:
    """Rows of a dict of equally long tensors (what a tokenized `datasets.Dataset` hands Trainer)."""

    def __init__(self, columns: dict):
        self.columns = columns

    def __len__(self):
        return len(self.columns["input_ids"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.columns.items()}


# --- contender: the container's training path ---------------------------------------------------


def epoch_plan_padding(spec: dict, tokenizer, labels: list[str], megabatch_factor: int) -> float:
    """Padding over one whole epoch of the container's own batch plan (data.epoch_batches with the
    run's length-grouping window), on the same training data. A short benchmark run is
    dominated by its first batch, which the container makes the LONGEST one on purpose (an
    out-of-memory shows at step 1), so this is the figure a real run sees."""
    from bert_train import data
    from bert_train.tasks import SINGLE_LABEL, Task

    ex = data.read_examples(spec["train"], "sentence", "label")
    enc = data.encode(ex, tokenizer, Task(SINGLE_LABEL, tuple(labels)), spec["max_seq_length"])
    lengths = enc.lengths
    batches = data.epoch_batches(lengths, spec["batch_size"], spec["seed"], 0, megabatch_factor)
    real = sum(lengths[i] for b in batches for i in b)
    computed = sum(data.padded_tokens(b, lengths, 1, 1) for b in batches)
    return 1 - real / computed if computed else 0.0



def run_contender(spec: dict) -> dict:
    from transformers import BertTokenizerFast
    from transformers.utils import logging as hf_logging

    from bert_train import modeling
    from bert_train.config import TrainConfig
    from bert_train.train import run

    hf_logging.set_verbosity_error()
    # Independent check that both sides start from the same weights: build the model the way
    # the baseline does and hash it (the container's run() builds its own the same way).
    tokenizer = BertTokenizerFast(vocab=spec["vocab"], do_lower_case=True)
    labels = labels_of(spec["train"])
    m = initial_model(spec, labels, len(tokenizer))
    digest = weights_digest(m)
    del m
    n_train = sum(1 for line in open(spec["train"], encoding="utf-8") if line.strip()) - 1
    per_epoch = max(1, n_train // spec["batch_size"])
    work = Path(spec["work_dir"])
    config = TrainConfig(
        train=spec["train"], eval=spec["eval"], model=spec["model"], vocab=spec["vocab"],
        max_seq_length=spec["max_seq_length"], batch_size=spec["batch_size"], max_steps=spec["steps"],
        epochs=-(-spec["steps"] // per_epoch), learning_rate=spec["learning_rate"], seed=spec["seed"],
        output_uri=str(work / "out"), checkpoint_uri=str(work / "ckpt"), work_dir=str(work / "work"),
        # Checkpoints off for the throughput comparison; their cost is measured by bench.checkpoint.
        checkpoint_every_steps=10**9, checkpoint_every_minutes=1e9,
        logging_steps=max(1, spec["steps"]), run_id="bench-contender", precision=spec.get("precision", "auto"),
    )
    config = dataclasses.replace(config, megabatch_factor=50) if spec.get("stock_step") else config
    if spec.get("unpadded") is not None:
        # The A/B of unpadded execution: this process's container runs with it on or off.
        modeling.UNPADDED_BY_DEFAULT = spec["unpadded"]
    if spec.get("stock_step"):
        stock_step()
    rss_before = rss_mb()
    # The container prints EMF/progress lines on stdout; keep this process's stdout for them.
    t0 = time.perf_counter()
    step_ends: list[float] = []
    result = run(config, on_step=lambda step: step_ends.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    m = result.metrics
    train_seconds = m["train_seconds"]
    real = round(result.tokens_per_second * train_seconds)
    computed = round(real / (1 - result.padding_fraction)) if result.padding_fraction < 1 else real
    last_eval = m.get("history", [{}])[-1] if m.get("history") else {}
    return {
        "side": "contender",
        "what": "bert_train.train.run: dynamic padding, length-grouped batches (window "
                f"{config.megabatch_factor} batches), its own defaults (AdamW fused, warmup 6% + linear decay, "
                "weight decay 0.01, grad clip 1.0)" + (
                    "; stock step: transformers' forward, torch's CPU dropout, every embedding row in AdamW, "
                    "clip_grad_norm_ then the step" if spec.get("stock_step") else
                    "; its step: modules called directly (PaddedBert), PCG64 dropout masks, unused embedding rows "
                    "outside AdamW, clipping in the fused step"),
        "stock_step": bool(spec.get("stock_step")),
        "precision": m.get("precision"),
        "optimizer": "adamw (torch, fused)",
        "steps": result.global_step,
        "samples": round(result.samples_per_second * train_seconds),
        "real_tokens": real,
        "computed_tokens": computed,
        "train_seconds": train_seconds,
        "run_wall_seconds": wall,
        "steady_seconds": step_ends[-1] - step_ends[0] if len(step_ends) > 1 else None,
        "epoch_plan_padding_fraction": epoch_plan_padding(spec, tokenizer, labels, config.megabatch_factor),
        "eval_accuracy": m.get("eval_accuracy"),
        "eval_loss": m.get("eval_loss"),
        "eval_step": last_eval.get("step"),
        "initial_weights": digest,
        "rss_before_train_mb": rss_before,
        "train_loss": m.get("train_loss"),
        "exit_code": result.exit_code,
        "unpadded": modeling.UNPADDED_BY_DEFAULT,
    }


def stock_step() -> None:
    """The container's training step without its own step work, in this process only: the model's
    transformers forward, torch's own dropout, every word-embedding row in AdamW, `clip_grad_norm_`
    then the step (and, in the caller, transformers' length-grouping window of 50 batches)."""
    import torch

    from bert_train import dropout, modeling, train, vocab_rows

    modeling.supports_direct = lambda model: False  # transformers' own forward, not PaddedBert
    dropout.install = lambda model: 0
    vocab_rows.install = lambda model, used_ids: None

    def clip_then_step(optimizer, max_norm):
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], max_norm)

    train.clip_in_step = clip_then_step


# The container as it ships; with unpadded execution forced on; with the stock training step
# (the A/Bs of those changes).
CONTENDERS = {"contender": {}, "contender_unpadded": {"unpadded": True}, "contender_stock": {"stock_step": True}}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["side"] in CONTENDERS:
        out = run_contender({**spec, **CONTENDERS[spec["side"]]})
    else:
        out = run_trainer(spec, tuned=spec["side"] == "tuned")
    out["peak_rss_mb"] = peak_rss_mb()
    out["threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(argv[1]).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
