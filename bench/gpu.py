"""GPU throughput: the container against the tuned transformers Trainer on one NVIDIA GPU.

    python -m bench.gpu                  # BERT-base, seq len 128, SST-2, bf16 on both sides (~4-6 min)
    python -m bench.gpu --smoke          # a few steps of the tiny model, CPU allowed (tests the script)
    bench/gpu.sh                         # the same, from a shell, with the repo's venv when it has one

Both sides run `bench.throughput.compare` (fresh process per run, same random-init weights, same
data, batch size, steps and learning rate; order alternated): the tuned Trainer (dynamic padding,
length-grouped sampling, fused AdamW, bf16 where the GPU has it) and `bert_train` (its defaults:
unpadded execution, precision auto). On top of the CPU benchmark's figures it reports peak GPU
memory and model FLOPs utilisation (MFU) against the GPU's dense bf16 tensor peak.

MFU counts the model's useful FLOPs only (non-padding tokens): per trained sample,
6 x non-embedding parameters x tokens for the dense layers and 12 x layers x hidden x length^2
for attention (forward + backward), with length = the run's mean real tokens per sample. The
peak comes from `DENSE_BF16_TFLOPS` (NVIDIA datasheets, without sparsity), or `--peak-tflops`.
Nothing is downloaded: random-init BERT-base from its config, SST-2 and the vocab from
../shared/data when present, else the repo sample. The JSON goes to bench/results/gpu-<gpu>.json.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from . import common, throughput

# Dense (no sparsity) bf16 tensor-core peak, TFLOPS, by a substring of torch.cuda.get_device_name().
# More specific names first.
DENSE_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.4),
    ("H100", 989.4),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 125.0),  # AWS publishes no figure for its A10 variant; the A10 datasheet's
    ("A10", 125.0),
)
BERT_BASE = {"layers": 12, "hidden": 768, "intermediate": 3072}
TIME_BUDGET_SECONDS = 8 * 60  # the whole script, start-up included


def peak_tflops(device_name: str) -> float | None:
    for key, value in DENSE_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def non_embedding_parameters(layers: int, hidden: int, intermediate: int) -> int:
    """Encoder layers (attention 4 x H^2, feed-forward 2 x H x I, biases, LayerNorms) + pooler."""
    per_layer = 4 * hidden * hidden + 4 * hidden + 2 * hidden * intermediate + intermediate + hidden + 4 * hidden
    return layers * per_layer + hidden * hidden + hidden


def training_flops_per_sample(mean_tokens: float, layers: int, hidden: int, intermediate: int) -> float:
    dense = 6 * non_embedding_parameters(layers, hidden, intermediate) * mean_tokens
    attention = 12 * layers * hidden * mean_tokens**2  # QK^T and AV, forward (4) + backward (8)
    return dense + attention


def add_utilisation(side: dict, shape: dict, peak: float | None) -> None:
    if not side.get("samples") or not side.get("train_seconds"):
        return
    mean_tokens = side["real_tokens"] / side["samples"]
    flops = training_flops_per_sample(mean_tokens, shape["layers"], shape["hidden"], shape["intermediate"])
    side["model_tflops_per_second"] = flops * side["samples_per_second"] / 1e12
    side["mfu"] = side["model_tflops_per_second"] / peak if peak else None


def run(*, smoke: bool, steps: int, repeats: int, peak: float | None) -> dict:
    import torch

    if not smoke and not torch.cuda.is_available():
        sys.exit("bench.gpu: no CUDA GPU visible (torch.cuda.is_available() is False); "
                 "use --smoke to test the script on a CPU")
    t0 = time.monotonic()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    peak = peak or peak_tflops(device)
    shape = "tiny" if smoke else "base"
    data = common.find_data(prefer_shared=not smoke)
    r = throughput.compare(shape=shape, steps=steps, batch_size=32 if not smoke else 8,
                           eval_rows=872 if not smoke else 32, train_rows=None if not smoke else 400,
                           data=data, sides=("tuned", "contender"), repeats=repeats,
                           timeout=TIME_BUDGET_SECONDS)
    dims = BERT_BASE if not smoke else {k: throughput.SHAPES["tiny"][k] for k in ("layers", "hidden", "intermediate")}
    for side in ("tuned", "contender"):
        add_utilisation(r[side], dims, peak)
    r["benchmark"] = "gpu-throughput"
    r["settings"].update({
        "device": device, "smoke": smoke, "dense_bf16_peak_tflops": peak,
        "mfu": "model FLOPs (non-padding tokens; 6 x non-embedding params x tokens + 12 x layers x hidden x "
               "mean length^2 per sample) per second / dense bf16 peak",
    })
    r["script_seconds"] = time.monotonic() - t0
    return r


def report(r: dict) -> str:
    out = throughput.report(r)
    rows = []
    for key, label, digits, scale in (("model_tflops_per_second", "model TFLOPS (useful)", 3, 1.0),
                                      ("mfu", "MFU, % of dense bf16 peak", 1, 100.0),
                                      ("peak_gpu_memory_mb", "peak GPU memory, MB", 0, 1.0)):
        t, c = r["tuned"].get(key), r["contender"].get(key)
        t = None if t is None else t * scale
        c = None if c is None else c * scale
        rows.append([label, common.fmt_num(t, digits), common.fmt_num(c, digits),
                     f"{c / t:.2f}x" if t and c is not None else ""])
    s = r["settings"]
    out += "\n\n" + common.table(["", "tuned Trainer", "bert_train", "ratio"], rows,
                                 f"device {s['device']}, dense bf16 peak {s['dense_bf16_peak_tflops']} TFLOPS")
    out += f"\nscript wall time {r['script_seconds']:.0f} s (budget {TIME_BUDGET_SECONDS} s)"
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model, a few steps, CPU allowed; writes to quick/")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 400; smoke 4)")
    p.add_argument("--repeats", type=int, default=None, help="runs per side, order alternated (default 2; smoke 1)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this GPU (default: table)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    steps = args.steps or (4 if args.smoke else 400)
    repeats = args.repeats or (1 if args.smoke else 2)
    print(f"[gpu] {'smoke: tiny model on the repo sample' if args.smoke else 'BERT-base, seq len 128, SST-2'}: "
          f"{steps} steps x {repeats} repeat(s) per side ...", flush=True)
    r = run(smoke=args.smoke, steps=steps, repeats=repeats, peak=args.peak_tflops)
    print(report(r), flush=True)
    name = "gpu-" + re.sub(r"[^A-Za-z0-9]+", "-", r["settings"]["device"]).strip("-").lower()
    path = common.write_result(name, r, common.RESULTS / "quick" if args.smoke else None)
    shown = path.relative_to(common.REPO) if path.is_relative_to(common.REPO) else path
    print(f"[gpu] wrote {shown}", flush=True)
    return r


if __name__ == "__main__":
    main()
