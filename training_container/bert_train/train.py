"""Fine-tune a BERT-family classifier: one hand-written loop, readable top to bottom.

    result = run(TrainConfig(train=..., eval=..., model="random:tiny", vocab=...,
                             output_uri=..., checkpoint_uri=...))

1. read and validate the data and the model spec (bad input stops here; nothing is written)
2. build the model, AdamW, a warmup + linear-decay schedule, mixed precision, DDP if torchrun
3. resume from the newest complete checkpoint, if any
4. train: length-grouped global batches, gradient accumulation, evaluation each epoch (or every
   --eval-steps), early stopping, a checkpoint every N steps or M minutes and at each evaluation
   that is the best so far, and on SIGTERM a last checkpoint and exit
5. write the model (the best evaluation's weights, read back from its checkpoint), tokenizer,
   label map, metrics, arguments and a model card to the output

The data order is a function of (seed, epoch) and the checkpoint holds every RNG state, so an
interrupted and resumed run takes exactly the steps an uninterrupted one takes.

Beside this file: `runtime` (processes, signals, precision, RNG), `checkpoint` (the store and
the file format), `evaluation` (evaluation and early stopping), `outputs` (the final record
and the model directory), `state` (what a checkpoint carries from step to step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bertbatch_contract import job, metrics
from bertbatch_contract import tasks as problem_types
from bertbatch_contract.hyperparameters import metric_of
from bertbatch_contract.progress import Progress

from . import checkpoint as ckpt
from . import cost, data, dropout, fsx, inputs_store, long_text, modeling, outputs, storage, tasks, vocab_rows
from .batches import MemoryBatches, StepBatch, StoreBatches, prefetched
from .config import BadInput, Cadence, Locations, TrainConfig, resolve_cadence, resolve_locations, validate
from .efficiency import EfficiencyMeter
from .errors import Diverged, StoreUnavailable
from .evaluation import evaluate, record_evaluation
from .retries import Waits
from .runtime import (
    Autocast,
    Dist,
    StopRequest,
    any_rank,
    autocast_for,
    choose_precision,
    compile_enabled,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_distributed,
    teardown_distributed,
)
from .state import TrainState
from .tasks import Task
from .telemetry import Telemetry, gpu_metrics
from .tracking import FAILED, FINISHED, KILLED, STOP_WAIT_SECONDS, Tracker

log = logging.getLogger("bert_train")
T = TypeVar("T")


@dataclass
class TrainResult:
    run_id: str
    exit_code: int
    global_step: int
    total_steps: int
    metrics: dict[str, Any]  # what metrics.json holds (empty if interrupted)
    output_uri: str
    checkpoint_uri: str
    interrupted: bool = False  # stopped with a checkpoint to resume from (SIGTERM or the cost cap)
    resumed_from_step: int | None = None
    samples_per_second: float = 0.0
    tokens_per_second: float = 0.0
    padding_fraction: float = 0.0
    wall_seconds: float = 0.0
    checkpoint_seconds: list[float] = field(default_factory=list)  # save + upload, per checkpoint
    checkpoint_blocking_seconds: float = 0.0  # how long training waited for checkpoints
    sigterm_to_exit_seconds: float | None = None
    cost_usd: float = 0.0  # over all attempts; counted only while a cost cap is set


@dataclass(frozen=True)
class Plan:
    """How many optimizer steps, from the data size and the global batch."""

    global_batch: int  # examples per optimizer step, all ranks and micro-batches
    steps_per_epoch: int
    total_steps: int
    epochs: int  # epochs the steps reach into (fewer than --epochs when --max-steps ends it first)
    warmup_steps: int


@dataclass(frozen=True)
class Inputs:
    labels: list[str]  # classes or labels ([] for regression)
    task: Task  # the problem type: targets, loss, metrics
    tokenizer: Any  # a transformers tokenizer
    model: torch.nn.Module  # initialised from the seed, not yet on the device
    train_rows: int
    used_ids: set[int]  # every token id of the training data, and the special ids
    eval_enc: data.Encoded | None  # None without --eval
    train_enc: data.Encoded | None = None  # a data file read whole; None for a store
    store: inputs_store.TrainStore | None = None  # a tokenized store, streamed
    token_types: bool = False  # pairs give the model token type ids (modeling.token_types_used)

    def truncated_rows(self) -> dict[str, int | None]:
        """Rows longer than --max-seq-length, per split (eval None without --eval)."""
        train = self.train_enc.truncated if self.train_enc is not None else None
        if self.store is not None:
            train = self.store.truncated_rows()
        return {"train": train, "eval": self.eval_enc.truncated if self.eval_enc is not None else None}


@dataclass(frozen=True)
class Training:
    """Everything the loop trains with; built once, before the first step."""

    config: TrainConfig
    loc: Locations
    d: Dist
    plan: Plan
    inputs: Inputs
    model: torch.nn.Module  # what the loop calls: the model, DDP-wrapped under torchrun
    batches: MemoryBatches | StoreBatches  # the global batches of each epoch
    parts: ckpt.Trainable  # the bare model and what a checkpoint saves with it
    precision: str
    autocast: Autocast
    pad_multiple: int
    unpadded: bool  # the model runs on concatenated tokens (modeling.UnpaddedBert): no padding computed
    rows: vocab_rows.RowSplitEmbedding | None  # word-embedding rows no training token uses: outside AdamW
    clip_in_step: bool  # clipping folded into fused AdamW (`clip_in_step`, CPU); else clip_grad_norm_ first
    compiled: bool  # --compile: the model runs under torch.compile
    telemetry: Telemetry
    work_dir: Path
    checkpoint_uri: str
    tracker: Tracker = field(default_factory=lambda: Tracker(None, run_id=""))  # MLflow, when configured
    cost: cost.CostMeter = field(default_factory=cost.CostMeter)  # off unless a cost cap is set
    mfu: EfficiencyMeter | None = None  # the model's FLOPs against its GPUs' peak (None: none reported)

    def is_eval_step(self, step: int) -> bool:
        """Every --eval-steps steps (default: each epoch end), and the last step."""
        every = self.config.eval_steps or self.plan.steps_per_epoch
        return self.inputs.eval_enc is not None and (step % every == 0 or step == self.plan.total_steps)


@dataclass
class Window:
    """Sums over the steps since the last progress line (or over this attempt, for the ETA)."""

    loss: float = 0.0
    steps: int = 0
    samples: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, loss: float, samples: int, tokens: int, seconds: float) -> None:
        self.loss += loss
        self.steps += 1
        self.samples += samples
        self.tokens += tokens
        self.seconds += seconds


# --- the run -----------------------------------------------------------------------------------


def run(config: TrainConfig, *, on_step: Callable[[int], None] | None = None,
        waits: Waits | None = None) -> TrainResult:
    """Train according to `config`; returns the result (exit_code 0, EXIT_INTERRUPTED after a
    SIGTERM, or EXIT_COST_CAP at the cost cap). Raises BadInput, before anything is written, when
    the inputs are unusable. `on_step(step)` is called after every optimizer step (benchmarks, tests);
    `waits` is the clock and sleep of the checkpoint store's retries (tests: fakes)."""
    wall_start = time.monotonic()
    validate(config)
    meter = cost.meter_from_env()  # with a cost cap: reads the instance file; BadInput if unenforceable
    loc = resolve_locations(config)
    cadence = resolve_cadence(config)
    outputs.check_destinations(loc)
    d = setup_distributed()
    temp_dir = None
    if not loc.work_dir:  # scratch space only; removed at the end unless it holds the checkpoints
        temp_dir = tempfile.mkdtemp(prefix="bert_train-")
        loc = dataclasses.replace(loc, work_dir=temp_dir)
    keep_scratch = False  # true once it holds checkpoints that exist nowhere else
    stop = StopRequest()
    stop.install()
    tracker = Tracker.from_env(enabled=d.is_main, run_id=loc.run_id)  # reads the environment only
    try:
        t = dataclasses.replace(prepare(config, loc, d), tracker=tracker, cost=meter)
        tracker.start(settings(t, cadence))  # after every input check: bad input leaves no MLflow run
        keep_scratch = loc.checkpoints_are_local_only
        checkpoints = Checkpointer(t, cadence, waits)
        state = TrainState()
        resumed_from = resume(t, checkpoints.store, state)
        result = train_loop(t, state, checkpoints, stop, on_step, resumed_from)
        if t.inputs.store is not None:
            t.inputs.store.reader.close()  # an S3 store's downloaded shards go
        if result.interrupted:  # KILLED: a retry continues this MLflow run
            tracker.close(KILLED, wait_seconds=STOP_WAIT_SECONDS)
        else:
            tracker.close(FINISHED)  # bounded: METRICS_WAIT_SECONDS, or MODEL_WAIT_SECONDS for a model upload
    except StoreUnavailable:
        keep_scratch = True  # the checkpoints that could not be uploaded are in it
        raise
    finally:
        tracker.close(FAILED, wait_seconds=STOP_WAIT_SECONDS)  # nothing when closed above
        stop.uninstall()
        teardown_distributed(d)
        if temp_dir and not keep_scratch:
            shutil.rmtree(temp_dir, ignore_errors=True)
    result.wall_seconds = time.monotonic() - wall_start
    if stop.at is not None:
        result.sigterm_to_exit_seconds = time.monotonic() - stop.at
        if d.is_main:
            log.warning("%s -> exit in %.2f s (Batch sends SIGKILL %d s after SIGTERM by default; this "
                        "platform asks for %d s)", stop.signame, result.sigterm_to_exit_seconds, 30,
                        job.CONTAINER_STOP_TIMEOUT_SECONDS)
    return result


