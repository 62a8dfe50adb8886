"""GPU throughput: the container against the tuned transformers Trainer on one NVIDIA GPU.

    python -m bench.gpu                  # BERT-base, bf16 on both sides, seq len 128 and 512 (< 9 min)
    python -m bench.gpu --smoke          # a few steps of the tiny model, CPU allowed (tests the script)
    bench/gpu.sh                         # the same, from a shell, with the repo's venv when it has one
    python -m bench.gpu --record bench/results/gpu-nvidia-l4.json   # its tokens/s into the cost table

At max_seq_length 128 the data is SST-2; at 512 it is documents of consecutive same-label SST-2
rows joined to about 420 words (`join_rows`: SST-2's own rows never pass 66 tokens), with a
quarter of the steps. The first length is the result's top level (what --record reads); each
length's comparison is under `by_max_seq_length`.

Both sides run `bench.throughput.compare` (fresh process per run, same random-init weights, same
data, batch size, steps and learning rate; order alternated): the tuned Trainer (dynamic padding,
length-grouped sampling, fused AdamW, bf16 where the GPU has it) and `bert_train` (its defaults:
length-grouped batches padded to their longest row, precision auto). On top of the CPU
benchmark's figures it reports peak GPU memory and model FLOPs utilisation (MFU) against the
GPU's dense bf16 tensor peak, and `per_gpu`: the GPU's name and the container's tokens/s on it.

`--record RESULT.json` writes that measurement into bertbatch/data/gpu_throughput.json (or
`--table FILE`): the device name is mapped to the table's GPU class
(`bertbatch_contract.efficiency.GPU_CLASSES`, or
`--gpu-class`), and that entry gets the container's computed tokens/s (padding included: what
`bertbatch estimate` divides computed tokens by), "derived_estimate": false and "source" (the
result file and its date). The other entries stay estimates.

MFU counts the model's useful FLOPs only (non-padding tokens): per trained sample,
6 x non-embedding parameters x tokens for the dense layers and 12 x layers x hidden x length^2
for attention (forward + backward), with length = the run's mean real tokens per sample. The
peak comes from `bertbatch_contract.efficiency.PEAK_TFLOPS` (NVIDIA datasheets, without sparsity;
the table the trainer's own MFU uses), or `--peak-tflops`.
Nothing is downloaded: random-init BERT-base from its config, SST-2 and the vocab from
../shared/data when present, else the repo sample. The JSON goes to bench/results/gpu-<gpu>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from bertbatch_contract import efficiency

from . import common, throughput

TABLE = common.REPO / "bertbatch" / "data" / "gpu_throughput.json"
BERT_BASE = {"layers": 12, "hidden": 768, "intermediate": 3072}
TIME_BUDGET_SECONDS = 9 * 60  # the whole script, start-up included: one 10-minute device call


def peak_tflops(device_name: str) -> float | None:
    """The GPU's dense bf16 peak: the contract's table, the one the trainer's MFU uses."""
    return efficiency.peak_tflops(device_name, efficiency.BF16)


def gpu_class(device_name: str) -> str | None:
    return efficiency.GPU_CLASSES.get(device_name)


def per_gpu(r: dict) -> dict:
    """The container's throughput on the one GPU the run used (device 0)."""
    c = r["contender"]
    return {
        "gpu_name": r["settings"]["device"],
        "gpus": 1,
        "side": "contender (bert_train)",
        "computed_tokens_per_second": c.get("computed_tokens_per_second"),
        "real_tokens_per_second": c.get("tokens_per_second"),
        "samples_per_second": c.get("samples_per_second"),
        "padding_fraction": c.get("padding_fraction"),
        "computed_tokens_per_sample": c["computed_tokens"] / c["samples"] if c.get("samples") else None,
        "precision": c.get("precision"),
        "batch_size": r["settings"].get("batch_size"),
        "max_seq_length": r["settings"].get("max_seq_length"),
    }


def non_embedding_parameters(layers: int, hidden: int, intermediate: int) -> int:
    """Encoder layers (attention 4 x H^2, feed-forward 2 x H x I, biases, LayerNorms) + pooler."""
    per_layer = 4 * hidden * hidden + 4 * hidden + 2 * hidden * intermediate + intermediate + hidden + 4 * hidden
    return layers * per_layer + hidden * hidden + hidden


def training_flops_per_sample(mean_tokens: float, layers: int, hidden: int, intermediate: int) -> float:
    """The contract's FLOPs per token (`efficiency.flops_per_token`) times the tokens of a sample."""
    shape = efficiency.ModelShape(non_embedding_parameters(layers, hidden, intermediate), layers, hidden)
    return efficiency.flops_per_token(shape, mean_tokens) * mean_tokens


def add_utilisation(side: dict, shape: dict, peak: float | None) -> None:
    if not side.get("samples") or not side.get("train_seconds"):
        return
    mean_tokens = side["real_tokens"] / side["samples"]
    flops = training_flops_per_sample(mean_tokens, shape["layers"], shape["hidden"], shape["intermediate"])
    side["model_tflops_per_second"] = flops * side["samples_per_second"] / 1e12
    side["mfu"] = side["model_tflops_per_second"] / peak if peak else None


