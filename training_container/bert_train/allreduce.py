"""`python -m bert_train allreduce-bench`: all-reduce bus bandwidth between the processes of a
torchrun launch, the figure nccl-tests' all_reduce_perf prints, for bench/nccl.sh.

Run in the training image as the command of a multi-node job, each node's GPUs all-reduce over
NCCL (over EFA when the job definition sets it up); `--backend gloo` runs the same sweep on CPU
processes. Rank 0 prints one JSON line per message size:
{"bytes", "seconds" (one all-reduce), "algbw_gbps" (bytes / seconds), "busbw_gbps"}. Bus
bandwidth is the algorithm bandwidth x 2(n-1)/n: what each link of a ring carries, comparable
across process counts and with the network's own figure.

Exit codes: 0 done; 2 bad arguments or fewer than 2 processes (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

from bertbatch_contract import job

PROG = "allreduce-bench"
GB = 1e9


def bus_bandwidth(size: int, seconds: float, world_size: int) -> float:
    """GB/s each link carries while `size` bytes are all-reduced in `seconds` over `world_size` ranks."""
    return size / seconds / GB * 2 * (world_size - 1) / world_size


def message_sizes(min_bytes: int, max_bytes: int) -> list[int]:
    """min_bytes, doubling, up to max_bytes."""
    sizes = [min_bytes]
    while sizes[-1] * 2 <= max_bytes:
        sizes.append(sizes[-1] * 2)
    return sizes


def sweep(sizes: list[int], *, world_size: int, iterations: int, warmup: int, all_reduce: Callable[[int], None],
          synchronize: Callable[[], None], clock: Callable[[], float]) -> list[dict[str, float]]:
    """Time `iterations` all-reduces of each size after `warmup` untimed ones; one row a size."""
    rows = []
    for size in sizes:
        for _ in range(warmup):
            all_reduce(size)
        synchronize()
        start = clock()
        for _ in range(iterations):
            all_reduce(size)
        synchronize()  # the GPU's queued collectives are done before the clock is read
        seconds = (clock() - start) / iterations
        rows.append({"bytes": size, "seconds": seconds, "algbw_gbps": size / seconds / GB,
                     "busbw_gbps": bus_bandwidth(size, seconds, world_size)})
    return rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--backend", choices=("auto", "nccl", "gloo"), default="auto",
                        help="auto: NCCL on GPUs, gloo without")
    parser.add_argument("--min-bytes", type=int, default=1 << 20)
    parser.add_argument("--max-bytes", type=int, default=1 << 30)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    return parser.parse_args(argv)


def argument_problem(args: argparse.Namespace) -> str | None:
    if args.min_bytes > args.max_bytes:
        return f"--min-bytes {args.min_bytes} is larger than --max-bytes {args.max_bytes}"
    if args.min_bytes < 4:
        return f"--min-bytes {args.min_bytes} must be at least 4 (one float32)"
    if args.iterations < 1:
        return f"--iterations {args.iterations} must be at least 1"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 2:
        return f"WORLD_SIZE is {world_size}: run it under torchrun with 2 or more processes"
    return None


def run(args: argparse.Namespace) -> list[dict[str, float]]:
    """Join the torchrun process group and sweep; every rank takes part, rank 0 prints."""
    import torch
    import torch.distributed as dist

    cuda = args.backend == "nccl" or (args.backend == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        buffer = torch.ones(args.max_bytes // 4, dtype=torch.float32, device=device)
        rows = sweep(message_sizes(args.min_bytes, args.max_bytes), world_size=dist.get_world_size(),
                     iterations=args.iterations, warmup=args.warmup,
                     all_reduce=lambda size: dist.all_reduce(buffer[: size // 4]),
                     synchronize=torch.cuda.synchronize if cuda else lambda: None, clock=time.perf_counter)
        if dist.get_rank() == 0:
            for row in rows:
                print(json.dumps({"backend": dist.get_backend(), "world_size": dist.get_world_size(), **row}),
                      flush=True)
        return rows
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    problem = argument_problem(args)
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return job.EXIT_BAD_INPUT
    run(args)
    return 0