# --- 1. inputs and 2. the model ------------------------------------------------------------------


def read_inputs(config: TrainConfig, loc: Locations) -> Inputs:
    """Every check happens here, before the first byte is written anywhere."""
    store = inputs_store.open_store(config.train, loc.work_dir)  # None: a data file, read whole
    train_ex: list[data.Example] = []
    if store is not None:
        labels, counts, rows = store.labels(), store.label_counts(), store.rows
    else:
        # Data under the data bucket's datasets/ prefix is read from FSx when the host has it.
        train_ex = data.read_examples(fsx.input_location(config.train), config.text_column, config.label_column,
                                      config.text_pair_column, problem_type=config.problem_type,
                                      separator=config.label_separator)
        labels = data.infer_labels(train_ex, config.train, config.problem_type)
        counts, rows = data.label_counts((e.label for e in train_ex), config.problem_type), len(train_ex)
    tokenizer, model = build_tokenizer_and_model(config, loc, Task(config.problem_type, tuple(labels)))
    if labels:
        labels = modeling.model_labels(model)  # a fine-tuned checkpoint's class order (modeling.build_model)
    weights = (tasks.balanced_weights(config.problem_type, labels, counts, rows)
               if config.class_weights == "balanced" else None)
    task = Task(config.problem_type, tuple(labels), weights)
    if store is not None:
        store.check(config, tokenizer)
    pairs = store.pairs if store is not None else bool(config.text_pair_column)
    token_types = modeling.token_types_used(model, tokenizer, pairs=pairs)
    # Without --eval (a quick local run) there is no evaluation and no early stopping.
    eval_enc = (inputs_store.read_eval(config, tokenizer, task, loc.work_dir, token_types=token_types)
                if config.eval else None)
    if store is not None:
        return Inputs(labels=labels, task=task, tokenizer=tokenizer, model=model, train_rows=store.rows,
                      used_ids=store.used_ids(), eval_enc=eval_enc, store=store, token_types=token_types)
    cache = fsx.token_cache_dir()  # sweep children and retries tokenize a dataset once
    train_enc = fsx.encode_cached(train_ex, tokenizer, task, long_text.Fit.of(config), cache_dir=cache,
                                  token_types=token_types)
    return Inputs(labels=labels, task=task, tokenizer=tokenizer, model=model, train_rows=len(train_enc),
                  used_ids=used_token_ids(tokenizer, train_enc), eval_enc=eval_enc, train_enc=train_enc,
                  token_types=token_types)