# Sequence lengths measured: SST-2 as it is at 128, and documents of joined SST-2 rows at 512
# (SST-2's sentences are at most 66 tokens: at 512 they would measure nothing new). The smoke
# run takes the tiny model's lengths (its position table holds 128).
SEQ_LENGTHS = (128, 512)
SMOKE_SEQ_LENGTHS = (64, 128)
DOCUMENT_WORDS = {128: 0, 512: 420, 64: 0}  # words per joined document (0: rows as they are); ~1.2 tokens a word


def join_rows(source: str, target: Path, words: int) -> str:
    """`source` (a sentence/label TSV) with consecutive rows of one label joined into documents
    of at least `words` words: the same data for both sides, long enough to fill the length."""
    with open(source, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    documents: list[dict[str, str]] = []
    for row in rows:
        last = documents[-1] if documents else None
        if last is None or last["label"] != row["label"] or len(last["sentence"].split()) >= words:
            documents.append({"sentence": row["sentence"], "label": row["label"]})
        else:
            last["sentence"] += " " + row["sentence"]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="") as f:
        out = csv.DictWriter(f, fieldnames=["sentence", "label"], delimiter="\t")
        out.writeheader()
        out.writerows(documents)
    return str(target)


def data_for(length: int, data: dict, work: Path) -> dict:
    words = DOCUMENT_WORDS.get(length, 0)
    if not words:
        return data
    return {**data, "train": join_rows(data["train"], work / f"len{length}" / "train.tsv", words),
            "eval": join_rows(data["eval"], work / f"len{length}" / "dev.tsv", words),
            "source": f"{data['source']}, consecutive rows of one label joined into ~{words}-word documents"}


def measure(length: int, *, smoke: bool, steps: int, repeats: int, peak: float | None, data: dict) -> dict:
    """Both sides at one sequence length; bf16 on the GPU (the script's claim), auto in --smoke."""
    r = throughput.compare(shape="tiny" if smoke else "base", steps=steps, batch_size=32 if not smoke else 8,
                           eval_rows=872 if not smoke else 32, train_rows=None if not smoke else 400,
                           max_seq_length=length, data=data, sides=("tuned", "contender"), repeats=repeats,
                           precision="auto" if smoke else "bf16", timeout=TIME_BUDGET_SECONDS)
    dims = BERT_BASE if not smoke else {k: throughput.SHAPES["tiny"][k] for k in ("layers", "hidden", "intermediate")}
    for side in ("tuned", "contender"):
        add_utilisation(r[side], dims, peak)
    return r


