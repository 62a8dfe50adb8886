"""Cost of a run: `bertbatch estimate` on SST-2 from the data's tokens and from 128 tokens a row,
with the per-token model it rests on checked against this benchmark's CPU measurements.

What is measured and what is not:
- MEASURED here (on CPU, side by side): the container's and the run_glue-default baseline's
  samples/s and computed tokens/s for the same BERT-base model, steps and data
  (bench/results/throughput-base.json).
- COUNTED by `bertbatch estimate --data` (no GPU involved): the SST-2 rows' tokens with the
  bert-base-uncased WordPiece vocab, plus the container's measured padding share
  (gpu_throughput.json "padding", from throughput-small-peers.json).
- DOCUMENTED, not measured: bertbatch/data/gpu_throughput.json's tokens/s per GPU, derived
  estimates (datasheet FP16 peak x assumed MFU 0.25 / 6 x parameters per token) unless an entry
  says "derived_estimate": false (`python -m bench.gpu --record RESULT.json`).
- CHECKED: the estimate holds a GPU's computed-token rate constant whatever the padding. On this
  CPU the container's computed tokens/s over the baseline's is the test of that; the samples/s
  speedup the token count predicts (128 / computed tokens a row) is printed beside the measured one.

Three estimates, same rows and epochs: the shipped table with every row counted as 128 tokens
(the estimate before token counting, `--rows`), the shipped table with the data's tokens
(`--data`: what `bertbatch estimate --data` gives), and the earlier benchmark-derived table (the
shipped figures x the measured CPU speedup, with `--rows`: the padding gain expressed per
sample, kept for comparison). That derived table must not be combined with `--data`, which
counts the same gain from the tokens.

    python -m bench.cost [--epochs 3] [--max-seq-length 128]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
from pathlib import Path

from . import common


def _shown(path: Path) -> str:
    return str(path.relative_to(common.REPO) if path.is_relative_to(common.REPO) else path)


def _estimate(base_args: list[str]) -> dict:
    from click.testing import CliRunner

    from bertbatch.cli import cli

    runner = CliRunner()
    # from the repository root with relative paths: the recorded output names no machine's paths
    with contextlib.chdir(common.REPO):
        text = runner.invoke(cli, base_args)
        js = runner.invoke(cli, base_args + ["--json"])
    if text.exit_code != 0 or js.exit_code != 0:
        raise RuntimeError(f"bertbatch estimate failed: {text.output}{js.output}")
    return {"text": text.output, "json": json.loads(js.output)}


def derived_table(tp: dict, speedup: float, throughput_name: str) -> dict:
    """The shipped table x the container's measured CPU speedup (the earlier method), format 2."""
    from bertbatch.cost.training_cost import load_throughput

    table = load_throughput()
    b, c = tp["baseline"], tp["contender"]
    derived = copy.deepcopy(table)
    derived["method"] = (
        f"DERIVED ESTIMATE by bench/cost.py on {common.now()[:10]}: the shipped table's tokens/s (itself a "
        f"datasheet-derived estimate) x the container/run_glue-default samples/s speedup measured on CPU "
        f"({speedup:.2f}x, {tp['settings']['shape']} shape, {tp['settings']['steps']} steps x batch "
        f"{tp['settings']['batch_size']}, {tp['settings']['dataset']}, {throughput_name}.json; container "
        f"{c['samples_per_second']:.2f} vs baseline {b['samples_per_second']:.2f} samples/s). The speedup is the "
        f"padding not computed, so use this table with --rows (128 tokens a row) only: --data counts the same gain "
        f"from the tokens. Not a GPU measurement.")
    derived.pop("padding", None)  # with --data it would be counted twice
    for gpu, row in derived["gpus"].items():
        row["tokens_per_second"] = round(table["gpus"][gpu]["tokens_per_second"] * speedup, 1)
        row["derived_estimate"] = True
        row["basis"] = (f"{table['gpus'][gpu]['tokens_per_second']:,.0f} (shipped table) x {speedup:.2f} "
                        f"(measured dynamic-padding speedup on CPU)")
        row.pop("source", None)
    return derived