def build_tokenizer_and_model(config: TrainConfig, loc: Locations, task: Task) -> tuple[Any, torch.nn.Module]:
    if config.model.startswith("random:") and config.vocab:
        data.check_vocab(config.vocab)
    tokenizer, model_location = modeling.build_tokenizer(config.model, config.vocab, loc.cache_dir)
    seed_everything(config.seed)  # same initial weights on every rank and every attempt
    model = modeling.build_model(model_location, list(task.labels), len(tokenizer), problem_type=task.problem_type)
    long_text.check_positions(config.max_seq_length, model, config.model)
    return tokenizer, model


def report_truncation(config: TrainConfig, inputs: Inputs) -> None:
    """One line per split: how many rows did not fit in --max-seq-length, and what became of them."""
    fate = long_text.Fit.of(config).describe()
    sizes = {"train": inputs.train_rows, "eval": len(inputs.eval_enc) if inputs.eval_enc is not None else 0}
    for split, count in inputs.truncated_rows().items():
        if count is not None:
            log.info("%s: %d of %d rows longer than --max-seq-length %d: %s", split, count, sizes[split],
                     config.max_seq_length, fate)


def used_token_ids(tokenizer: Any, enc: data.Encoded) -> set[int]:
    """Every token id of the training data, and the special ids (padding among them)."""
    used: set[int] = set(tokenizer.all_special_ids)
    for ids in enc.input_ids:
        used.update(ids)
    return used


def plan_steps(config: TrainConfig, examples: int, world_size: int) -> Plan:
    global_batch = config.batch_size * world_size * config.gradient_accumulation_steps
    steps_per_epoch = examples // global_batch
    if steps_per_epoch == 0:
        raise BadInput(f"{config.train}: {examples} examples is less than one global batch "
                       f"({config.batch_size} x {world_size} processes x {config.gradient_accumulation_steps} "
                       "accumulation)")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    return Plan(global_batch=global_batch, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                epochs=math.ceil(total_steps / steps_per_epoch),
                warmup_steps=math.ceil(config.warmup_ratio * total_steps))


def prepare(config: TrainConfig, loc: Locations, d: Dist) -> Training:
    """Inputs, then the model on its device, AdamW, the schedule, precision and DDP."""
    inputs = read_inputs(config, loc)
    if d.is_main:
        report_truncation(config, inputs)
    plan = plan_steps(config, inputs.train_rows, d.world_size)
    precision = choose_precision(config.precision, d.device)
    if d.device.type == "cuda" and torch.cuda.get_device_capability(d.device)[0] >= 8:
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer
    scaler = torch.amp.GradScaler(d.device.type, enabled=precision == "fp16")

    model = inputs.model
    if d.device.type == "cpu":
        dropout.install(model)  # cheaper masks than torch's CPU dropout (see dropout.py)
    # fp16 keeps every row in AdamW: its grad scaler skips steps, and skipped steps must not decay.
    # CPU only until bench/gpu.sh shows the split pays on a GPU (modeling.cpu_tuned).
    cpu_tuned = modeling.cpu_tuned(d.device)
    rows = vocab_rows.install(model, inputs.used_ids) if precision != "fp16" and cpu_tuned else None
    model.to(d.device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases and LayerNorm
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        fused=True,  # one kernel for the whole update (CUDA and CPU)
    )
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, plan.warmup_steps, plan.total_steps)
    # On CPU, BERT classifiers run through their own modules, without transformers' generic forward
    # (same weights, same loss; see modeling); on CUDA transformers' own model with SDPA attention.
    unpadded = modeling.use_unpadded(model, d.device)
    trained = modeling.runner(model, d.device)
    compiled = compile_enabled(config.compile, d.device)
    if compiled:  # dynamic: batch lengths vary from step to step; one compilation covers them
        trained = torch.compile(trained, dynamic=True)  # type: ignore[assignment]
    if d.enabled:
        # No buffer broadcast: BERT's buffers are constants (and the unused rows decay alike on every rank).
        trained = DistributedDataParallel(trained, device_ids=[d.local_rank] if d.device.type == "cuda" else None,
                                          broadcast_buffers=False)
    # Dropout streams differ per rank but are fixed by the seed.
    torch.manual_seed(config.seed + d.rank)
    dropout.seed(config.seed + d.rank)

    work_dir = Path(loc.work_dir)
    checkpoint_uri = loc.checkpoint_uri or str(work_dir / "checkpoints" / loc.run_id)
    if loc.checkpoints_are_local_only and d.is_main:
        log.warning("no --checkpoint-uri or $%s: checkpoints stay in %s; a new container cannot resume",
                    job.ENV_CHECKPOINT_URI, checkpoint_uri)
    batches: MemoryBatches | StoreBatches
    if inputs.store is not None:
        source = inputs.store.rows_source(inputs.task, token_types=inputs.token_types)
        batches = StoreBatches(source, global_batch=plan.global_batch, seed=config.seed,
                               megabatch_factor=config.megabatch_factor)
    else:
        assert inputs.train_enc is not None
        batches = MemoryBatches(inputs.train_enc, global_batch=plan.global_batch, seed=config.seed,
                                megabatch_factor=config.megabatch_factor)
    return Training(
        config=config, loc=loc, d=d, plan=plan, inputs=inputs, model=trained, batches=batches,
        parts=ckpt.Trainable(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler),
        precision=precision, autocast=autocast_for(precision, d.device),
        pad_multiple=8 if d.device.type == "cuda" else 1,  # tensor cores like multiples of 8
        unpadded=unpadded, rows=rows, clip_in_step=cpu_tuned, compiled=compiled,
        telemetry=Telemetry(enabled=d.is_main, namespace=loc.namespace, profile=loc.profile, run_id=loc.run_id,
                            local_output_dir=None if storage.is_s3(loc.output_uri) else loc.output_uri),
        work_dir=work_dir, checkpoint_uri=checkpoint_uri,
        mfu=EfficiencyMeter.for_run(model, d.device, d.world_size, precision),
    )


