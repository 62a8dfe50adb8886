"""Batch inference: `python -m bert_train predict` against `transformers.pipeline("text-classification")`.

    python -m bench.predict [--rows N] [--batch-size 64] [--threads 2] [--repo-sample]

The same model on both sides: a random-init BERT of the `small` shape (4 layers x 256 hidden, the
throughput benchmark's), saved as a training run's output directory (`outputs.write_local`:
config, safetensors, tokenizer, label map). The same rows: SST-2 dev (../shared/data when
present, else the repo sample), max_seq_length 128, the same batch size and torch threads, every
label's probability returned on both sides. Each side runs once on the first 64 rows to warm up,
then on every row, timed, `--repeats` times in alternating order (medians recorded).

- contender: `bert_train.predict.run` (one shard): predictions/s = rows / the shard's scoring time
  (tokenizing, forward passes, output lines; not model loading or the part-file write), and
  the whole `run` end to end;
- baseline: the pipeline called on the list of texts with `batch_size` (and with its default,
  one row at a time, on the first `--default-batch-rows` rows: what a user gets without tuning
  it), `top_k=None`, truncation at 128. The pipeline is built once and reused.

Also recorded: how often the two sides predict the same label, and the largest probability gap.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from . import common, throughput

SHAPE = "small"
WARMUP_ROWS = 64


def _run_dir(work: Path, vocab: str) -> Path:
    import torch

    from bert_train import modeling, outputs
    from bert_train.tasks import SINGLE_LABEL, Task

    torch.manual_seed(42)
    spec = throughput._model_spec(SHAPE, work)
    tokenizer, _ = modeling.build_tokenizer(spec, vocab, str(work / "cache"))
    model = modeling.build_model(spec, ["0", "1"], len(tokenizer))
    directory = work / "runs" / "bench-predict"
    outputs.write_local(directory, model=model, tokenizer=tokenizer, task=Task(SINGLE_LABEL, ("0", "1")),
                        run_id="bench-predict",
                        config={"model": spec}, metrics={})
    return directory


def _contender(model_dir: Path, rows_file: str, batch_size: int, work: Path, name: str) -> tuple[dict, list[dict]]:
    from bert_train import predict
    from bertbatch_contract import layout

    out = work / "predictions" / name
    config = predict.PredictConfig(model=str(model_dir), input=rows_file, output=str(out), batch_size=batch_size,
                                   max_seq_length=128)
    t0 = time.perf_counter()
    result = predict.run(config)
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (out / layout.prediction_part(0)).read_text().splitlines()]
    return {"rows": result.rows, "score_seconds": result.score_seconds,
            "predictions_per_second": result.rows_per_second, "end_to_end_seconds": wall,
            "end_to_end_predictions_per_second": result.rows / wall}, lines


def _pipeline(model_dir: Path):
    from transformers import pipeline

    return pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), device="cpu")


def _baseline(pipe, texts: list[str], batch_size: int | None) -> tuple[dict, list[dict]]:
    kwargs: dict = {"top_k": None, "truncation": True, "max_length": 128}
    if batch_size:
        kwargs["batch_size"] = batch_size
    pipe(texts[:WARMUP_ROWS], **kwargs)
    t0 = time.perf_counter()
    out = pipe(texts, **kwargs)
    seconds = time.perf_counter() - t0
    predictions = [{"label": max(r, key=lambda x: x["score"])["label"],
                    "probabilities": {x["label"]: x["score"] for x in r}} for r in out]
    return {"rows": len(texts), "batch_size": batch_size or "default (1)", "score_seconds": seconds,
            "predictions_per_second": len(texts) / seconds}, predictions


def _agreement(ours: list[dict], theirs: list[dict]) -> dict:
    same = sum(a["label"] == b["label"] for a, b in zip(ours, theirs, strict=True))
    gap = max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(ours, theirs, strict=True)
              for k in a["probabilities"])
    return {"same_label_fraction": same / len(ours), "max_probability_difference": gap}


def _median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda x: x["predictions_per_second"])
    return {**ordered[len(ordered) // 2], "all_predictions_per_second": [x["predictions_per_second"] for x in runs]}


def compare(*, rows: int | None, batch_size: int, threads: int | None, data: dict, repeats: int,
            default_batch_rows: int) -> dict:
    import torch

    from bert_train import predict, predict_io

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    machine = common.machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        rows_file, n_rows = throughput._subset(data["eval"], rows, work / "rows.tsv")
        texts = [r.text for r in predict_io.read_rows(rows_file, "sentence")]
        model_dir = _run_dir(work, data["vocab"])
        warm_file, _ = throughput._subset(data["eval"], WARMUP_ROWS, work / "warmup.tsv")
        _contender(model_dir, warm_file, batch_size, work, "warmup")
        pipe = _pipeline(model_dir)  # loaded once and warmed before each timed call: the baseline's best case
        contender_runs, baseline_runs = [], []
        for k in range(repeats):  # alternate the order: a shared machine's load shifts over minutes
            for side in (("baseline", "contender") if k % 2 == 0 else ("contender", "baseline")):
                if side == "baseline":
                    figures, theirs = _baseline(pipe, texts, batch_size)
                    baseline_runs.append(figures)
                else:
                    figures, ours = _contender(model_dir, rows_file, batch_size, work, f"timed-{k}")
                    contender_runs.append(figures)
        unbatched = (_baseline(pipe, texts[:default_batch_rows], None)[0] if default_batch_rows else None)
        predictor = predict.load_predictor(str(model_dir), str(work / "cache"), "auto", 128)
    machine["loadavg_end"] = common.loadavg()
    contender, baseline = _median_run(contender_runs), _median_run(baseline_runs)
    return {
        "benchmark": "predict",
        "machine": machine,
        "note": common.shared_machine_note(machine["loadavg_start"], machine["loadavg_end"], machine["cores"]),
        "settings": {
            "shape": SHAPE, **{k: v for k, v in throughput.SHAPES[SHAPE].items() if k != "model"},
            "rows": n_rows, "dataset": data["source"], "batch_size": batch_size, "max_seq_length": 128,
            "threads": threads, "warmup_rows": WARMUP_ROWS, "repeats": repeats,
            "default_batch_rows": default_batch_rows,
            "contender_execution": "unpadded" if predictor.unpadded else "padded per batch",
            "contender_precision": predictor.precision,
            "predictions_per_second": "rows / scoring time (tokenizing, forward passes, output records; not model "
                                      "loading, not the part-file write); median of the repeats",
        },
        "contender": contender,
        "baseline_pipeline": baseline,
        "baseline_pipeline_default_batch": unbatched,
        "ratio": contender["predictions_per_second"] / baseline["predictions_per_second"],
        "ratio_vs_default_batch": (contender["predictions_per_second"] / unbatched["predictions_per_second"]
                                   if unbatched else None),
        "agreement": _agreement(ours, theirs),
    }


def report(r: dict) -> str:
    s, c, b, u = r["settings"], r["contender"], r["baseline_pipeline"], r["baseline_pipeline_default_batch"]
    rows = [["bert_train predict", s["batch_size"], common.fmt_num(c["score_seconds"], 2),
             common.fmt_num(c["predictions_per_second"]), "1.00x"],
            ["pipeline(text-classification)", s["batch_size"], common.fmt_num(b["score_seconds"], 2),
             common.fmt_num(b["predictions_per_second"]), f"{r['ratio']:.2f}x slower"]]
    if u:
        rows.append([f"pipeline, default batch ({u['rows']} rows)", "1", common.fmt_num(u["score_seconds"], 2),
                     common.fmt_num(u["predictions_per_second"]), f"{r['ratio_vs_default_batch']:.2f}x slower"])
    out = common.table(["side", "batch", "seconds", "predictions/s", "vs contender"], rows,
                       title=f"Batch inference, {s['shape']} BERT (L{s['layers']}/H{s['hidden']}), {s['rows']:,} rows, "
                             f"max_seq_length {s['max_seq_length']}, {s['threads']} threads")
    a = r["agreement"]
    out += (f"\nratio {r['ratio']:.2f}x (contender {s['contender_execution']}, {s['contender_precision']}); "
            f"same label on {a['same_label_fraction']:.1%} of rows, largest probability difference "
            f"{a['max_probability_difference']:.1e}; end to end (load + score + write) "
            f"{common.fmt_num(c['end_to_end_predictions_per_second'])} predictions/s")
    if r.get("note"):
        out += f"\nnote: {r['note']}"
    return out


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="the first N dev rows (default: all)")
    p.add_argument("--batch-size", type=int, default=64, help="same on both sides (default 64)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--repo-sample", action="store_true",
                   help="use the repo's SST-2 sample even if ../shared/data exists")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per side, order alternated; figures are medians (default 3)")
    p.add_argument("--default-batch-rows", type=int, default=500,
                   help="rows for the pipeline at its default batch size, the slowest part (default 500)")
    p.add_argument("--name", default="predict", help="result file name (default: predict)")
    return p


def main(args: argparse.Namespace) -> dict:
    data = common.find_data(prefer_shared=not args.repo_sample)
    print(f"[predict] {SHAPE} shape, batch {args.batch_size}, rows from {data['source']} ...", flush=True)
    r = compare(rows=args.rows, batch_size=args.batch_size, threads=args.threads, data=data,
                repeats=args.repeats, default_batch_rows=args.default_batch_rows)
    print(report(r), flush=True)
    path = common.write_result(args.name, r)
    print(f"[predict] wrote {path.relative_to(common.REPO)}", flush=True)
    return r


if __name__ == "__main__":
    main(build_parser().parse_args())
