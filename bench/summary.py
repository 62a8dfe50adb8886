"""The results table for the README, built from bench/results/*.json.

    python -m bench.summary      # prints Markdown: paste under "## Results" in bench/README.md
"""

from __future__ import annotations

from . import common


def _pct(x, d=1):
    return "n/a" if x is None else f"{x * 100:.{d}f} %"


def _n(x, d=1):
    return common.fmt_num(x, d)


def markdown() -> str:
    out = []
    base, small = common.read_result("throughput-base"), common.read_result("throughput-small")
    for r in (base, small):
        if not r:
            continue
        s, b, c, ratio = r["settings"], r["baseline"], r["contender"], r["ratio"]
        out.append(f"**Training throughput, {s['shape']} shape** (L{s['layers']}/H{s['hidden']}, random init, "
                   f"{s['steps']} optimizer steps x batch {s['batch_size']}, max_seq_length {s['max_seq_length']}, "
                   f"lr {s['learning_rate']:g} on both sides, {s['threads']} threads, eval on the first "
                   f"{s['eval_rows']} dev rows; {s['dataset']}; measured {r['machine']['date_utc']}; "
                   f"same initial weights: {r['same_initial_weights']})")
        out.append("")
        rows = [
            ["train samples/s (all steps)", _n(b["samples_per_second"], 2), _n(c["samples_per_second"], 2),
             f"**{ratio['samples_per_second']:.2f}x**"],
            ["train samples/s (steps 2..N)", _n(b.get("steady_samples_per_second"), 2),
             _n(c.get("steady_samples_per_second"), 2),
             f"{ratio['steady_samples_per_second']:.2f}x" if ratio.get("steady_samples_per_second") else "n/a"],
            ["tokens/s (non-padding tokens per second)", _n(b["tokens_per_second"], 1), _n(c["tokens_per_second"], 1),
             f"{ratio['tokens_per_second']:.2f}x"],
            ["padding, share of computed tokens (this run)", _pct(b["padding_fraction"]),
             _pct(c["padding_fraction"]), ""],
            ["padding over a whole epoch's batch plan", _pct(b.get("epoch_plan_padding_fraction")),
             _pct(c.get("epoch_plan_padding_fraction")), ""],
            ["peak RSS (own process)", f"{b['peak_rss_mb']:,.0f} MB", f"{c['peak_rss_mb']:,.0f} MB",
             f"{ratio['peak_rss']:.2f}x"],
            ["eval accuracy", _n(b["eval_accuracy"], 4), _n(c["eval_accuracy"], 4),
             f"{ratio['eval_accuracy_delta']:+.4f}" if ratio.get("eval_accuracy_delta") is not None else ""],
            ["precision", b["precision"], c["precision"], ""],
        ]
        out.append(common.table(["", "run_glue defaults", "bert_train", "bert_train / run_glue"], rows))
        out.append("")
    ck = common.read_result("checkpoint")
    if ck:
        one, sg = ck["one_checkpoint"], ck["sigterm"]
        size = max(ck["checkpoint_bytes"].values()) / 1e9 if ck["checkpoint_bytes"] else None
        out.append(f"**Checkpoints** ({ck['settings']['shape']} shape, {size:.2f} GB per checkpoint, moto S3 on "
                   f"127.0.0.1; measured {ck['machine']['date_utc']})")
        out.append("")
        rows = [
            ["one checkpoint: snapshot (training blocked)", f"{_n(one['blocking_snapshot_seconds'], 2)} s"],
            ["one checkpoint: write + sha256 + upload (background)",
             f"{_n(one['background_write_hash_upload_seconds'], 1)} s"],
            ["last checkpoint after SIGTERM (synchronous)",
             f"{_n(sg.get('final_checkpoint_background_seconds'), 1)} s"],
            ["training step (median)", f"{_n(ck['step_seconds_median'], 2)} s"],
            ["default interval on this machine",
             f"{_n(ck['default_interval_seconds'], 0)} s ({ck['default_interval_bound_by']})"],
            ["share of training time (blocking + measured slowdown)", _pct(ck["share_measured"], 2)],
            ["share of training time (upper bound: whole checkpoint as if blocking)", _pct(ck["share_upper_bound"], 2)],
            ["SIGTERM to exit (measured / logged by the trainer)",
             f"{_n(sg['sigterm_to_exit_seconds'], 1)} s / {_n(sg['trainer_reported_seconds'], 1)} s "
             f"(exit {sg['exit_code']})"],
        ]
        out.append(common.table(["", "value"], rows))
        out.append("")
    sy = common.read_result("synth")
    if sy:
        ms, mt = sy["make_synth"], sy["make_test"]
        rows = [["`make synth` (warm venv)" if ms.get("warm_venv") else "`make synth` (venv not warm)",
                 f"{ms['seconds']:.1f} s", ms["date_utc"]]]
        for p in sy["in_process"]:
            rows.append([f"in-process synth, {p['profile']} (import + 4 stacks + cdk-nag + synth)",
                         f"{p['total_seconds']:.1f} s", "per stack: " + ", ".join(
                             f"{k} {v:.2f} s" for k, v in p["construct_seconds"].items())
                         + f"; nag + synth {p['nag_and_synth_seconds']:.1f} s"])
        if mt.get("seconds"):
            rows.append(["`make test`", f"{mt['seconds']:.0f} s", f"{mt.get('date_utc')} ({mt.get('last_line', '')})"])
        out.append("**Synth and tests**")
        out.append("")
        out.append(common.table(["", "wall time", "notes"], rows))
        out.append("")
    co = common.read_result("cost")
    if co:
        m = co["measured_cpu_samples_per_second"]
        opts = {name: v["json"] for name, v in co["estimate"].items()}

        def cheapest(name):
            js = opts[name]
            items = js.get("options", js) if isinstance(js, dict) else js
            return items[0] if items else None

        rows = []
        for name, label in (("shipped_table", "shipped table (padded-128 workload)"),
                            ("derived_from_benchmark", "table x measured speedup (optimistic)")):
            o = cheapest(name)
            if o:
                rows.append([label, o["instance_type"], o["pricing"], f"{o['samples_per_second']:,.0f}",
                             f"{o['hours']:.2f} h", f"${o['cost']:.2f}"])
        out.append(f"**Cost of SST-2** ({co['inputs']['rows']:,} rows x {co['inputs']['epochs']} epochs, seq "
                   f"{co['inputs']['max_seq_length']}): measured speedup {m['speedup']:.2f}x on CPU; GPU figures "
                   f"are estimates (see bench/README.md)")
        out.append("")
        out.append(common.table(["throughput", "cheapest", "pricing", "samples/s", "time", "cost"], rows))
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown())
