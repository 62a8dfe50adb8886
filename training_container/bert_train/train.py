"""Fine-tune a BERT-family classifier: one hand-written loop, readable top to bottom.

    result = run(TrainConfig(train=..., eval=..., model="random:tiny", vocab=...,
                             output_uri=..., checkpoint_uri=...))

1. read and validate the data and the model spec (bad input stops here; nothing is written)
2. build the model, AdamW, a warmup + linear-decay schedule, mixed precision, DDP if torchrun
3. resume from the newest complete checkpoint, if any
4. train: length-grouped global batches, gradient accumulation, evaluation each epoch, early
   stopping, a checkpoint every N steps or M minutes, and on SIGTERM a last checkpoint and exit
5. write the model, tokenizer, label map, metrics, arguments and a model card to the output

The data order is a function of (seed, epoch) and the checkpoint holds every RNG state, so an
interrupted and resumed run takes exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from . import checkpoint as ckpt
from . import contract, data, metrics, modeling, outputs
from .config import BadInput, Locations, TrainConfig, resolve_locations, validate
from .progress import Progress
from .telemetry import Telemetry, gpu_metrics

log = logging.getLogger("bert_train")

HIGHER_IS_BETTER = {"eval_accuracy": True, "eval_f1": True, "eval_loss": False}


@dataclass
class TrainState:
    """Everything besides model/optimizer/scheduler/RNG that a resumed run needs."""

    step: int = 0  # optimizer steps done; with the epoch size this is the data position
    last_eval_step: int = 0
    best_metric: float | None = None
    best_step: int = 0
    evals_without_improvement: int = 0
    early_stopped: bool = False
    history: list[dict] = field(default_factory=list)
    loss_sum: float = 0.0  # sum of per-step mean losses (for the run's average train loss)
    samples: int = 0  # examples trained on, all ranks
    tokens: int = 0  # non-padding tokens trained on, all ranks
    computed_tokens: int = 0  # tokens computed including padding, all ranks
    train_seconds: float = 0.0  # time inside training steps, over all attempts


@dataclass
class TrainResult:
    run_id: str
    exit_code: int
    global_step: int
    total_steps: int
    metrics: dict  # what metrics.json holds (empty if interrupted)
    output_uri: str
    checkpoint_uri: str
    interrupted: bool = False
    resumed_from_step: int | None = None
    samples_per_second: float = 0.0
    tokens_per_second: float = 0.0
    padding_fraction: float = 0.0
    wall_seconds: float = 0.0
    checkpoint_seconds: list[float] = field(default_factory=list)  # save + upload, per checkpoint
    checkpoint_blocking_seconds: float = 0.0  # how long training waited for checkpoints
    sigterm_to_exit_seconds: float | None = None


# --- process setup -----------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


class StopRequest:
    """SIGTERM (Batch stopping the job, or a Spot reclaim notice) asks for a stop at the next
    step boundary. SIGINT does the same once (Ctrl-C on a laptop); a second SIGINT aborts."""

    def __init__(self):
        self.at: float | None = None
        self.signame = ""
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled on the main thread (e.g. run() in a worker)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.at is None:
            self.at = time.monotonic()
            self.signame = signal.Signals(signum).name
            os.write(2, f"bert_train: {self.signame} received: checkpointing at the next step boundary\n".encode())
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    @property
    def requested(self) -> bool:
        return self.at is not None


def choose_precision(requested: str, device: torch.device) -> str:
    if requested == "fp16" and device.type != "cuda":
        raise BadInput("--precision fp16 needs a GPU (use bf16 or fp32 on CPU)")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --- evaluation --------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, enc: data.Encoded, d: Dist, *, batch_size: int, autocast, pad_id: int, multiple_of: int,
             num_labels: int, stop: StopRequest) -> dict | None:
    """Accuracy, macro-F1 and loss over the eval set (sharded over ranks). None if stopped."""
    model.eval()
    lengths = enc.lengths
    order = sorted(range(len(enc)), key=lambda i: lengths[i])[d.rank :: d.world_size]
    # Every rank runs the same number of iterations (the collective below must match up), even
    # when the eval set does not split evenly.
    n_batches = math.ceil(math.ceil(len(enc) / d.world_size) / batch_size)
    confusion = torch.zeros(num_labels, num_labels, dtype=torch.float64, device=d.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=d.device)
    stopped = False
    for b in range(n_batches):
        if _any_rank(stop.requested, d):  # abandon: the eval reruns after the resume
            stopped = True
            break
        idx = order[b * batch_size : (b + 1) * batch_size]
        if not idx:
            continue
        batch = {k: v.to(d.device, non_blocking=True) for k, v in data.collate(enc, idx, pad_id, multiple_of).items()}
        labels = batch.pop("labels")
        with autocast():
            logits = model(**batch).logits.float()
        loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").double()
        confusion.index_put_((labels, logits.argmax(-1)), torch.ones_like(labels, dtype=torch.float64), accumulate=True)
    model.train()
    if stopped:
        return None
    if d.enabled:
        dist.all_reduce(confusion)
        dist.all_reduce(loss_sum)
    total = confusion.sum()
    tp = confusion.diag()
    present = (confusion.sum(0) + confusion.sum(1)) > 0  # macro over labels seen in truth or predictions
    f1 = 2 * tp / (confusion.sum(0) + confusion.sum(1)).clamp(min=1)
    return {
        "eval_accuracy": float(tp.sum() / total),
        "eval_f1": float(f1[present].mean()),
        "eval_loss": float(loss_sum / total),
    }


def _any_rank(flag: bool, d: Dist) -> bool:
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


# --- the run -----------------------------------------------------------------------------------


def run(config: TrainConfig, *, on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train according to `config`; returns the result (exit_code 0, or EXIT_INTERRUPTED after a
    SIGTERM). Raises BadInput, before anything is written, when the inputs are unusable.
    `on_step(step)` is called after every optimizer step (benchmarks, tests)."""
    wall_start = time.monotonic()
    validate(config)
    loc = resolve_locations(config)
    d = setup_distributed()
    temp_dir = None
    if not loc.work_dir:  # scratch space only; removed at the end unless it holds the checkpoints
        temp_dir = tempfile.mkdtemp(prefix="bert_train-")
        loc = dataclasses.replace(loc, work_dir=temp_dir)
    stop = StopRequest()
    stop.install()
    try:
        result = _run(config, loc, d, stop, on_step)
    finally:
        stop.uninstall()
        if d.enabled and dist.is_initialized():
            dist.destroy_process_group()
        if temp_dir and not loc.checkpoints_are_local_only:
            shutil.rmtree(temp_dir, ignore_errors=True)
    result.wall_seconds = time.monotonic() - wall_start
    if stop.at is not None:
        result.sigterm_to_exit_seconds = time.monotonic() - stop.at
        if d.is_main:
            log.warning("%s -> exit in %.2f s (Batch sends SIGKILL %d s after SIGTERM by default; this "
                        "platform asks for %d s)", stop.signame, result.sigterm_to_exit_seconds, 30,
                        contract.CONTAINER_STOP_TIMEOUT_SECONDS)
    return result


