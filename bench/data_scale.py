"""Datasets of any size: prepare throughput, and the trainer and prediction on growing inputs.

    python -m bench.data_scale [--sizes 30,300] [--predict-mb 300] [--workers N] [--steps 10] [--result NAME]

Data is generated on the fly into a temporary directory (JSONL shards of SST-2 sentences, joined
two to four to a row, about 190 bytes a row; ../shared/data when present, else the repo sample)
and removed afterwards; nothing is committed but the numbers (bench/results/data_scale.json).

- prepare: `python -m bert_train prepare` (WordPiece, bert-base-uncased vocab, max length 128)
  with one worker against a plain loop in one process that reads the same files and calls
  `tokenizer(batch, truncation=True)` on 1,000 rows at a time (the tokenizer's own threads off on
  both sides): MB/s of input per core, side by side; and with `--workers` processes on each size.
- train: the trainer as a subprocess on each size's store (`random:tiny`, batch 32, `--steps`
  steps), and on the smallest size also on the raw file (today's in-memory path): peak RSS (VmHWM)
  and the time from process start to the first progress line (step 1), side by side.
- predict: shard 0 (a Batch array child) of a `--predict-mb` JSONL input and of the smallest
  input, each cut into shards of about `--predict-rows` rows, so both children score as many
  rows: rows/s and peak RSS, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common

ROW_SENTENCES = (2, 4)


def _sentences(data: dict) -> list[str]:
    lines = Path(data["train"]).read_text(encoding="utf-8").split("\n")[1:]
    return [line.split("\t")[0] for line in lines if line.strip()]


def generate(folder: Path, megabytes: float, sentences: list[str], shards: int = 8, seed: int = 0) -> dict:
    """JSONL shards of about `megabytes` MB: rows of 2-4 sentences, labels 0/1."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    target = int(megabytes * 1e6)
    per_shard = target // shards + 1
    rows = written = 0
    for i in range(shards):
        size = 0
        with open(folder / f"part-{i:03d}.jsonl", "w", encoding="utf-8") as f:
            while size < per_shard and written < target:
                text = " ".join(rng.choice(sentences) for _ in range(rng.randint(*ROW_SENTENCES)))
                line = json.dumps({"sentence": text, "label": rng.randint(0, 1)}) + "\n"
                f.write(line)
                n = len(line.encode())
                size += n
                written += n
                rows += 1
    return {"megabytes": round(written / 1e6, 1), "rows": rows, "shards": shards}


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in common.JOB_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(common.CONTAINER_DIR), str(common.REPO)])
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


THREADS = {"value": 1}  # torch threads of the trainer and predict subprocesses (--threads)


def measure(argv: list[str], *, first_line: str | None = None, env: dict | None = None) -> dict:
    """Run a command; its wall time, peak RSS (VmHWM, polled) and the time until a stdout line
    starting with `first_line` appeared (the process is stopped there when `first_line` is given
    and it is not the last thing measured)."""
    t0 = time.monotonic()
    threads = str(THREADS["value"])
    env = env or _env(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    status = Path(f"/proc/{proc.pid}/status")
    peak_kb, first = 0, None
    import selectors

    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    while proc.poll() is None:
        for _key, _ in sel.select(timeout=0.05):
            line = proc.stdout.readline()
            if first is None and first_line and line.startswith(first_line):
                first = time.monotonic() - t0
        try:
            m = re.search(r"VmHWM:\s+(\d+)", status.read_text())
            peak_kb = max(peak_kb, int(m.group(1))) if m else peak_kb
        except OSError:
            pass
    rest, err = proc.communicate()
    if first is None and first_line:
        for line in rest.splitlines():
            if line.startswith(first_line):
                first = time.monotonic() - t0
                break
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {proc.returncode}: {err[-2000:]}")
    return {"seconds": round(time.monotonic() - t0, 2), "peak_rss_mb": round(peak_kb / 1024, 1),
            "first_line_seconds": None if first is None else round(first, 2), "stderr_tail": err[-1500:]}


def plain_loop(folder: Path, vocab: str, limit_bytes: int) -> dict:
    """The baseline: read JSONL in this process and call tokenizer(batch) on 1,000 rows at a time."""
    from transformers.models.bert.tokenization_bert import BertTokenizerFast

    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    t0, size, rows, batch = time.monotonic(), 0, 0, []
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, "rb") as f:
            for raw in f:
                batch.append(json.loads(raw)["sentence"])
                size += len(raw)
                if len(batch) == 1000:
                    tok(batch, truncation=True, max_length=128)
                    rows, batch = rows + len(batch), []
                if size >= limit_bytes:
                    break
        if size >= limit_bytes:
            break
    if batch:
        tok(batch, truncation=True, max_length=128)
        rows += len(batch)
    seconds = time.monotonic() - t0
    return {"megabytes": round(size / 1e6, 1), "rows": rows, "seconds": round(seconds, 2),
            "mb_per_second_per_core": round(size / 1e6 / seconds, 2)}


