"""Training throughput: the container's training path against transformers' Trainer, twice: with
run_glue.py's defaults and as a user who tunes it (dynamic padding, length grouping, bf16, fused AdamW).

Both sides, one after the other in the same benchmark run, each in a fresh subprocess with the
same thread count: same random-init model (same BertConfig, same seed, checked by a weight hash),
same data, same batch size and number of optimizer steps, same learning rate, same eval subset.

    python -m bench.throughput --shape base --steps 10
    python -m bench.throughput --shape small --steps 300 --learning-rate 5e-4

tokens/s counts NON-PADDING tokens per second of training-step time; the padding fraction is
1 - real tokens / computed tokens (rows x padded length).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common

# Shapes. base and tiny are the container's own random:base / random:tiny; small is BERT-mini
# (4 layers, hidden 256; Turc et al. 2019), written as a config file for random:CONFIG.json.
SHAPES = {
    "base": {"model": "random:base", "layers": 12, "hidden": 768, "heads": 12, "intermediate": 3072},
    "small": {"model": None, "layers": 4, "hidden": 256, "heads": 4, "intermediate": 1024},
    "tiny": {"model": "random:tiny", "layers": 2, "hidden": 128, "heads": 2, "intermediate": 512},
}
DEFAULT_LR = {"base": 2e-5, "small": 5e-4, "tiny": 1e-3}


def _model_spec(shape: str, work: Path) -> str:
    s = SHAPES[shape]
    if s["model"]:
        return s["model"]
    path = work / f"{shape}-config.json"
    path.write_text(json.dumps({
        "model_type": "bert", "hidden_size": s["hidden"], "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"], "intermediate_size": s["intermediate"],
        "max_position_embeddings": 512,
    }))
    return "random:" + str(path)


def _subset(src: str, rows: int | None, dest: Path) -> tuple[str, int]:
    """The first `rows` data rows of a TSV (all if None); returns (path, rows)."""
    lines = Path(src).read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], [x for x in lines[1:] if x.strip()]
    if rows is None or rows >= len(body):
        return src, len(body)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(header + "".join(body[:rows]), encoding="utf-8")
    return str(dest), rows


def _run_side(side: str, spec: dict, work: Path, threads: int, timeout: float) -> dict:
    spec = {**spec, "side": side, "work_dir": str(work / side), "threads": threads}
    Path(spec["work_dir"]).mkdir(parents=True, exist_ok=True)
    spec_path, out_path = work / f"{side}-spec.json", work / f"{side}-out.json"
    spec_path.write_text(json.dumps(spec))
    log_path = work / f"{side}.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, "-m", "bench._side", str(spec_path), str(out_path)],
                              cwd=common.REPO, env=common.child_env(threads), stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0 or not out_path.exists():
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{side} run failed (exit {proc.returncode}):\n{tail}")
    out = json.loads(out_path.read_text())
    out["process_seconds"] = time.perf_counter() - t0
    return out


def _derive(r: dict) -> dict:
    secs = r["train_seconds"]
    r["samples_per_second"] = r["samples"] / secs if secs else None
    r["tokens_per_second"] = r["real_tokens"] / secs if secs else None  # non-padding tokens
    r["computed_tokens_per_second"] = r["computed_tokens"] / secs if secs else None
    r["padding_fraction"] = 1 - r["real_tokens"] / r["computed_tokens"] if r["computed_tokens"] else None
    r["seconds_per_step"] = secs / r["steps"] if r["steps"] else None
    # Steady state: steps 2..N (end of step 1 to end of step N), same samples per step on both sides.
    st = r.get("steady_seconds")
    steady = st and r["steps"] > 1
    r["steady_samples_per_second"] = (r["steps"] - 1) * (r["samples"] / r["steps"]) / st if steady else None
    return r


SIDES = ("baseline", "tuned", "contender_stock", "contender_unpadded", "contender")
DEFAULT_SIDES = ("baseline", "tuned", "contender")
SIDE_TITLES = {"baseline": "run_glue defaults", "tuned": "tuned Trainer", "contender_stock": "bert_train stock step",
               "contender_unpadded": "bert_train unpadded", "contender": "bert_train"}


def _median_side(runs: list[dict]) -> dict:
    """One side's figures over its repeats: the median of every number, the rest from the first
    run, and each run's samples/s so the spread is visible."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        values = [r.get(key) for r in runs]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and all(
                isinstance(v, (int, float)) for v in values):
            out[key] = statistics.median(values)
    out["repeats"] = len(runs)
    out["samples_per_second_runs"] = [r["samples_per_second"] for r in runs]
    return out


def _order(repeat: int, sides: tuple[str, ...], baseline_repeats: int) -> list[str]:
    """Sides alternate between repeats (ABC, CBA, ...): a load change hits both sides alike. The slow
    run_glue baseline runs only in the first `baseline_repeats` repeats."""
    order = [x for x in sides if x != "baseline" or repeat < baseline_repeats]
    return order if repeat % 2 == 0 else order[::-1]


