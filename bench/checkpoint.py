"""Checkpoint overhead and SIGTERM-to-exit, on the container's real code path.

One real `python -m bert_train` process trains a random-init model (BERT-base shape by default)
with checkpoints going to S3 on a moto server (127.0.0.1, random port, real HTTP):

1. a checkpoint every K steps (the real background save + upload of checkpoint.py / train.py);
   the trainer logs "checkpoint step-... complete in X s" (save() call to manifest uploaded);
2. once two checkpoints are complete in S3, at a step boundary with no upload in flight, SIGTERM;
   the benchmark times kill() -> process exit, and the trainer logs its own measured time too;
3. the share of training time at the DEFAULT cadence (every 2000 steps or 10 minutes, whichever
   comes first) is computed from the measured step time and checkpoint time.

    python -m bench.checkpoint [--shape base|tiny] [--every 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bertbatch_contract import job

from . import common

CKPT_RE = re.compile(r"checkpoint (step-(\d+)) complete in ([0-9.]+) s")
EXIT_RE = re.compile(r"(SIGTERM|SIGINT) -> exit in ([0-9.]+) s")
PROGRESS_RE = re.compile(r"\[progress\] .*step (\d+)/\d+ .*samples/s ([0-9.]+)")
SHAPE_MODEL = {"base": "random:base", "tiny": "random:tiny"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoS3:
    """A moto S3 server on 127.0.0.1 over real HTTP, with dummy credentials for boto3."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = _free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