def prepare_cmd(inp: Path, out: Path, vocab: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "bert_train", "prepare", "--input", str(inp), "--output", str(out),
            "--model", "random:tiny", "--vocab", vocab, "--max-seq-length", "128", "--workers", str(workers)]


def train_cmd(train: Path, work: Path, vocab: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "bert_train", "--train", str(train), "--model", "random:tiny", "--vocab", vocab,
            "--max-seq-length", "128", "--batch-size", "32", "--max-steps", str(steps), "--logging-steps", "1",
            "--output-uri", str(work / "out"), "--checkpoint-uri", str(work / "ckpt"), "--checkpoint-every-steps",
            "100000", "--work-dir", str(work / "scratch")]


def _model_dir(work: Path, vocab: str) -> Path:
    import torch

    from bert_train import modeling, outputs
    from bert_train.tasks import SINGLE_LABEL, Task

    torch.manual_seed(0)
    tokenizer, _ = modeling.build_tokenizer("random:tiny", vocab, str(work / "cache"))
    model = modeling.build_model("random:tiny", ["0", "1"], len(tokenizer))
    directory = work / "model"
    outputs.write_local(directory, model=model, tokenizer=tokenizer, task=Task(SINGLE_LABEL, ("0", "1")),
                        run_id="bench-data-scale",
                        config={}, metrics={})
    return directory


def predict_child(model: Path, inp: Path, out: Path, shards: int) -> dict:
    argv = [sys.executable, "-m", "bert_train", "predict", "--model", str(model), "--input", str(inp), "--output",
            str(out), "--shards", str(shards), "--shard-index", "0", "--batch-size", "64", "--max-seq-length", "128"]
    m = measure(argv)
    found = re.search(r"(\d+) rows scored in ([0-9.]+) s \(([0-9.]+) rows/s", m["stderr_tail"])
    return {**m, "rows": int(found.group(1)) if found else None,
            "rows_per_second": float(found.group(3)) if found else None}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _prepare(folder: Path, store: Path, vocab: str, workers: int, info: dict, **env: str) -> dict:
    prep = measure(prepare_cmd(folder, store, vocab, workers), env=_env(**env))
    # the child's own time (reading, tokenizing, writing; not the interpreter's start-up)
    found = re.search(r"shard\(s\) in ([0-9.]+) s", prep["stderr_tail"])
    prep["child_seconds"] = float(found.group(1)) if found else prep["seconds"]
    prep["workers"] = workers
    prep["mb_per_second"] = round(info["megabytes"] / prep["child_seconds"], 2)
    prep["mb_per_second_per_core"] = round(prep["mb_per_second"] / workers, 2)
    return prep