def run(*, smoke: bool, steps: int, repeats: int, peak: float | None) -> dict:
    """The comparison at each of SEQ_LENGTHS; the first is the result's top level (what --record
    reads), the others under `by_max_seq_length`."""
    import torch

    if not smoke and not torch.cuda.is_available():
        sys.exit("bench.gpu: no CUDA GPU visible (torch.cuda.is_available() is False); "
                 "use --smoke to test the script on a CPU")
    t0 = time.monotonic()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    peak = peak or peak_tflops(device)
    data = common.find_data(prefer_shared=not smoke)
    lengths = SMOKE_SEQ_LENGTHS if smoke else SEQ_LENGTHS
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        # Longer rows cost more per step: a quarter of the steps at 4x the length.
        results = [measure(n, smoke=smoke, steps=max(2, steps * lengths[0] // n), repeats=repeats, peak=peak,
                           data=data_for(n, data, Path(tmp))) for n in lengths]
    r = results[0]
    r["by_max_seq_length"] = {str(n): {k: v for k, v in one.items() if k != "machine"}
                              for n, one in zip(lengths, results, strict=True)}
    r["benchmark"] = "gpu-throughput"
    r["settings"].update({
        "device": device, "smoke": smoke, "dense_bf16_peak_tflops": peak, "max_seq_lengths": list(lengths),
        "mfu": "model FLOPs (non-padding tokens; 6 x non-embedding params x tokens + 12 x layers x hidden x "
               "mean length^2 per sample) per second / dense bf16 peak",
    })
    r["per_gpu"] = per_gpu(r)
    r["script_seconds"] = time.monotonic() - t0
    return r


# --- --record: the measurement into the cost estimate's throughput table ---------------------------
def _dump_table(table: dict) -> str:
    """JSON with one line per GPU entry and per source, as the shipped file is laid out."""
    lines = []
    for key, value in table.items():
        if isinstance(value, dict) and value:
            inner = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            lines.append(f"  {json.dumps(key)}: {{\n{inner}\n  }}")
        elif isinstance(value, list) and value:
            inner = ",\n".join(f"    {json.dumps(v)}" for v in value)
            lines.append(f"  {json.dumps(key)}: [\n{inner}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def record(result_path: Path, table_path: Path = TABLE, *, gpu: str | None = None) -> dict:
    """Write the measured tokens/s of a bench.gpu result into the throughput table; returns the entry.
    SystemExit with one line for a result that is no GPU measurement or a GPU the table lacks."""
    from bertbatch.core.errors import BertBatchError
    from bertbatch.cost.training_cost import throughput_table

    try:
        r = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.exit(f"bench.gpu --record: cannot read {result_path} ({exc})")
    settings = r.get("settings") if isinstance(r, dict) else None
    if not isinstance(settings, dict) or r.get("benchmark") != "gpu-throughput":
        sys.exit(f"bench.gpu --record: {result_path} is not a bench.gpu result")
    device = str(settings.get("device") or "")
    if settings.get("smoke") or device in ("", "cpu"):
        sys.exit(f"bench.gpu --record: {result_path} is a --smoke or CPU run, not a GPU measurement")
    measured = r.get("per_gpu") or per_gpu(r)
    tokens = measured.get("computed_tokens_per_second")
    if not isinstance(tokens, int | float) or tokens <= 0:
        sys.exit(f"bench.gpu --record: {result_path} has no computed tokens/s for the container")
    name = gpu or gpu_class(device)
    try:
        table = throughput_table(json.loads(table_path.read_text(encoding="utf-8")), str(table_path))
    except (OSError, ValueError, BertBatchError) as exc:
        sys.exit(f"bench.gpu --record: cannot use {table_path} ({exc})")
    known = ", ".join(table["gpus"])
    if name is None:
        sys.exit(f"bench.gpu --record: device {device!r} maps to no GPU class of {table_path} ({known}): "
                 "pass --gpu-class")
    if name not in table["gpus"]:
        sys.exit(f"bench.gpu --record: GPU class {name} is not in {table_path} ({known})")
    shown = result_path.resolve()
    source = shown.relative_to(common.REPO) if shown.is_relative_to(common.REPO) else Path(result_path.name)
    date = str((r.get("machine") or {}).get("date_utc") or common.now())[:10]
    previous = table["gpus"][name]
    entry = {
        "tokens_per_second": round(float(tokens)),
        "derived_estimate": False,
        "source": f"{source}, {date}",
        "basis": (f"measured: bert_train on one {device}, {measured.get('precision')}, batch "
                  f"{measured.get('batch_size')}, {float(measured.get('computed_tokens_per_sample') or 0):.1f} "
                  f"computed tokens a sample (SST-2, max_seq_length {measured.get('max_seq_length')}); "
                  f"replaces the derived estimate {float(previous['tokens_per_second']):,.0f}"
                  + (f" ({previous['basis']})" if previous.get("basis") and previous.get("derived_estimate", True)
                     else "")),
    }
    table["gpus"][name] = entry
    table_path.write_text(_dump_table(table), encoding="utf-8")
    return {"gpu": name, **entry}


def report(r: dict) -> str:
    s = r["settings"]
    title = f"device {s['device']}, dense bf16 peak {s['dense_bf16_peak_tflops']} TFLOPS"
    out = "\n\n".join(report_one(one, title) for one in r["by_max_seq_length"].values())
    return out + f"\nscript wall time {r['script_seconds']:.0f} s (budget {TIME_BUDGET_SECONDS} s)"


def report_one(r: dict, title: str) -> str:
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
    out += "\n\n" + common.table(["", "tuned Trainer", "bert_train", "ratio"], rows,
                                 f"max_seq_length {r['settings']['max_seq_length']}, {title}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model, a few steps, CPU allowed; writes to quick/")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 400; smoke 4)")
    p.add_argument("--repeats", type=int, default=None, help="runs per side, order alternated (default 2; smoke 1)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this GPU (default: table)")
    p.add_argument("--record", type=Path, metavar="RESULT.json",
                   help="run nothing: write this result's measured tokens/s into the throughput table")
    p.add_argument("--table", type=Path, default=TABLE, metavar="FILE",
                   help="the throughput table --record writes (default: bertbatch/data/gpu_throughput.json)")
    p.add_argument("--gpu-class", metavar="NAME", help="the table's GPU class for --record (default: from the device)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.record:
        entry = record(args.record, args.table, gpu=args.gpu_class)
        print(f"[gpu] {args.table}: {entry['gpu']} = {entry['tokens_per_second']:,} tokens/s, measured "
              f"({entry['source']})", flush=True)
        return entry
    steps = args.steps or (4 if args.smoke else 400)
    repeats = args.repeats or (1 if args.smoke else 2)
    print(f"[gpu] {'smoke: tiny model on the repo sample' if args.smoke else 'BERT-base, bf16, SST-2'}: "
          f"max_seq_length {', '.join(map(str, SMOKE_SEQ_LENGTHS if args.smoke else SEQ_LENGTHS))}; "
          f"{steps} steps at the first x {repeats} repeat(s) per side ...", flush=True)
    r = run(smoke=args.smoke, steps=steps, repeats=repeats, peak=args.peak_tflops)
    print(report(r), flush=True)
    name = "gpu-" + re.sub(r"[^A-Za-z0-9]+", "-", r["settings"]["device"]).strip("-").lower()
    path = common.write_result(name, r, common.RESULTS / "quick" if args.smoke else None)
    shown = path.relative_to(common.REPO) if path.is_relative_to(common.REPO) else path
    print(f"[gpu] wrote {shown}", flush=True)
    return r


if __name__ == "__main__":
    main()