def compare(*, shape: str = "base", steps: int = 10, batch_size: int = 32, eval_rows: int | None = 256,
            train_rows: int | None = None, learning_rate: float | None = None, max_seq_length: int = 128,
            threads: int | None = None, seed: int = 42, data: dict | None = None,
            sides: tuple[str, ...] = DEFAULT_SIDES, repeats: int = 1, baseline_repeats: int = 1,
            precision: str = "auto", timeout: float = 3600) -> dict:
    """Run every side (`repeats` times, alternating the order) and return the comparison (the core of
    this benchmark; the smoke test calls it)."""
    data = data or common.find_data()
    threads = threads or os.cpu_count() or 1
    lr = learning_rate if learning_rate is not None else DEFAULT_LR[shape]
    machine = common.machine_info()
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    orders = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        work = Path(tmp)
        train, n_train = _subset(data["train"], train_rows, work / "data" / "train.tsv")
        evalf, n_eval = _subset(data["eval"], eval_rows, work / "data" / "dev.tsv")
        spec = {"model": _model_spec(shape, work), "train": train, "eval": evalf, "vocab": data["vocab"],
                "batch_size": batch_size, "steps": steps, "learning_rate": lr,
                "max_seq_length": max_seq_length, "seed": seed, "precision": precision}
        for repeat in range(repeats):
            order = _order(repeat, sides, baseline_repeats)
            orders.append(order)
            for side in order:
                load_before = common.loadavg()
                one = _derive(_run_side(side, spec, work / f"r{repeat}", threads, timeout))
                one["loadavg_start"] = load_before
                runs[side].append(one)
                print(f"[throughput]   repeat {repeat + 1}/{repeats} {side}: "
                      f"{one['samples_per_second']:.2f} samples/s ({one['precision']})", flush=True)
    result_sides = {side: _median_side(r) for side, r in runs.items()}
    c = result_sides["contender"]

    def ratios(peer: dict) -> dict:
        def ratio(k: str) -> float | None:
            return (c[k] / peer[k]) if peer.get(k) and c.get(k) is not None else None

        return {
            "samples_per_second": ratio("samples_per_second"),
            "steady_samples_per_second": ratio("steady_samples_per_second"),
            "tokens_per_second": ratio("tokens_per_second"),
            "peak_rss": ratio("peak_rss_mb"),
            "eval_accuracy_delta": (c["eval_accuracy"] - peer["eval_accuracy"])
            if c.get("eval_accuracy") is not None and peer.get("eval_accuracy") is not None else None,
        }

    machine["loadavg_end"] = common.loadavg()
    digests = {s["initial_weights"] for s in result_sides.values()}
    result = {
        "benchmark": "throughput",
        "machine": machine,
        "note": common.shared_machine_note(machine["loadavg_start"], machine["loadavg_end"], machine["cores"]),
        "settings": {
            "shape": shape, **{k: v for k, v in SHAPES[shape].items() if k != "model"},
            "steps": steps, "batch_size": batch_size, "max_seq_length": max_seq_length, "learning_rate": lr,
            "seed": seed, "threads": threads, "train_rows": n_train, "eval_rows": n_eval,
            "dataset": data["source"], "sides": list(sides), "order": orders, "repeats": repeats,
            "baseline_repeats": min(baseline_repeats, repeats), "precision_requested": precision,
            "aggregate": "median over each side's repeats (each repeat a fresh process; order alternated)",
            "checkpoints": "off on every side (measured separately by bench.checkpoint)",
            "peak_memory": "ru_maxrss of each side's own fresh subprocess (includes Python, torch, "
                           "transformers and the tokenized data set)",
            "tokens_per_second": "non-padding tokens per second of training-step time",
            "samples_per_second": "all steps: samples / time from the start of step 1 to the end of step N "
                                  "(Trainer sides: on_train_begin to the last on_step_end; contender: the "
                                  "trainer's own per-step timer, which includes collation)",
            "steady_samples_per_second": "steps 2..N: end of step 1 to end of step N (every side via a per-step "
                                         "callback); leaves out step 1, which is the contender's longest batch",
            "epoch_plan_padding_fraction": "padding over one whole epoch of each side's batch plan on the same "
                                           "training data (contender: bert_train.data.epoch_batches; tuned: "
                                           "Trainer's LengthGroupedSampler; baseline: every row padded to "
                                           "max_length)",
        },
        "same_initial_weights": len(digests) == 1,
        **result_sides,
        "ratio": ratios(result_sides["baseline"]) if "baseline" in result_sides else {},
        "ratio_vs_tuned": ratios(result_sides["tuned"]) if "tuned" in result_sides else {},
        "ratio_vs_unpadded": ratios(result_sides["contender_unpadded"]) if "contender_unpadded" in result_sides else {},
        "ratio_vs_stock_step": ratios(result_sides["contender_stock"]) if "contender_stock" in result_sides else {},
    }
    return result