def _run(config: TrainConfig, loc: Locations, d: Dist, stop: StopRequest, on_step) -> TrainResult:
    # 1. Inputs. Every check happens here, before the first byte is written anywhere.
    train_ex = data.read_examples(config.train, config.text_column, config.label_column, config.text_pair_column)
    # Without --eval (a quick local run) there is no evaluation and no early stopping.
    eval_ex = (data.read_examples(config.eval, config.text_column, config.label_column, config.text_pair_column)
               if config.eval else [])
    labels = data.infer_labels(train_ex, config.train)
    data.check_eval_labels(eval_ex, labels, config.eval)
    label2id = {x: i for i, x in enumerate(labels)}

    tokenizer, model_location = modeling.build_tokenizer(config.model, config.vocab, loc.cache_dir)
    torch.manual_seed(config.seed)  # same initial weights on every rank and every attempt
    random.seed(config.seed)
    np.random.seed(config.seed)
    model = modeling.build_model(model_location, labels, len(tokenizer))
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions and config.max_seq_length > max_positions:
        raise BadInput(f"--max-seq-length {config.max_seq_length} exceeds the model's {max_positions} positions")
    train_enc = data.encode(train_ex, tokenizer, label2id, config.max_seq_length)
    eval_enc = data.encode(eval_ex, tokenizer, label2id, config.max_seq_length) if eval_ex else None
    del train_ex, eval_ex

    per_micro = config.batch_size * d.world_size
    global_batch = per_micro * config.gradient_accumulation_steps
    steps_per_epoch = len(train_enc) // global_batch
    if steps_per_epoch == 0:
        raise BadInput(f"{config.train}: {len(train_enc)} examples is less than one global batch "
                       f"({config.batch_size} x {d.world_size} processes x {config.gradient_accumulation_steps} accumulation)")
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    epochs_planned = math.ceil(total_steps / steps_per_epoch)

    # 2. Model, optimizer, schedule, precision, DDP.
    precision = choose_precision(config.precision, d.device)
    if d.device.type == "cuda" and torch.cuda.get_device_capability(d.device)[0] >= 8:
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = lambda: torch.autocast(d.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)  # noqa: E731
    scaler = torch.amp.GradScaler(d.device.type, enabled=precision == "fp16")
    pad_multiple = 8 if d.device.type == "cuda" else 1  # tensor cores like multiples of 8

    model.to(d.device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases and LayerNorm
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        fused=True,  # one kernel for the whole update (CUDA and CPU)
    )
    from transformers import get_linear_schedule_with_warmup

    warmup_steps = math.ceil(config.warmup_ratio * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    raw_model = model
    if d.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.local_rank] if d.device.type == "cuda" else None
        )
    # Dropout streams differ per rank but are fixed by the seed.
    torch.manual_seed(config.seed + d.rank)

    telemetry = Telemetry(enabled=d.is_main, namespace=loc.namespace, profile=loc.profile, run_id=loc.run_id)

    # 3. Checkpoints: where they go, and resuming from the newest complete one.
    work_dir = Path(loc.work_dir)
    checkpoint_uri = loc.checkpoint_uri or str(work_dir / "checkpoints" / loc.run_id)
    if loc.checkpoints_are_local_only and d.is_main:
        log.warning("no --checkpoint-uri or $%s: checkpoints stay in %s; a new container cannot resume",
                    contract.ENV_CHECKPOINT_URI, checkpoint_uri)
    ckpt_times: list[float] = []

    def checkpoint_done(step: int, seconds: float) -> None:
        ckpt_times.append(seconds)
        log.info("checkpoint %s complete in %.2f s", ckpt.step_dir(step), seconds)
        telemetry.metrics({metrics.CHECKPOINT_SECONDS.name: seconds})

    store = ckpt.CheckpointStore(checkpoint_uri, work_dir / "staging" / f"rank{d.rank}", config.keep_checkpoints,
                                 loc.run_id, on_complete=checkpoint_done)
    state = TrainState()

    def save_checkpoint(*, wait: bool) -> float:
        """Snapshot everything to CPU memory (training waits only for this), then write and
        upload it on the store's background thread. Returns the seconds training was blocked."""
        t0 = time.monotonic()
        rng_all = [None] * d.world_size
        if d.enabled:
            dist.all_gather_object(rng_all, rng_state())
        else:
            rng_all = [rng_state()]
        if d.is_main:
            model_state = _cpu_copy(raw_model.state_dict())
            optimizer_state = _cpu_copy(optimizer.state_dict())
            trainer_state = _cpu_copy({
                "state": asdict(state), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": rng_all, "global_batch": global_batch, "world_size": d.world_size,
                "steps_per_epoch": steps_per_epoch, "labels": labels,
            })

            def write_files(directory: Path) -> dict:
                """The three files, serialised in memory and written with their sha256 computed
                from those bytes (the manifest's), beside the write instead of reading back."""
                from safetensors.torch import save as safetensors_bytes

                return {
                    ckpt.MODEL_FILE: ckpt.write_hashed(directory / ckpt.MODEL_FILE, safetensors_bytes(model_state)),
                    ckpt.OPTIMIZER_FILE: ckpt.write_hashed(directory / ckpt.OPTIMIZER_FILE, _torch_bytes(optimizer_state)),
                    ckpt.STATE_FILE: ckpt.write_hashed(directory / ckpt.STATE_FILE, _torch_bytes(trainer_state)),
                }

            store.save(state.step, write_files, wait=wait)
        if d.enabled:
            dist.barrier()
        return time.monotonic() - t0

    def load_checkpoint(path: Path) -> None:
        from safetensors.torch import load_file

        # Read and check everything before changing anything.
        saved = torch.load(path / ckpt.STATE_FILE, map_location="cpu", weights_only=True)
        if saved["global_batch"] != global_batch or saved["labels"] != labels:
            raise ValueError(f"written with global batch {saved['global_batch']} and labels {saved['labels']}; "
                             f"this run has {global_batch} and {labels}")
        opt_state = torch.load(path / ckpt.OPTIMIZER_FILE, map_location=d.device, weights_only=True)
        weights = load_file(str(path / ckpt.MODEL_FILE), device=str(d.device))
        if set(weights) != set(raw_model.state_dict()):
            raise ValueError("its weights do not fit this model")
        raw_model.load_state_dict(weights)
        optimizer.load_state_dict(opt_state)
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        if len(saved["rng"]) == d.world_size:
            set_rng_state(saved["rng"][d.rank])
        else:  # a different number of processes: dropout streams cannot match; stay deterministic
            torch.manual_seed(config.seed + d.rank + saved["state"]["step"])
        for k, v in saved["state"].items():
            setattr(state, k, v)

    resumed_from = None
    scratch = work_dir / "restore" / f"rank{d.rank}"
    if d.is_main:
        for step, path in store.candidates(scratch):
            try:
                load_checkpoint(path)
            except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is skipped
                log.warning("skipping checkpoint %s: cannot load (%s)", ckpt.step_dir(step), str(exc).splitlines()[0])
                continue
            resumed_from = step
            break
    if d.enabled:
        box = [resumed_from]
        dist.broadcast_object_list(box, src=0)
        resumed_from = box[0]
        if not d.is_main and resumed_from is not None:
            load_checkpoint(store.fetch(resumed_from, scratch))
    shutil.rmtree(scratch, ignore_errors=True)
    if resumed_from is not None:
        log.info("resumed from %s: epoch %d, batch %d of %d", ckpt.step_dir(resumed_from),
                 resumed_from // steps_per_epoch + 1, resumed_from % steps_per_epoch, steps_per_epoch)
    telemetry.metrics({metrics.RESUMED.name: 1.0 if resumed_from is not None else 0.0})
    if d.is_main:
        log.info("run %s: %d train / %d eval examples, %d labels, %d steps (%d per epoch, global batch %d), "
                 "precision %s, %d process(es) on %s", loc.run_id, len(train_enc), len(eval_enc or ()), len(labels),
                 total_steps, steps_per_epoch, global_batch, precision, d.world_size, d.device.type)

    def run_eval() -> bool:
        """Evaluate at the current step and update early stopping; False if stopped by a signal."""
        result = evaluate(model, eval_enc, d, batch_size=config.eval_batch_size or 2 * config.batch_size,
                          autocast=autocast, pad_id=tokenizer.pad_token_id, multiple_of=pad_multiple,
                          num_labels=len(labels), stop=stop)
        if result is None:
            return False
        record = {"step": state.step, "epoch": round(state.step / steps_per_epoch, 4), **result}
        state.history.append(record)
        state.last_eval_step = state.step
        value = result[config.early_stopping_metric]
        better = state.best_metric is None or (
            value > state.best_metric if HIGHER_IS_BETTER[config.early_stopping_metric] else value < state.best_metric
        )
        if better:
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
        else:
            state.evals_without_improvement += 1
            if config.early_stopping_patience and state.evals_without_improvement >= config.early_stopping_patience:
                state.early_stopped = True
                log.info("early stopping: %s has not improved for %d evaluations (best %.4f at step %d)",
                         config.early_stopping_metric, state.evals_without_improvement, state.best_metric,
                         state.best_step)
        telemetry.line(f"[eval] step {state.step} epoch {record['epoch']:.2f} "
                       + " ".join(f"{k} {v:.4f}" for k, v in result.items()))
        telemetry.metrics({metrics.EVAL_ACCURACY.name: result["eval_accuracy"], metrics.EVAL_F1.name: result["eval_f1"]})
        return True

    def is_eval_step(step: int) -> bool:
        return eval_enc is not None and (step % steps_per_epoch == 0 or step == total_steps)

    def interrupted() -> TrainResult:
        blocked = save_checkpoint(wait=True) if state.step > last_checkpoint_step else 0.0
        store.close()
        if d.is_main and state.step == 0:
            log.warning("stopped before the first step: nothing to checkpoint; exit code %d", contract.EXIT_INTERRUPTED)
        elif d.is_main:
            log.warning("stopped at step %d/%d; checkpoint %s is complete at %s; exit code %d",
                        state.step, total_steps, ckpt.step_dir(state.step), checkpoint_uri, contract.EXIT_INTERRUPTED)
        return _result(contract.EXIT_INTERRUPTED, {}, blocked_total + blocked, interrupted=True)

    def _result(code: int, final_metrics: dict, blocked: float, interrupted: bool = False) -> TrainResult:
        return TrainResult(
            run_id=loc.run_id, exit_code=code, global_step=state.step, total_steps=total_steps,
            metrics=final_metrics, output_uri=loc.output_uri, checkpoint_uri=checkpoint_uri,
            interrupted=interrupted, resumed_from_step=resumed_from,
            samples_per_second=state.samples / state.train_seconds if state.train_seconds else 0.0,
            tokens_per_second=state.tokens / state.train_seconds if state.train_seconds else 0.0,
            padding_fraction=1 - state.tokens / state.computed_tokens if state.computed_tokens else 0.0,
            checkpoint_seconds=list(ckpt_times), checkpoint_blocking_seconds=blocked,
        )

    # 4. Train.
    lengths = train_enc.lengths
    last_checkpoint_step = state.step
    last_checkpoint_time = time.monotonic()
    blocked_total = 0.0
    window = {"loss": 0.0, "steps": 0, "samples": 0, "tokens": 0, "seconds": 0.0}
    attempt_steps, attempt_seconds = 0, 0.0
    model.train()

    if state.step > state.last_eval_step and is_eval_step(state.step):
        run_eval()  # the checkpoint was written by a SIGTERM that cut this evaluation short
    if _any_rank(stop.requested, d):
        return interrupted()

    while state.step < total_steps and not state.early_stopped:
        epoch = state.step // steps_per_epoch
        batches = data.epoch_batches(lengths, global_batch, config.seed, epoch, config.megabatch_factor)
        for batch in batches[state.step % steps_per_epoch :]:
            t0 = time.perf_counter()
            micro_batches = data.split_step_batch(batch, config.gradient_accumulation_steps, d.world_size, d.rank)
            step_loss = torch.zeros((), device=d.device)
            for m, idx in enumerate(micro_batches):
                inputs = {k: v.to(d.device, non_blocking=True)
                          for k, v in data.collate(train_enc, idx, tokenizer.pad_token_id, pad_multiple).items()}
                last_micro = m == len(micro_batches) - 1
                # Only the last micro-batch all-reduces gradients.
                sync = contextlib.nullcontext() if (last_micro or not d.enabled) else model.no_sync()
                with sync:
                    with autocast():
                        loss = model(**inputs).loss / config.gradient_accumulation_steps
                    scaler.scale(loss).backward()
                step_loss += loss.detach().float()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if on_step is not None:
                on_step(state.step)

            # One small all-reduce per step: mean loss, "someone got SIGTERM", "checkpoint is due".
            time_due = d.is_main and time.monotonic() - last_checkpoint_time >= loc.checkpoint_every_minutes * 60
            flags = torch.stack([step_loss, torch.tensor(float(stop.requested), device=d.device),
                                 torch.tensor(float(time_due), device=d.device)])
            if d.enabled:
                dist.all_reduce(flags)
            loss_value, stop_now, time_due = flags[0].item() / d.world_size, flags[1].item() > 0, flags[2].item() > 0
            seconds = time.perf_counter() - t0

            real_tokens = sum(lengths[i] for i in batch)
            state.loss_sum += loss_value
            state.samples += len(batch)
            state.tokens += real_tokens
            state.computed_tokens += data.padded_tokens(batch, lengths, config.gradient_accumulation_steps,
                                                        d.world_size, pad_multiple)
            state.train_seconds += seconds
            attempt_steps += 1
            attempt_seconds += seconds
            for k, v in (("loss", loss_value), ("steps", 1), ("samples", len(batch)), ("tokens", real_tokens),
                         ("seconds", seconds)):
                window[k] += v

            if state.step % config.logging_steps == 0 or state.step == total_steps:
                eta = (total_steps - state.step) * attempt_seconds / attempt_steps
                samples_per_s = window["samples"] / window["seconds"]
                telemetry.progress(Progress(epoch=epoch + 1, epochs=epochs_planned, step=state.step,
                                            total_steps=total_steps, loss=window["loss"] / window["steps"],
                                            samples_per_second=samples_per_s, eta_seconds=int(eta)))
                telemetry.metrics({
                    metrics.TRAIN_LOSS.name: window["loss"] / window["steps"],
                    metrics.SAMPLES_PER_SECOND.name: samples_per_s,
                    metrics.TOKENS_PER_SECOND.name: window["tokens"] / window["seconds"],
                    **gpu_metrics(d.device),
                })
                window = dict.fromkeys(window, 0)

            if is_eval_step(state.step) and not stop_now:
                run_eval()
            # Ranks must agree: under DDP only the all-reduced flag counts (a signal that lands
            # after it is seen at the next step); one process may stop at once.
            if stop_now or (not d.enabled and stop.requested):
                return interrupted()
            if state.step < total_steps and not state.early_stopped and (
                state.step % loc.checkpoint_every_steps == 0 or time_due
            ):
                blocked_total += save_checkpoint(wait=False)
                last_checkpoint_step, last_checkpoint_time = state.step, time.monotonic()
            if state.step >= total_steps or state.early_stopped:
                break

    store.close()  # let the last upload finish: a retry of this job resumes instead of restarting

    # 5. Outputs, written once at the end, metrics.json last.
    final = dict(state.history[-1]) if state.history else {}
    result = _result(contract.EXIT_OK, {}, blocked_total)
    final_metrics = {
        "run_id": loc.run_id,
        "global_step": state.step,
        "total_steps": total_steps,
        "epochs_completed": state.step / steps_per_epoch,
        "early_stopped": state.early_stopped,
        "eval_accuracy": final.get("eval_accuracy"),
        "eval_f1": final.get("eval_f1"),
        "eval_loss": final.get("eval_loss"),
        "best": {"metric": config.early_stopping_metric, "value": state.best_metric, "step": state.best_step},
        "train_loss": state.loss_sum / state.step if state.step else None,
        "samples_per_second": result.samples_per_second,
        "tokens_per_second": result.tokens_per_second,
        "padding_fraction": result.padding_fraction,
        "train_seconds": state.train_seconds,
        "checkpoint_seconds": ckpt_times,
        "checkpoint_blocking_seconds": blocked_total,
        "resumed_from_step": resumed_from,
        "global_batch_size": global_batch,
        "world_size": d.world_size,
        "precision": precision,
        "history": state.history,
    }
    result.metrics = final_metrics
    if d.is_main:
        local_out = work_dir / "output"
        shutil.rmtree(local_out, ignore_errors=True)
        args_record = {**config.to_dict(), "run_id": loc.run_id, "output_uri": loc.output_uri,
                       "checkpoint_uri": checkpoint_uri, "precision": precision, "world_size": d.world_size,
                       "global_batch_size": global_batch, "total_steps": total_steps, "warmup_steps": warmup_steps,
                       "checkpoint_every_steps": loc.checkpoint_every_steps,
                       "checkpoint_every_minutes": loc.checkpoint_every_minutes}
        outputs.write_local(local_out, model=raw_model, tokenizer=tokenizer, labels=labels, run_id=loc.run_id,
                            config=args_record, metrics=final_metrics)
        outputs.publish(local_out, loc.output_uri)
        log.info("done: step %d, eval_accuracy %s, eval_f1 %s; model in %s", state.step,
                 _fmt(final.get("eval_accuracy")), _fmt(final.get("eval_f1")), loc.output_uri)
    if d.enabled:
        dist.barrier()
    return result


def _cpu_copy(obj):
    """A deep copy with every tensor copied to CPU memory: a snapshot the optimizer cannot change
    while a background thread writes it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def _torch_bytes(obj) -> memoryview:
    """`torch.save(obj)` into memory (one more copy of the state while its file is written)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer()


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"