def run(*, shape: str = "base", every: int = 4, batch_size: int = 32, threads: int | None = None,
        data: dict | None = None, train_rows: int = 2000, timeout: float = 1800, with_breakdown: bool = True) -> dict:
    from .throughput import _subset

    data = data or common.find_data()
    threads = threads or os.cpu_count() or 1
    machine = common.machine_info()
    rounds = 2
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp, MotoS3() as s3:
        work = Path(tmp)
        train, _ = _subset(data["train"], train_rows, work / "data" / "train.tsv")
        evalf, _ = _subset(data["eval"], 64, work / "data" / "dev.tsv")
        s3.client().create_bucket(Bucket="bench-artifacts")
        ckpt_uri = "s3://bench-artifacts/checkpoints/bench-ckpt"
        args = [sys.executable, "-m", "bert_train", "--train", train, "--eval", evalf,
                "--model", SHAPE_MODEL[shape], "--vocab", data["vocab"], "--batch-size", str(batch_size),
                "--max-seq-length", "128", "--max-steps", "1000", "--epochs", "50", "--logging-steps", "1",
                "--checkpoint-every-steps", str(every), "--checkpoint-every-minutes", "600",
                "--checkpoint-uri", ckpt_uri, "--output-uri", str(work / "out"), "--work-dir", str(work / "work"),
                "--run-id", "bench-ckpt"]
        obs = _train_until_sigterm(args, common.child_env(threads, s3.env), every=every, rounds=rounds,
                                   timeout=timeout)
        sizes = {}
        for obj in s3.client().list_objects_v2(Bucket="bench-artifacts", Prefix="checkpoints/").get("Contents", []):
            sizes[obj["Key"]] = obj["Size"]
        parts = breakdown(shape, s3, "bench-artifacts", threads) if with_breakdown else None
    lines, done_ckpts, steps, step_at_kill = obs.lines, obs.done_ckpts, obs.steps, obs.step_at_kill
    log_text = "\n".join(x for _, x in lines)
    if obs.kill_at is None or obs.returncode != job.EXIT_INTERRUPTED:
        raise RuntimeError(f"trainer exited with {obs.returncode} (expected {job.EXIT_INTERRUPTED} after SIGTERM):\n"
                           f"{log_text[-4000:]}")
    m = EXIT_RE.search(log_text)
    self_reported = float(m.group(2)) if m else None
    # Step compute time: batch / samples-per-second of each single-step progress line (the
    # trainer times the step itself, not the checkpoint snapshot that follows it).
    step_secs = {s: batch_size / sps for s, (_, sps) in steps.items() if sps > 0}
    ckpt_steps = sorted(done_ckpts)

    def in_flight(s: int) -> bool:
        """A background write/upload overlapped step s (from after step k to its 'complete' line)."""
        if s - 1 not in steps:
            return False
        lo, hi = steps[s - 1][0], steps[s][0]
        return any(steps.get(k, (1e18,))[0] < hi and done_ckpts[k][1] > lo for k in ckpt_steps if k < s)

    clean = [v for s, v in step_secs.items() if s > 1 and not in_flight(s)]
    overlapped = {s: v for s, v in step_secs.items() if s > 1 and in_flight(s)}
    step_seconds = sorted(clean)[len(clean) // 2] if clean else None  # median
    # Blocking: the gap between the progress lines of steps k and k+1, minus step k+1's own time.
    blocking = {k: (steps[k + 1][0] - steps[k][0]) - step_secs[k + 1]
                for k in ckpt_steps if k + 1 in steps and k + 1 in step_secs and k < step_at_kill}
    ckpt_bytes: dict[str, int] = {}
    for key, size in sizes.items():
        name = key.split("/")[2]
        ckpt_bytes[name] = ckpt_bytes.get(name, 0) + size
    first = ckpt_steps[0] if ckpt_steps else None  # nothing else in flight for the first one
    one_bg = done_ckpts[first][0] if first is not None else None
    one_block = blocking.get(first, 0.0) if first is not None else None
    one_total = one_bg + max(one_block, 0.0) if one_bg is not None else None
    final_step = ckpt_steps[-1] if ckpt_steps else None

    defaults = _default_cadence()
    by_steps = step_seconds * defaults["steps"] if step_seconds else None
    interval = min(by_steps, defaults["minutes"] * 60) if by_steps else None
    background = [k for k in ckpt_steps if k <= step_at_kill]  # not the SIGTERM one
    extra = (sum(v - step_seconds for v in overlapped.values()) / len(background)
             if overlapped and step_seconds and background else 0.0)
    result = {
        "benchmark": "checkpoint",
        "machine": {**machine, "loadavg_end": common.loadavg()},
        "settings": {"shape": shape, "batch_size": batch_size, "checkpoint_every_steps": every,
                     "sigterm_when": f"{rounds} checkpoints complete, at a step boundary with no upload in flight",
                     "storage": "moto S3 server on 127.0.0.1 (real HTTP; runs in the benchmark process, so it "
                                "shares the 2 cores with the trainer)",
                     "threads": threads, "dataset": data["source"], "train_rows": train_rows,
                     "default_cadence": defaults},
        "checkpoint_bytes": ckpt_bytes,
        "checkpoint_background_seconds": {f"step-{s:09d}": done_ckpts[s][0] for s in ckpt_steps},
        "checkpoint_blocking_seconds": {f"step-{s:09d}": v for s, v in blocking.items()},
        "one_checkpoint": {"step": first, "blocking_snapshot_seconds": one_block,
                           "background_write_hash_upload_seconds": one_bg, "total_seconds": one_total},
        "breakdown_seconds": parts,
        "step_seconds_median": step_seconds,
        "step_seconds": {str(s): v for s, v in sorted(step_secs.items())},
        "steps_with_upload_in_flight": sorted(overlapped),
        "extra_step_seconds_per_checkpoint_from_background_upload": extra,
        "default_interval_seconds": interval,
        "default_interval_bound_by": "steps" if by_steps and interval == by_steps else "minutes",
        "share_blocking": (one_block / interval) if interval and one_block is not None else None,
        "share_upper_bound": (one_total / (interval + one_total)) if interval and one_total else None,
        "share_measured": ((max(one_block, 0.0) + max(extra, 0.0)) / interval)
        if interval and one_block is not None else None,
        "sigterm": {
            "step_at_kill": step_at_kill,
            "final_checkpoint_step": final_step,
            "final_checkpoint_background_seconds": done_ckpts[final_step][0] if final_step else None,
            "sigterm_to_exit_seconds": obs.exited_at - obs.kill_at,
            "trainer_reported_seconds": self_reported,
            "exit_code": obs.returncode,
        },
    }
    result["note"] = common.shared_machine_note(machine["loadavg_start"], result["machine"]["loadavg_end"],
                                                machine["cores"])
    return result


@dataclass
class Observed:
    """What the benchmark saw of one trainer process: its output lines and when each checkpoint
    completed and each step ended."""

    lines: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, line)
    done_ckpts: dict[int, tuple[float, float]] = field(default_factory=dict)  # step -> (seconds, seen at)
    steps: dict[int, tuple[float, float]] = field(default_factory=dict)  # step -> (seen at, samples/s)
    step_at_kill: int = 0
    kill_at: float | None = None
    exited_at: float = 0.0
    returncode: int | None = None