def report(r: dict) -> str:
    s = r["settings"]
    sides = [x for x in SIDES if x in r]
    c = r["contender"]

    def row(label, key, digits=1, scale=1.0):
        values = {x: r[x].get(key) for x in sides}
        values = {x: None if v is None else v * scale for x, v in values.items()}
        rats = [f"{values['contender'] / values[peer]:.2f}x" if values.get(peer) and values["contender"] is not None
                else "" for peer in sides if peer != "contender"]
        return [label, *(common.fmt_num(values[x], digits) for x in sides), *rats]

    rows = [
        row("train samples/s", "samples_per_second", 2),
        row("tokens/s (non-padding)", "tokens_per_second", 1),
        row("computed tokens/s (incl. padding)", "computed_tokens_per_second", 0),
        row("train samples/s, steps 2..N", "steady_samples_per_second", 2),
        row("padding, % of computed tokens", "padding_fraction", 1, 100.0),
        row("padding over a whole epoch's batch plan, %", "epoch_plan_padding_fraction", 1, 100.0),
        row("seconds per step", "seconds_per_step", 2),
        row("peak RSS, MB", "peak_rss_mb", 0),
        row("eval accuracy", "eval_accuracy", 4),
        row("train loss (mean)", "train_loss", 4),
        ["precision", *(r[x].get("precision") for x in sides), *([""] * (len(sides) - 1))],
        ["repeats (median of)", *(r[x].get("repeats") for x in sides), *([""] * (len(sides) - 1))],
    ]
    title = (f"Throughput: {s['shape']} shape (L{s['layers']}/H{s['hidden']}), {s['steps']} steps x batch "
             f"{s['batch_size']}, max_seq_length {s['max_seq_length']}, lr {s['learning_rate']:g}, "
             f"{s['threads']} threads, {s['eval_rows']} eval rows; data: {s['dataset']}")
    headers = ["", *(SIDE_TITLES[x] for x in sides),
               *(f"bert_train / {SIDE_TITLES[x]}" for x in sides if x != "contender")]
    out = common.table(headers, rows, title)
    out += f"\nsame initial weights: {r['same_initial_weights']}"
    out += "\nsamples/s per run: " + "; ".join(
        f"{SIDE_TITLES[x]} " + ", ".join(f"{v:.1f}" for v in r[x]["samples_per_second_runs"]) for x in sides)
    if c.get("unpadded") is not None:
        out += f"\ncontender execution: {'unpadded' if c['unpadded'] else 'padded'}"
    if r.get("note"):
        out += f"\nnote: {r['note']}"
    return out


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="base")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps per side (default: base 10, small 300, tiny 200)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-rows", type=int, default=None,
                   help="eval subset: the first N dev rows (default: base 256, else 872)")
    p.add_argument("--train-rows", type=int, default=None, help="train subset: the first N rows (default: all)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="same on both sides (default: base 2e-5, small 5e-4, tiny 1e-3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per side (default: all cores)")
    p.add_argument("--repo-sample", action="store_true",
                   help="use the repo's SST-2 sample even if ../shared/data exists")
    p.add_argument("--name", default=None, help="result file name (default: throughput-<shape>)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per side, order alternated; figures are medians (default 1)")
    p.add_argument("--baseline-repeats", type=int, default=1,
                   help="of those, how many include the slow run_glue-default baseline (default 1)")
    p.add_argument("--precision", choices=("best", "auto", "fp32", "bf16"), default="best",
                   help="the contender's --precision, and the tuned Trainer's; best = bf16 where the hardware has "
                        "it natively (this CPU: avx512_bf16/amx_bf16), else fp32 (default best)")
    p.add_argument("--sides", default=",".join(DEFAULT_SIDES),
                   help=f"comma-separated sides to run, contender always; contender_unpadded = the container "
                        f"with unpadded execution on; contender_stock = the container with transformers' "
                        f"forward, torch's CPU dropout, every embedding row in AdamW, clip_grad_norm_ and a "
                        f"length window of 50 "
                        f"(default {','.join(DEFAULT_SIDES)})")
    return p


DEFAULT_STEPS = {"base": 10, "small": 300, "tiny": 200}
DEFAULT_EVAL_ROWS = {"base": 256, "small": 872, "tiny": 872}


def main(args: argparse.Namespace) -> dict:
    steps = args.steps or DEFAULT_STEPS[args.shape]
    eval_rows = args.eval_rows or DEFAULT_EVAL_ROWS[args.shape]
    data = common.find_data(prefer_shared=not args.repo_sample)
    sides = tuple(x for x in SIDES if x in args.sides.split(",") or x == "contender")
    print(f"[throughput] {args.shape}: {steps} steps x batch {args.batch_size}, sides {', '.join(sides)} "
          f"(each run in its own process), {args.repeats} repeat(s) ...", flush=True)
    r = compare(shape=args.shape, steps=steps, batch_size=args.batch_size, eval_rows=eval_rows,
                train_rows=args.train_rows, learning_rate=args.learning_rate, threads=args.threads, data=data,
                sides=sides, repeats=args.repeats, baseline_repeats=args.baseline_repeats,
                precision=common.best_precision() if args.precision == "best" else args.precision)
    print(report(r), flush=True)
    path = common.write_result(args.name or f"throughput-{args.shape}", r)
    print(f"[throughput] wrote {path.relative_to(common.REPO)}", flush=True)
    return r


if __name__ == "__main__":
    main(build_parser().parse_args())