# --- 3. checkpoints and resuming -------------------------------------------------------------------


class Checkpointer:
    """Checkpoints at the cadence: a snapshot at the step boundary (training waits for that
    only), then write and upload on the store's background thread. Keeps what the result
    reports: seconds per completed checkpoint and the time training was blocked."""

    def __init__(self, t: Training, cadence: Cadence, waits: Waits | None = None) -> None:
        self.t = t
        self.cadence = cadence
        self.seconds: list[float] = []  # appended by the store's thread as checkpoints complete
        self.blocked = 0.0
        self.last_step = 0
        self.last_time = time.monotonic()
        self.store = ckpt.CheckpointStore(t.checkpoint_uri, t.work_dir / "staging" / f"rank{t.d.rank}",
                                          t.config.keep_checkpoints, t.loc.run_id, on_complete=self._completed,
                                          give_up_after=cadence.give_up_minutes * 60, waits=waits)

    def _completed(self, step: int, seconds: float) -> None:
        self.seconds.append(seconds)
        log.info("checkpoint %s complete in %.2f s", ckpt.step_dir(step), seconds)
        self.t.telemetry.metrics({metrics.CHECKPOINT_SECONDS.name: seconds})

    def start(self, state: TrainState) -> None:
        """The cadence's clock starts when training (re)starts at `state.step`; the best checkpoint
        the resumed state names is never pruned."""
        self.last_step, self.last_time = state.step, time.monotonic()
        self.store.keep_best(best_step(state))

    def best_unsaved(self, state: TrainState) -> bool:
        """The evaluation at this step is the best so far and no checkpoint holds its weights yet."""
        return best_step(state) == state.step > self.last_step

    def time_due(self) -> bool:
        return self.cadence.time_due(time.monotonic() - self.last_time)

    def save(self, state: TrainState, *, wait: bool) -> None:
        """A checkpoint at `state.step` (a collective: every rank calls it)."""
        t0 = time.monotonic()
        d, plan = self.t.d, self.t.plan
        rng_all: list[Any] = [None] * d.world_size
        if d.enabled:
            dist.all_gather_object(rng_all, rng_state())
        else:
            rng_all = [rng_state()]
        self.t.cost.record(state)  # the checkpoint carries the run's cost until now
        if d.is_main:
            snap = ckpt.snapshot(self.t.parts, state=asdict(state), rng=rng_all, global_batch=plan.global_batch,
                                 world_size=d.world_size, steps_per_epoch=plan.steps_per_epoch,
                                 labels=self.t.inputs.labels)
            self.store.save(state.step, functools.partial(ckpt.write_snapshot, snap), wait=wait,
                            best_step=best_step(state))
        if d.enabled:
            dist.barrier()
        self.blocked += time.monotonic() - t0
        self.last_step, self.last_time = state.step, time.monotonic()

    def stop_by_deadline(self, stop: StopRequest) -> None:
        """After SIGTERM: the checkpoint in flight and the last one are stored, retries included,
        within job.SIGTERM_CHECKPOINT_BUDGET_SECONDS of the signal, or given up (exit 74)."""
        since = time.monotonic() - stop.at if stop.at is not None else 0.0  # another rank got the signal
        self.store.stop_within(job.SIGTERM_CHECKPOINT_BUDGET_SECONDS - since)

    def close(self, *, require_stored: bool = False) -> None:
        """Wait for the last upload: a retry of this job resumes instead of restarting. With
        `require_stored`, raise StoreUnavailable if that checkpoint did not reach the store."""
        self.store.close(require_stored=require_stored)


