"""Does `torch.compile` pay off for the training step here? (A candidate the container does not use.)

    python -m bench.compile [--steps 40] [--shape small]

One process, BERT (random init from the shape's config), batch 32, bf16 autocast where the CPU
has it natively, fused AdamW with gradient clipping: the step in eager mode, then the same step
with the model under `torch.compile(dynamic=True)` (inductor, C++ kernels on CPU), on the same
sequence lengths (SST-2's range, cycled so that dynamic shapes are exercised). Reports the
compile time (the first three steps minus three steady steps), the steady ms/step of each and
the steps it would take to earn the compile time back, with inductor's on-disk cache cold.
Writes bench/results/compile.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from . import common
from .throughput import SHAPES

LENGTHS = (12, 16, 20, 24, 14, 18, 30, 10)  # SST-2 batches: 3-66 tokens, mean 13


def _step_fn(model, forward, optimizer, precision: str):
    import torch

    def step(length: int) -> None:
        ids = torch.randint(1000, 2000, (32, length))
        mask = torch.ones(32, length, dtype=torch.long)
        mask[:4, length - 3:] = 0
        labels = torch.randint(0, 2, (32,))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _measure(compiled: bool, shape: str, steps: int, precision: str) -> dict:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    s = SHAPES[shape]
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=30522, hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
        intermediate_size=s["intermediate"], num_labels=2))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step = _step_fn(model, torch.compile(model, dynamic=True) if compiled else model, optimizer, precision)
    t0 = time.perf_counter()
    for length in LENGTHS[:3]:
        step(length)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for n in range(steps):
        step(LENGTHS[n % len(LENGTHS)])
    per_step = (time.perf_counter() - t0) / steps
    return {"first_three_steps_seconds": first, "steady_seconds_per_step": per_step,
            "compile_seconds": max(0.0, first - 3 * per_step)}


def run(*, shape: str = "small", steps: int = 40) -> dict:
    # A cold compile, as a job's first attempt on a fresh host sees it: inductor's on-disk cache
    # would otherwise serve the kernels of an earlier run of this benchmark.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-inductor-")
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    precision = common.best_precision()
    machine = common.machine_info()
    eager = _measure(False, shape, steps, precision)
    compiled = _measure(True, shape, steps, precision)
    saved = eager["steady_seconds_per_step"] - compiled["steady_seconds_per_step"]
    machine["loadavg_end"] = common.loadavg()
    return {
        "benchmark": "compile",
        "machine": machine,
        "note": common.shared_machine_note(machine["loadavg_start"], machine["loadavg_end"], machine["cores"]),
        "settings": {"shape": shape, "batch_size": 32, "steps": steps, "lengths": list(LENGTHS),
                     "precision": precision, "compile": "torch.compile(model, dynamic=True), default inductor",
                     "inductor_cache": "cold (a fresh TORCHINDUCTOR_CACHE_DIR)"},
        "eager": eager,
        "compiled": compiled,
        "speedup_steady": eager["steady_seconds_per_step"] / compiled["steady_seconds_per_step"],
        "break_even_steps": compiled["compile_seconds"] / saved if saved > 0 else None,
    }


def report(r: dict) -> str:
    e, c = r["eager"], r["compiled"]
    rows = [
        ["first three steps, s", common.fmt_num(e["first_three_steps_seconds"], 2),
         common.fmt_num(c["first_three_steps_seconds"], 2)],
        ["compile time, s", "", common.fmt_num(c["compile_seconds"], 1)],
        ["steady ms/step", common.fmt_num(e["steady_seconds_per_step"] * 1e3, 1),
         common.fmt_num(c["steady_seconds_per_step"] * 1e3, 1)],
    ]
    s = r["settings"]
    out = common.table(["", "eager", "torch.compile"], rows,
                       f"torch.compile: {s['shape']} shape, batch 32, {s['steps']} steps, {s['precision']}")
    be = r["break_even_steps"]
    out += (f"\nsteady speedup {r['speedup_steady']:.2f}x; compile time earned back after "
            + (f"{be:,.0f} steps" if be is not None else "never (not faster)"))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.compile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("tiny", "small"), default="small")
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args(argv)
    r = run(shape=args.shape, steps=args.steps)
    print(report(r), flush=True)
    path = common.write_result("compile", r)
    print(f"[compile] wrote {path.relative_to(common.REPO)}", flush=True)
    return r


if __name__ == "__main__":
    main()
