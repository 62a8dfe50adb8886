"""`python -m bench` (`make bench`): every benchmark part in order, each printing a table and
writing its JSON to bench/results/.

    python -m bench                      # throughput (base + small), checkpoint, synth, cost, predict, data_scale
    python -m bench --quick              # small shapes, few steps (a few minutes)
    python -m bench --only throughput    # one part (repeatable: --only checkpoint --only cost)
    python -m bench --with-make-test     # also time `make test` (several minutes)
    python -m bench --gpu                # only the GPU benchmark (bench/gpu.sh; --quick: its CPU smoke mode)

Default run on the 2-core reference machine: about 20 minutes. The README's numbers come from
the default run; bench/results/*.json record the shape, steps and machine of each.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import checkpoint, common, cost, data_scale, gpu, predict, synth, throughput

PARTS = ("throughput", "checkpoint", "synth", "cost", "predict", "data_scale")


def _check_deps() -> None:
    missing = []
    for mod in ("torch", "transformers", "accelerate", "moto", "bert_train", "bertbatch"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        sys.exit(f"bench: missing Python packages: {', '.join(missing)} "
                 f"(make install, or pip install -r requirements-dev.txt)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small/tiny shapes and few steps (results go to bench/results/quick/)")
    p.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    p.add_argument("--skip", action="append", choices=PARTS, default=[], help="skip this part (repeatable)")
    p.add_argument("--base-steps", type=int, default=throughput.DEFAULT_STEPS["base"],
                   help="throughput: BERT-base steps per side")
    p.add_argument("--small-steps", type=int, default=throughput.DEFAULT_STEPS["small"],
                   help="throughput: small-shape steps per side (the accuracy comparison)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--with-make-test", action="store_true", help="synth: also time `make test`")
    p.add_argument("--gpu", action="store_true",
                   help="only the GPU benchmark (bench.gpu: BERT-base vs the tuned Trainer on one NVIDIA GPU)")
    args = p.parse_args(argv)
    if args.gpu:
        gpu.main(["--smoke"] if args.quick else [])
        return 0
    _check_deps()
    parts = [x for x in (args.only or PARTS) if x not in args.skip]
    if args.quick:
        common.RESULTS = common.RESULTS / "quick"  # never overwrite the recorded full results
    t0 = time.perf_counter()
    print(f"bench: parts {', '.join(parts)}; machine {common.cpu_model()}, {common.os.cpu_count()} cores; "
          f"load {common.loadavg()}; results in {common.RESULTS.relative_to(common.REPO)}/", flush=True)
    tp = throughput.build_parser()
    if "throughput" in parts:
        if args.quick:
            runs = [["--shape", "tiny", "--steps", "40", "--eval-rows", "256"]]
        else:
            # Medians of 3 for the tuned Trainer and the container (order alternated); the slow
            # run_glue-default baseline runs once.
            runs = [["--shape", "base", "--steps", str(args.base_steps), "--repeats", "3"],
                    ["--shape", "small", "--steps", str(args.small_steps), "--repeats", "3"]]
        for extra in runs:
            throughput.main(tp.parse_args(extra + ["--batch-size", str(args.batch_size)]))
            print(flush=True)
    if "checkpoint" in parts:
        checkpoint.main(checkpoint.build_parser().parse_args(["--shape", "tiny" if args.quick else "base"]))
        print(flush=True)
    if "synth" in parts:
        synth.main(synth.build_parser().parse_args(["--with-make-test"] if args.with_make_test else []))
        print(flush=True)
    if "cost" in parts:
        measured = "throughput-tiny" if args.quick else "throughput-base"
        cost.main(cost.build_parser().parse_args(["--throughput-result", measured]))
    if "predict" in parts:
        print(flush=True)
        predict.main(predict.build_parser().parse_args(["--rows", "500", "--repeats", "1", "--name", "predict"]
                                                       if args.quick else []))
    if "data_scale" in parts:
        print(flush=True)
        data_scale.main(["--sizes", "3,10", "--predict-mb", "10", "--predict-rows", "2000", "--steps", "3"]
                        if args.quick else [])
    print(f"bench: done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