def best_step(state: TrainState) -> int | None:
    """The step of the best evaluation so far, None before the first one."""
    return None if state.best_metric is None else state.best_step


def restore(t: Training, state: TrainState, path: Path) -> None:
    saved = ckpt.load(path, t.parts, device=t.d.device, global_batch=t.plan.global_batch, labels=t.inputs.labels)
    if len(saved["rng"]) == t.d.world_size:
        set_rng_state(saved["rng"][t.d.rank])
    else:  # a different number of processes: dropout streams cannot match; stay deterministic
        torch.manual_seed(t.config.seed + t.d.rank + saved["state"]["step"])
        dropout.seed(t.config.seed + t.d.rank + saved["state"]["step"])
    for k, v in saved["state"].items():
        setattr(state, k, v)


def resume(t: Training, store: ckpt.CheckpointStore, state: TrainState) -> int | None:
    """Restore the newest checkpoint that loads; rank 0 chooses it and the others fetch the same.
    Returns its step, or None when the run starts from scratch."""
    d = t.d
    resumed_from = None
    scratch = t.work_dir / "restore" / f"rank{d.rank}"
    if d.is_main:
        for step, path in store.candidates(scratch):
            try:
                restore(t, state, path)
            except Exception as exc:  # any checkpoint that does not load is skipped
                log.warning("skipping checkpoint %s: cannot load (%s)", ckpt.step_dir(step), str(exc).splitlines()[0])
                continue
            resumed_from = step
            break
    if d.enabled:
        box: list[int | None] = [resumed_from]
        dist.broadcast_object_list(box, src=0)
        resumed_from = box[0]
        if not d.is_main and resumed_from is not None:
            restore(t, state, store.fetch(resumed_from, scratch))
    shutil.rmtree(scratch, ignore_errors=True)
    steps_per_epoch = t.plan.steps_per_epoch
    if resumed_from is not None:
        log.info("resumed from %s: epoch %d, batch %d of %d", ckpt.step_dir(resumed_from),
                 resumed_from // steps_per_epoch + 1, resumed_from % steps_per_epoch, steps_per_epoch)
    t.telemetry.metrics({metrics.RESUMED.name: 1.0 if resumed_from is not None else 0.0})
    if d.is_main:
        log.info("run %s: %d train / %d eval examples, %d labels, %d steps (%d per epoch, global batch %d), "
                 "precision %s, %d process(es) on %s", t.loc.run_id, t.inputs.train_rows,
                 len(t.inputs.eval_enc or ()), len(t.inputs.labels), t.plan.total_steps, steps_per_epoch,
                 t.plan.global_batch, t.precision, d.world_size, d.device.type)
    return resumed_from


# --- 4. train -----------------------------------------------------------------------------------


def train_loop(t: Training, state: TrainState, checkpoints: Checkpointer, stop: StopRequest,
               on_step: Callable[[int], None] | None, resumed_from: int | None) -> TrainResult:
    config, d, plan = t.config, t.d, t.plan
    window, attempt = Window(), Window()  # since the last progress line; this attempt (for the ETA)
    checkpoints.start(state)
    t.model.train()

    if state.step > state.last_eval_step and t.is_eval_step(state.step):
        run_evaluation(t, state, stop)  # the checkpoint was written by a SIGTERM that cut this evaluation short
    if any_rank(stop.requested, d):
        return stopped(t, state, checkpoints, resumed_from, stop)
    if any_rank(d.is_main and t.cost.must_stop(state, checkpoints.seconds), d):  # e.g. resumed with the same cap
        return cost_capped(t, state, checkpoints, resumed_from)

    while state.step < plan.total_steps and not state.early_stopped:
        epoch = state.step // plan.steps_per_epoch
        ordered = t.batches.epoch(epoch, state.step % plan.steps_per_epoch, world_size=d.world_size, rank=d.rank,
                                  accumulation=config.gradient_accumulation_steps)
        steps = prefetched(ordered, functools.partial(collate_step, t), background=prefetch_in_background(d.device))
        with contextlib.closing(steps):
            for t0, (sb, micro_batches) in timed(steps):  # t0: before the batch was asked for
                step_loss = train_step(t, micro_batches)
                state.step += 1
                if on_step is not None:
                    on_step(state.step)

                loss_value, stop_now, time_due, over_cap = agree(t, state, step_loss, stop, checkpoints)
                seconds = time.perf_counter() - t0
                window = account(t, state, sb, epoch, loss_value, seconds, window, attempt)

                if t.is_eval_step(state.step) and not (stop_now or over_cap):  # a resumed run evaluates it
                    run_evaluation(t, state, stop)
                # Ranks must agree: under DDP only the all-reduced flag counts (a signal that lands
                # after it is seen at the next step); one process may stop at once.
                if stop_now or (not d.enabled and stop.requested):
                    return stopped(t, state, checkpoints, resumed_from, stop)
                if over_cap:
                    return cost_capped(t, state, checkpoints, resumed_from)
                if state.step < plan.total_steps and not state.early_stopped and (
                    checkpoints.cadence.step_due(state.step) or time_due or checkpoints.best_unsaved(state)
                ):
                    checkpoints.save(state, wait=False)
                if state.step >= plan.total_steps or state.early_stopped:
                    break

    checkpoints.close()
    return finish(t, state, checkpoints, resumed_from)


def agree(t: Training, state: TrainState, step_loss: torch.Tensor, stop: StopRequest,
          checkpoints: Checkpointer) -> tuple[float, bool, bool, bool]:
    """After a step: (mean loss over ranks, stop now, checkpoint time due, over the cost cap),
    the same on every rank. One small all-reduce and one device-to-host copy per step, at the step
    boundary (the only host sync of a CUDA step): every rank must see a SIGTERM at the same step."""
    d = t.d
    time_due = d.is_main and checkpoints.time_due()
    over_cap = d.is_main and t.cost.must_stop(state, checkpoints.seconds)  # rank 0 decides for all
    flags = torch.stack([step_loss, torch.tensor(float(stop.requested), device=d.device),
                         torch.tensor(float(time_due), device=d.device),
                         torch.tensor(float(over_cap), device=d.device)])
    if d.enabled:
        dist.all_reduce(flags)
    total_loss, stopping, due, capped = flags.tolist()
    loss_value = total_loss / d.world_size
    if not math.isfinite(loss_value) and t.precision != "fp16":  # fp16: the grad scaler skips such steps
        raise Diverged(f"the training loss is {loss_value} at step {state.step}: stopped, no model published "
                       "(lower --learning-rate or --max-grad-norm)")
    return loss_value, stopping > 0, due > 0, capped > 0


def account(t: Training, state: TrainState, sb: StepBatch, epoch: int, loss_value: float, seconds: float,
            window: Window, attempt: Window) -> Window:
    """Count a step into the state and the windows, with a progress line every --logging-steps;
    returns the window to count the next step into."""
    config = t.config
    batch, lengths = sb.rows, sb.lengths
    real_tokens = sum(lengths[i] for i in batch)
    state.loss_sum += loss_value
    state.samples += len(batch)
    state.tokens += real_tokens
    state.computed_tokens += (real_tokens if t.unpadded else data.padded_tokens(
        batch, lengths, config.gradient_accumulation_steps, t.d.world_size, t.pad_multiple))
    state.train_seconds += seconds
    if t.compiled and attempt.steps == 0:  # torch.compile compiles in this attempt's first step
        state.compile_seconds += seconds
        if t.d.is_main:
            log.info("torch.compile: the first step took %.1f s, compilation included", seconds)
    window.add(loss_value, len(batch), real_tokens, seconds)
    attempt.add(loss_value, len(batch), real_tokens, seconds)
    if state.step % config.logging_steps == 0 or state.step == t.plan.total_steps:
        report_progress(t, state, epoch, window, attempt)
        return Window()
    return window


def prefetch_in_background(device: torch.device) -> bool:
    """On CUDA the next batch is collated (into pinned memory) on a thread while the step runs.
    On CPU it is collated when the step asks for it: the CPU that would collate is the CPU the
    step computes on."""
    return device.type == "cuda"


def collate_step(t: Training, sb: StepBatch) -> tuple[StepBatch, list[dict[str, Any]]]:
    """This rank's micro-batches of a global batch, collated on the host; pinned on CUDA, so that
    their copies to the device do not wait for the host."""
    config, d = t.config, t.d
    micro_batches = []
    for idx in data.split_step_batch(sb.rows, config.gradient_accumulation_steps, d.world_size, d.rank):
        batch = (data.collate_unpadded(sb.enc, idx) if t.unpadded else
                 data.collate(sb.enc, idx, t.inputs.tokenizer.pad_token_id, t.pad_multiple))
        micro_batches.append(data.pinned(batch) if d.device.type == "cuda" else batch)
    return sb, micro_batches


def timed(items: Iterator[T]) -> Iterator[tuple[float, T]]:
    """Each item with the time it was asked for: a step's seconds include waiting for its batch."""
    while True:
        t0 = time.perf_counter()
        item = next(items, None)
        if item is None:
            return
        yield t0, item


def train_step(t: Training, micro_batches: list[dict[str, Any]]) -> torch.Tensor:
    """One optimizer step over a global batch (this rank's share, in micro-batches, collated by
    `collate_step`); returns this rank's mean loss, on the device."""
    config, d, parts = t.config, t.d, t.parts
    step_loss = torch.zeros((), device=d.device)
    for m, batch in enumerate(micro_batches):
        inputs = data.to_device(batch, d.device)  # non-blocking: from pinned memory on CUDA
        # Only the last micro-batch all-reduces gradients.
        last_micro = m == len(micro_batches) - 1
        sync: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if isinstance(t.model, DistributedDataParallel) and not last_micro:
            sync = t.model.no_sync()
        with sync:
            with t.autocast():
                # The task's loss (class weights, sigmoid or MSE), not the model's own; for chunked
                # documents on their pooled logits.
                loss = long_text.batch_loss(t.model, inputs, t.inputs.task.loss) / config.gradient_accumulation_steps
            parts.scaler.scale(loss).backward()
        step_loss += loss.detach().float()
    if parts.scaler.is_enabled():  # fp16: unscale, clip, then a step the scaler may skip
        parts.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), config.max_grad_norm)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        if t.clip_in_step:
            clip_in_step(parts.optimizer, config.max_grad_norm)
        else:  # no host sync: the norm and the clip factor stay on the device
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), config.max_grad_norm)
        parts.optimizer.step()
        if t.rows is not None:
            group = parts.optimizer.param_groups[0]  # the decayed group, which holds the used rows
            t.rows.decay(1.0 - float(group["lr"]) * float(group["weight_decay"]))
    parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    return step_loss