def run(*, epochs: int = 3, seq_len: int = 128, throughput_result: dict | None = None,
        throughput_name: str = "throughput-base") -> dict:
    tp = throughput_result or common.read_result(throughput_name)
    if not tp:
        raise RuntimeError(f"no {throughput_name}.json in {common.RESULTS}: run python -m bench.throughput first")
    b, c = tp["baseline"], tp["contender"]
    speedup = c["samples_per_second"] / b["samples_per_second"]
    derived_path = common.write_result("gpu_throughput_derived", derived_table(tp, speedup, throughput_name))

    data = common.find_data()
    common_args = ["estimate", "--epochs", str(epochs), "--max-seq-length", str(seq_len), "--offline"]
    train, vocab = (os.path.relpath(data[k], common.REPO) for k in ("train", "vocab"))
    from_data = _estimate(common_args + ["--data", train, "--tokenizer", vocab])
    rows = from_data["json"]["rows"]
    by_rows = common_args + ["--rows", str(rows)]
    outputs = {
        "shipped_table": _estimate(by_rows),
        "derived_from_benchmark": _estimate(by_rows + ["--throughput", _shown(derived_path)]),
        "from_data": from_data,
    }
    tokens = from_data["json"]["tokens"]
    cpu_hours = rows * epochs / c["samples_per_second"] / 3600
    return {
        "benchmark": "cost",
        "date_utc": common.now(),
        "inputs": {"rows": rows, "epochs": epochs, "max_seq_length": seq_len, "data": data["source"],
                   "throughput_result": f"{throughput_name}.json", "shape": tp["settings"]["shape"],
                   "throughput_measured_at": tp["machine"]["date_utc"]},
        "measured_cpu_samples_per_second": {"baseline_run_glue_defaults": b["samples_per_second"],
                                            "container": c["samples_per_second"], "speedup": speedup},
        "per_token_model": {
            "definition": "the estimate holds the computed-token rate constant: samples/s speedup = computed tokens "
                          "a row, baseline / container",
            "measured_computed_tokens_per_second": {"baseline": b["computed_tokens_per_second"],
                                                    "container": c["computed_tokens_per_second"],
                                                    "ratio": c["computed_tokens_per_second"]
                                                    / b["computed_tokens_per_second"]},
            "measured_computed_tokens_per_sample": {"baseline": b["computed_tokens"] / b["samples"],
                                                    "container": c["computed_tokens"] / c["samples"]},
            "estimate_computed_tokens_per_row": tokens["computed_tokens_per_row"],
            "predicted_speedup_from_tokens": seq_len / tokens["computed_tokens_per_row"],
            "measured_speedup": speedup,
        },
        "this_cpu_hours_for_the_run": cpu_hours,
        "derived_throughput_table": _shown(derived_path),
        "estimate": outputs,
        "caveat": "GPU figures are estimates unless gpu_throughput.json marks them measured; the per-token model "
                  "is checked here on a CPU. On a GPU, short rows in small batches leave tensor cores idle, so "
                  "the token rate at SST-2's lengths can be lower than at 128 tokens a row.",
    }


def report(r: dict) -> str:
    m, pt = r["measured_cpu_samples_per_second"], r["per_token_model"]
    ct, cs = pt["measured_computed_tokens_per_second"], pt["measured_computed_tokens_per_sample"]
    lines = [
        f"Cost of a run: {r['inputs']['rows']:,} rows ({r['inputs']['data']}) x {r['inputs']['epochs']} epochs, "
        f"max_seq_length {r['inputs']['max_seq_length']}",
        f"measured on this CPU ({r['inputs']['shape']} shape): baseline "
        f"{m['baseline_run_glue_defaults']:.2f} samples/s, container "
        f"{m['container']:.2f} samples/s ({m['speedup']:.2f}x); the whole run on this CPU would take "
        f"{r['this_cpu_hours_for_the_run']:.1f} h",
        f"per-token model: computed tokens/s container / baseline {ct['ratio']:.2f}x (the model assumes 1.00x); "
        f"computed tokens a sample in the measured steps {cs['baseline']:.1f} vs {cs['container']:.1f}; over the "
        f"data (estimate) {pt['estimate_computed_tokens_per_row']:.1f}: predicted speedup "
        f"{pt['predicted_speedup_from_tokens']:.2f}x, measured {pt['measured_speedup']:.2f}x",
        "",
        "bertbatch estimate --data (the data's tokens, shipped table):",
        r["estimate"]["from_data"]["text"].rstrip(),
        "",
        "bertbatch estimate --rows (every row 128 tokens, shipped table):",
        r["estimate"]["shipped_table"]["text"].rstrip(),
        "",
        f"bertbatch estimate --rows --throughput {r['derived_throughput_table']} (earlier method: table x measured "
        "speedup):",
        r["estimate"]["derived_from_benchmark"]["text"].rstrip(),
        "",
        f"caveat: {r['caveat']}",
    ]
    return "\n".join(lines)


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--throughput-result", default="throughput-base",
                   help="result file (in bench/results/) with the measured throughput")
    return p


def main(args: argparse.Namespace) -> dict:
    r = run(epochs=args.epochs, seq_len=args.max_seq_length, throughput_name=args.throughput_result)
    print(report(r), flush=True)
    path = common.write_result("cost", r)
    print(f"[cost] wrote {_shown(path)}", flush=True)
    return r


if __name__ == "__main__":
    main(build_parser().parse_args())
