"""Process setup: torchrun's process group, the stop request from SIGTERM, precision, and the
RNG states a checkpoint carries so a resumed run draws the same numbers."""

from __future__ import annotations

import functools
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from . import dropout
from .config import BadInput

Autocast = Callable[[], torch.autocast]


@dataclass(frozen=True)
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


def teardown_distributed(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank if `flag` is true on any (a collective: every rank must call it)."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


class StopRequest:
    """SIGTERM (Batch stopping the job, or a Spot reclaim notice) asks for a stop at the next
    step boundary. SIGINT does the same once (Ctrl-C on a laptop); a second SIGINT aborts."""

    def __init__(self, then: str = "checkpointing at the next step boundary") -> None:
        self.at: float | None = None
        self.signame = ""
        self.then = then  # what the process does next, for the line it writes on the signal
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled on the main thread (e.g. run() in a worker)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.at is None:
            self.at = time.monotonic()
            self.signame = signal.Signals(signum).name
            os.write(2, f"bert_train: {self.signame} received: {self.then}\n".encode())
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
    return "bf16" if cpu_has_native_bf16() else "fp32"


def compile_enabled(mode: str, device: torch.device) -> bool:
    """--compile: `auto` compiles on CUDA (not yet measured on a GPU: bench/gpu.sh decides whether
    it stays on) and not on CPU (bench.compile: the compile time is not earned back there)."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in /proc/cpuinfo: bf16 matmuls run natively on this CPU (elsewhere
    bf16 is emulated and slower than fp32)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def autocast_for(precision: str, device: torch.device) -> Autocast:
    """A factory of autocast contexts for `precision` (fp32: a disabled one)."""
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return functools.partial(torch.autocast, device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
        "torch": torch.get_rng_state(),
        "dropout": dropout.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "dropout" in state:
        dropout.set_state(state["dropout"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