def clip_in_step(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """`clip_grad_norm_` folded into the fused AdamW step: the kernel divides each gradient by
    `grad_scale` as it reads it (the hook GradScaler uses), saving a pass over every gradient."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    # clip_grad_norm_ multiplies by min(1, max_norm / (norm + 1e-6)); this divides by its inverse
    optimizer.grad_scale = torch.clamp((total + 1e-6) / max_norm, min=1.0)  # type: ignore[attr-defined]


def report_progress(t: Training, state: TrainState, epoch: int, window: Window, attempt: Window) -> None:
    """The progress line and the training metrics for the steps in `window`."""
    eta = (t.plan.total_steps - state.step) * attempt.seconds / attempt.steps
    samples_per_s = window.samples / window.seconds
    t.telemetry.progress(Progress(epoch=epoch + 1, epochs=t.plan.epochs, step=state.step,
                                  total_steps=t.plan.total_steps, loss=window.loss / window.steps,
                                  samples_per_second=samples_per_s, eta_seconds=int(eta)))
    t.telemetry.metrics({
        metrics.TRAIN_LOSS.name: window.loss / window.steps,
        metrics.SAMPLES_PER_SECOND.name: samples_per_s,
        metrics.TOKENS_PER_SECOND.name: window.tokens / window.seconds,
        **gpu_metrics(t.d.device),
        **(t.mfu.window_metrics(window.tokens, window.samples, window.seconds) if t.mfu else {}),
    })
    t.tracker.log_metrics(state.step, {"train_loss": window.loss / window.steps, "samples_per_second": samples_per_s,
                                       "tokens_per_second": window.tokens / window.seconds,
                                       "learning_rate": float(t.parts.scheduler.get_last_lr()[0])})


def run_evaluation(t: Training, state: TrainState, stop: StopRequest) -> None:
    """Evaluate at the current step and update early stopping (nothing if a signal cut it short)."""
    evaluation = evaluate_now(t, stop)
    if evaluation is None:
        return
    result = evaluation.scalars
    record = record_evaluation(state, result, steps_per_epoch=t.plan.steps_per_epoch,
                               metric=metric_of(t.config.problem_type, t.config.early_stopping_metric),
                               patience=t.config.early_stopping_patience)
    t.telemetry.line(f"[eval] step {state.step} epoch {record['epoch']:.2f} "
                     + " ".join(f"{k} {v:.4f}" for k, v in result.items()))
    t.telemetry.metrics({metric.name: result[key] for key, metric in
                         (("eval_accuracy", metrics.EVAL_ACCURACY), ("eval_f1", metrics.EVAL_F1)) if key in result})
    t.tracker.log_metrics(state.step, result)


def evaluate_now(t: Training, stop: StopRequest) -> tasks.Evaluation | None:
    """The eval set's metrics with the weights as they are (None without --eval, or when stopped)."""
    if t.inputs.eval_enc is None:
        return None
    return evaluate(t.model, t.inputs.eval_enc, t.d, batch_size=t.config.eval_batch_size or 2 * t.config.batch_size,
                    autocast=t.autocast, pad_id=t.inputs.tokenizer.pad_token_id, multiple_of=t.pad_multiple,
                    task=t.inputs.task, stop=stop, unpadded=t.unpadded)


# --- the end: stopped by a signal, or 5. outputs ---------------------------------------------------


def stopped(t: Training, state: TrainState, checkpoints: Checkpointer, resumed_from: int | None,
            stop: StopRequest) -> TrainResult:
    """Stop at this step boundary: a last checkpoint (unless this step has one), then EXIT_INTERRUPTED;
    StoreUnavailable if it cannot be stored before the deadline the signal set."""
    checkpoints.stop_by_deadline(stop)
    if state.step > checkpoints.last_step:
        checkpoints.save(state, wait=True)
    checkpoints.close(require_stored=True)
    if t.d.is_main and state.step == 0:
        log.warning("stopped before the first step: nothing to checkpoint; exit code %d", job.EXIT_INTERRUPTED)
    elif t.d.is_main:
        log.warning("stopped at step %d/%d; checkpoint %s is complete at %s; exit code %d", state.step,
                    t.plan.total_steps, ckpt.step_dir(state.step), t.checkpoint_uri, job.EXIT_INTERRUPTED)
    return make_result(t, state, checkpoints, resumed_from, job.EXIT_INTERRUPTED)


def cost_capped(t: Training, state: TrainState, checkpoints: Checkpointer, resumed_from: int | None) -> TrainResult:
    """Stop before the cost cap is passed: a last checkpoint (unless this step has one), then
    EXIT_COST_CAP, which is not retried; a new submit with a higher cap resumes."""
    if state.step > checkpoints.last_step:
        checkpoints.save(state, wait=True)
    checkpoints.close(require_stored=True)
    if t.d.is_main and state.step == 0:
        log.warning("%s; nothing to checkpoint; exit code %d", t.cost.reached_line(state), job.EXIT_COST_CAP)
    elif t.d.is_main:
        log.warning("%s; checkpoint %s at %s; exit code %d", t.cost.reached_line(state), ckpt.step_dir(state.step),
                    t.checkpoint_uri, job.EXIT_COST_CAP)
    return make_result(t, state, checkpoints, resumed_from, job.EXIT_COST_CAP)


def make_result(t: Training, state: TrainState, checkpoints: Checkpointer, resumed_from: int | None,
                code: int) -> TrainResult:
    t.cost.record(state)
    return TrainResult(
        run_id=t.loc.run_id, exit_code=code, global_step=state.step, total_steps=t.plan.total_steps, metrics={},
        output_uri=t.loc.output_uri, checkpoint_uri=t.checkpoint_uri,
        interrupted=code in (job.EXIT_INTERRUPTED, job.EXIT_COST_CAP),
        resumed_from_step=resumed_from, samples_per_second=state.samples_per_second,
        tokens_per_second=state.tokens_per_second, padding_fraction=state.padding_fraction,
        checkpoint_seconds=list(checkpoints.seconds), checkpoint_blocking_seconds=checkpoints.blocked,
        cost_usd=state.cost_usd,
    )


def settings(t: Training, cadence: Cadence) -> dict[str, Any]:
    """Every setting, resolved: training_args.json and the MLflow run's parameters."""
    plan = t.plan
    return {**t.config.to_dict(), "run_id": t.loc.run_id, "output_uri": t.loc.output_uri,
            "checkpoint_uri": t.checkpoint_uri, "precision": t.precision, "world_size": t.d.world_size,
            "global_batch_size": plan.global_batch, "total_steps": plan.total_steps,
            "warmup_steps": plan.warmup_steps, "checkpoint_every_steps": cadence.every_steps,
            "checkpoint_every_minutes": cadence.every_minutes}


def finish(t: Training, state: TrainState, checkpoints: Checkpointer, resumed_from: int | None) -> TrainResult:
    """The outputs, written once at the end, metrics.json last."""
    config, d, plan = t.config, t.d, t.plan
    result = make_result(t, state, checkpoints, resumed_from, job.EXIT_OK)
    metric = metric_of(config.problem_type, config.early_stopping_metric)
    published = outputs.published_record(state, metric)
    if published["step"] != state.step:  # every rank: the weights every rank holds are the published ones
        published = load_best_weights(t, state, checkpoints.store, published)
    # The published weights' per-class numbers (and multi-label thresholds), from one more pass
    # over the eval set: every rank takes part, as in training's evaluations.
    report = evaluate_now(t, StopRequest())
    result.metrics = outputs.metrics_record(
        state, run_id=t.loc.run_id, total_steps=plan.total_steps, steps_per_epoch=plan.steps_per_epoch,
        early_stopping_metric=metric, checkpoint_seconds=checkpoints.seconds,
        checkpoint_blocking_seconds=checkpoints.blocked, resumed_from_step=resumed_from,
        global_batch_size=plan.global_batch, world_size=d.world_size, precision=t.precision, published=published,
        task=t.inputs.task, details=report.details if report is not None else {},
        efficiency=t.mfu.record(state) if t.mfu is not None else {},
    )
    result.metrics["truncated_rows"] = t.inputs.truncated_rows()
    result.metrics["compile"] = {"mode": config.compile, "enabled": t.compiled,
                                 "first_step_seconds": state.compile_seconds if t.compiled else None}
    if d.is_main:
        local_out = t.work_dir / "output"
        shutil.rmtree(local_out, ignore_errors=True)
        # the plain transformers model, as any other tool would load it
        vocab_rows.uninstall(t.parts.model)
        dropout.uninstall(t.parts.model)
        outputs.write_local(local_out, model=t.parts.model, tokenizer=t.inputs.tokenizer, task=t.inputs.task,
                            run_id=t.loc.run_id, config=settings(t, checkpoints.cadence), metrics=result.metrics)
        outputs.publish(local_out, t.loc.output_uri)
        t.tracker.log_model_dir(local_out)  # if the job asked; run() waits for it before the scratch dir goes
        log.info("done: step %d; published the model of step %d, %s; model in %s", state.step, published["step"],
                 ", ".join(f"{name} {_fmt(result.metrics.get(name))}"
                           for name in problem_types.METRICS[config.problem_type]), t.loc.output_uri)
    if d.enabled:
        dist.barrier()
    return result


def load_best_weights(t: Training, state: TrainState, store: ckpt.CheckpointStore,
                      published: dict[str, Any]) -> dict[str, Any]:
    """Load the best evaluation's weights from its checkpoint into the model on every rank (a
    collective: rank 0 reads them, the others receive them), to publish them; returns
    `published`, or the last step's record saying why they could not be read."""
    problem = _read_best_weights(t, store, published["step"]) if t.d.is_main else None
    if t.d.enabled:
        box: list[str | None] = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
        if problem is None:  # parameters and buffers: RowSplitEmbedding's unused rows are a buffer
            for tensor in itertools.chain(t.parts.model.parameters(), t.parts.model.buffers()):
                dist.broadcast(tensor.data, src=0)
    if problem is not None:
        return outputs.last_step_record(state, f"the checkpoint of the best evaluation, step {published['step']}, "
                                               f"could not be read ({problem})")
    if t.d.is_main:
        log.info("publishing the weights of step %d: %s", published["step"], published["reason"])
    return published


def _read_best_weights(t: Training, store: ckpt.CheckpointStore, step: int) -> str | None:
    """Load the weights of the checkpoint at `step` into the model; None, or why they could not be."""
    scratch = t.work_dir / "restore" / "best"
    try:
        ckpt.load_weights(store.fetch(step, scratch, only=(ckpt.MODEL_FILE,)), t.parts.model)
    except ValueError as exc:
        log.warning("publishing the last step's model: the best checkpoint %s cannot be read (%s)",
                    ckpt.step_dir(step), exc)
        return str(exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