def run(*, sizes: list[float], predict_mb: float, predict_rows: int, workers: int, steps: int,
        data: dict, threads: int = 1) -> dict:
    THREADS["value"] = threads
    machine = common.machine_info()
    vocab, sentences = data["vocab"], _sentences(data)
    result: dict = {"settings": {"sizes_mb": sizes, "predict_mb": predict_mb, "predict_rows": predict_rows,
                                 "workers": workers, "steps": steps, "torch_threads": threads,
                                 "data": data["source"]},
                    "machine": machine, "prepare": {}, "train": {}, "predict": {}}
    with tempfile.TemporaryDirectory(prefix="bench-data-scale-") as tmp:
        work = Path(tmp)
        for mb in sizes:
            name = f"{mb:g}MB"
            folder = work / f"data-{name}"
            info = generate(folder, mb, sentences)
            store = work / f"store-{name}"
            prep = _prepare(folder, store, vocab, workers, info)
            result["prepare"][name] = {**info, **prep}
            streamed = measure(train_cmd(store, work / f"train-{name}", vocab, steps), first_line="[progress]")
            result["train"][name] = {"store": streamed}
            if mb == min(sizes):
                # per core: one process each, the tokenizer's own threads off on both sides
                one = _prepare(folder, work / "store-one-worker", vocab, 1, info, TOKENIZERS_PARALLELISM="false")
                result["prepare"][f"{name} one worker"] = {**info, **one}
                before = os.environ.get("TOKENIZERS_PARALLELISM")
                os.environ["TOKENIZERS_PARALLELISM"] = "false"
                try:
                    plain = plain_loop(folder, vocab, int(info["megabytes"] * 1e6))
                finally:
                    if before is None:
                        del os.environ["TOKENIZERS_PARALLELISM"]
                    else:
                        os.environ["TOKENIZERS_PARALLELISM"] = before
                result["prepare"]["plain_tokenizer_loop"] = plain
                result["prepare"]["ratio_per_core"] = _ratio(one["mb_per_second_per_core"],
                                                             plain["mb_per_second_per_core"])
                result["train"][name]["raw_file_in_memory"] = measure(
                    train_cmd(folder, work / f"train-raw-{name}", vocab, steps), first_line="[progress]")
        model = _model_dir(work, vocab)
        for mb in sorted({min(sizes), predict_mb}):
            name = f"{mb:g}MB"
            folder = work / f"data-{name}"
            rows = generate(folder, mb, sentences)["rows"] if not folder.exists() else result["prepare"][name]["rows"]
            # the same rows per child whatever the input's size: shard 0 of rows / predict_rows shards
            shards = max(1, round(rows / predict_rows))
            result["predict"][name] = {"input_rows": rows, "shards": shards,
                                       **predict_child(model, folder, work / f"pred-{name}", shards)}
    for side in result["train"].values():
        for m in side.values():
            m.pop("stderr_tail", None)
    for m in (*result["prepare"].values(), *result["predict"].values()):
        if isinstance(m, dict):
            m.pop("stderr_tail", None)
    small, big = f"{min(sizes):g}MB", f"{max(sizes):g}MB"
    result["ratios"] = {
        "train_peak_rss_big_vs_small": _ratio(result["train"][big]["store"]["peak_rss_mb"],
                                              result["train"][small]["store"]["peak_rss_mb"]),
        "train_first_step_big_vs_small": _ratio(result["train"][big]["store"]["first_line_seconds"],
                                                result["train"][small]["store"]["first_line_seconds"]),
        "train_peak_rss_store_vs_in_memory": _ratio(result["train"][small]["store"]["peak_rss_mb"],
                                                    result["train"][small]["raw_file_in_memory"]["peak_rss_mb"]),
        "predict_peak_rss_big_vs_small": _ratio(result["predict"][f"{predict_mb:g}MB"]["peak_rss_mb"],
                                                result["predict"][small]["peak_rss_mb"]),
        "prepare_per_core_vs_plain_loop": result["prepare"]["ratio_per_core"],
    }
    machine["loadavg_end"] = common.loadavg()
    note = common.shared_machine_note(machine["loadavg_start"], machine["loadavg_end"], machine["cores"])
    if note:
        result["note"] = note
    return result


def print_tables(r: dict) -> None:
    sizes = [k for k in r["train"]]
    small = sizes[0]
    prep = r["prepare"]
    plain = prep["plain_tokenizer_loop"]
    print(common.table(["", "MB", "seconds", "MB/s", "MB/s per core"],
                       [*[[f"prepare {k.removesuffix(' one worker')} ({v['workers']} worker(s))", v["megabytes"],
                           v["child_seconds"], v["mb_per_second"], v["mb_per_second_per_core"]]
                          for k, v in prep.items() if isinstance(v, dict) and "workers" in v],
                        ["plain tokenizer(batch) loop, 1 process", plain["megabytes"], plain["seconds"],
                         plain["mb_per_second_per_core"], plain["mb_per_second_per_core"]],
                        ["ratio per core (1 worker vs the loop)", "", "", "", prep["ratio_per_core"]]],
                       title="Prepare"))
    rows = [[f"{k} store", v["store"]["peak_rss_mb"], v["store"]["first_line_seconds"]] for k, v in r["train"].items()]
    raw = r["train"][small]["raw_file_in_memory"]
    rows.append([f"{small} raw file, in memory (before)", raw["peak_rss_mb"], raw["first_line_seconds"]])
    print(common.table(["trainer", "peak RSS MB", "s to step 1"], rows, title="\nTrain"))
    print(common.table(["predict: shard 0 of", "input rows", "rows scored", "rows/s", "peak RSS MB"],
                       [[f"{k} input: {v['shards']}", v["input_rows"], v["rows"], v["rows_per_second"],
                         v["peak_rss_mb"]] for k, v in r["predict"].items()], title="\nPredict"))
    print("\nratios: " + ", ".join(f"{k} {v}" for k, v in r["ratios"].items()))
    if r.get("note"):
        print(f"note: {r['note']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.data_scale", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="30,300", help="input sizes in MB, comma separated (default 30,300)")
    p.add_argument("--predict-mb", type=float, default=300.0)
    p.add_argument("--predict-rows", type=int, default=15000, help="rows per prediction shard (default 15000)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the trainer and predict (default 1: "
                   "steadier on a shared machine)")
    p.add_argument("--repo-sample", action="store_true", help="the repo's SST-2 sample, not ../shared/data")
    p.add_argument("--result", default="data_scale", help="bench/results/<name>.json (default data_scale)")
    args = p.parse_args(argv)
    r = run(sizes=[float(x) for x in args.sizes.split(",")], predict_mb=args.predict_mb,
            predict_rows=args.predict_rows, workers=args.workers, steps=args.steps, threads=args.threads,
            data=common.find_data(prefer_shared=not args.repo_sample))
    print_tables(r)
    print(f"\nwrote {common.write_result(args.result, r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