def _train_until_sigterm(args: list[str], env: dict, *, every: int, rounds: int, timeout: float) -> Observed:
    """Run the trainer, SIGTERM it once `rounds` checkpoints are complete in S3, at a step boundary
    with no upload in flight (as at the default cadence, where uploads finish long before the next
    checkpoint is due), and wait for it to exit."""
    obs = Observed()
    cond = threading.Condition()
    proc = subprocess.Popen(args, cwd=common.REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

    def reader():
        for line in proc.stdout:
            t = time.monotonic()
            with cond:
                obs.lines.append((t, line.rstrip("\n")))
                if m := CKPT_RE.search(line):
                    obs.done_ckpts[int(m.group(2))] = (float(m.group(3)), t)
                if m := PROGRESS_RE.search(line):
                    obs.steps[int(m.group(1))] = (t, float(m.group(2)))
                cond.notify_all()
        with cond:
            cond.notify_all()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    deadline = time.monotonic() + timeout
    with cond:
        while proc.poll() is None and time.monotonic() < deadline:
            latest = max(obs.steps, default=0)
            started = latest // every * every
            if len(obs.done_ckpts) >= rounds and started in obs.done_ckpts and latest > started:
                break
            cond.wait(timeout=0.2)
    obs.step_at_kill = max(obs.steps, default=0)
    if proc.poll() is None:
        obs.kill_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    obs.exited_at = time.monotonic()
    th.join(timeout=10)
    obs.returncode = proc.returncode
    return obs


def breakdown(shape: str, s3: MotoS3, bucket: str, threads: int) -> dict:
    """Where a checkpoint's time goes, step by step, with the container's own pieces: the
    snapshot (checkpoint.cpu_copy), the files a checkpoint holds, each serialised in memory and
    hashed beside its write (checkpoint.write_hashed: safetensors weights, checkpoint.torch_bytes
    for the optimizer state), the manifest from those digests (checkpoint.build_manifest), and the
    upload (storage.upload_files: the files concurrently, boto3 multipart). A diagnostic beside the
    end-to-end run."""
    import torch
    from safetensors.torch import save as safetensors_bytes

    from bert_train import checkpoint as ckpt
    from bert_train import modeling, storage

    torch.set_num_threads(threads)
    for k, v in s3.env.items():
        os.environ[k] = v
    storage.make_s3_client.cache_clear()
    torch.manual_seed(0)
    model = modeling.build_model(SHAPE_MODEL[shape], ["0", "1"], 30522)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    ids = torch.randint(1000, 2000, (2, 8))
    model(input_ids=ids, labels=torch.zeros(2, dtype=torch.long)).loss.backward()
    opt.step()  # AdamW state exists from the first step on
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-parts-") as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        model_state, opt_state = ckpt.cpu_copy(model.state_dict()), ckpt.cpu_copy(opt.state_dict())
        out["snapshot"] = time.perf_counter() - t
        digests = {}
        t = time.perf_counter()
        digests[ckpt.MODEL_FILE] = ckpt.write_hashed(d / ckpt.MODEL_FILE, safetensors_bytes(model_state))
        out["write_weights_safetensors_with_sha256"] = time.perf_counter() - t
        t = time.perf_counter()
        digests[ckpt.OPTIMIZER_FILE] = ckpt.write_hashed(d / ckpt.OPTIMIZER_FILE, ckpt.torch_bytes(opt_state))
        out["write_optimizer_torch_save_with_sha256"] = time.perf_counter() - t
        t = time.perf_counter()
        manifest = ckpt.build_manifest(d, 0, "breakdown", digests)
        out["manifest_from_digests"] = time.perf_counter() - t
        t = time.perf_counter()
        storage.upload_files([(p, f"s3://{bucket}/breakdown/{p.name}") for p in sorted(d.iterdir())])
        out["upload_to_moto"] = time.perf_counter() - t
        out["bytes"] = sum(m["bytes"] for m in manifest["files"].values())
    storage.make_s3_client.cache_clear()
    return out


def _default_cadence() -> dict:
    return {"steps": job.DEFAULT_CHECKPOINT_EVERY_STEPS, "minutes": job.DEFAULT_CHECKPOINT_EVERY_MINUTES}


def _percent(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f} %"


def report(r: dict) -> str:
    gb = {k: v / 1e9 for k, v in r["checkpoint_bytes"].items()}
    size = max(gb.values()) if gb else None
    s, one = r["sigterm"], r["one_checkpoint"]
    rows = [
        ["checkpoint size (weights + AdamW state + trainer state)", f"{size:.2f} GB" if size else "n/a"],
        ["one checkpoint: snapshot to CPU memory (training blocked)",
         common.fmt_num(one["blocking_snapshot_seconds"], 2) + " s"],
        ["one checkpoint: write + sha256 + upload (background thread)",
         common.fmt_num(one["background_write_hash_upload_seconds"], 1) + " s"],
        ["breakdown (same model, in the benchmark process)", "; ".join(
            f"{k} {v:.1f} s" for k, v in (r.get("breakdown_seconds") or {}).items() if k != "bytes") or "n/a"],
        ["every checkpoint, background seconds",
         ", ".join(f"{k}: {v:.1f}" for k, v in r["checkpoint_background_seconds"].items())],
        ["training step (median, no upload in flight)", common.fmt_num(r["step_seconds_median"], 2) + " s"],
        ["extra step time per checkpoint while the upload shares the CPU",
         common.fmt_num(r["extra_step_seconds_per_checkpoint_from_background_upload"], 1) + " s"],
        [f"default interval here ({job.DEFAULT_CHECKPOINT_EVERY_STEPS} steps or "
         f"{job.DEFAULT_CHECKPOINT_EVERY_MINUTES:g} min, whichever first)",
         f"{common.fmt_num(r['default_interval_seconds'], 0)} s (bound by {r['default_interval_bound_by']})"],
        ["share of training time: blocking only", _percent(r["share_blocking"])],
        ["share of training time: blocking + measured slowdown", _percent(r["share_measured"])],
        ["share of training time: upper bound (whole checkpoint as if blocking)", _percent(r["share_upper_bound"])],
        ["SIGTERM -> exit (benchmark: kill() to process exit)", common.fmt_num(s["sigterm_to_exit_seconds"], 1) + " s"],
        ["SIGTERM -> exit (logged by the trainer)", common.fmt_num(s["trainer_reported_seconds"], 2) + " s"],
        ["exit code", s["exit_code"]],
    ]
    st = r["settings"]
    out = common.table(["", "value"], rows, f"Checkpoints: {st['shape']} shape, batch {st['batch_size']}, "
                                             f"checkpoint every {st['checkpoint_every_steps']} steps; {st['storage']}")
    if r.get("note"):
        out += f"\nnote: {r['note']}"
    return out


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.checkpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPE_MODEL), default="base")
    p.add_argument("--every", type=int, default=4, help="checkpoint every N steps in the measured run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    return p


def main(args: argparse.Namespace) -> dict:
    print(f"[checkpoint] {args.shape}: real bert_train process, checkpoints to moto S3, then SIGTERM ...", flush=True)
    r = run(shape=args.shape, every=args.every, batch_size=args.batch_size, threads=args.threads)
    print(report(r), flush=True)
    path = common.write_result(f"checkpoint-{args.shape}" if args.shape != "base" else "checkpoint", r)
    print(f"[checkpoint] wrote {path.relative_to(common.REPO)}", flush=True)
    return r


if __name__ == "__main__":
    main(build_parser().parse_args())
