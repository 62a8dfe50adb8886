"""What every benchmark part shares: where the data is, machine facts, tables, result files."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FIXTURES = REPO / "tests" / "fixtures"
CONTAINER_DIR = REPO / "training_container"
# Developers and CI have the full SST-2 files beside the repo; users do not.
SHARED_DATA = REPO.parent / "shared" / "data"

# Variables a Batch job definition sets; a benchmark run must not inherit them from the shell.
JOB_ENV = ("RUN_ID", "AWS_BATCH_JOB_ID", "ARTIFACTS_URI", "CHECKPOINT_URI", "CHECKPOINT_EVERY_STEPS",
           "CHECKPOINT_EVERY_MINUTES", "BERT_BATCH_PROFILE", "METRICS_NAMESPACE", "BERT_TRAIN_WORK_DIR",
           "WORLD_SIZE", "RANK", "LOCAL_RANK", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def find_data(prefer_shared: bool = True) -> dict:
    """SST-2 train/dev and a WordPiece vocab: ../shared/data when present, else the repo sample."""
    shared = {
        "train": SHARED_DATA / "sst2" / "train.tsv",
        "eval": SHARED_DATA / "sst2" / "dev.tsv",
        "vocab": SHARED_DATA / "bert-base-uncased-vocab.txt",
    }
    if prefer_shared and all(p.is_file() for p in shared.values()):
        return {**{k: str(v) for k, v in shared.items()}, "source": "shared: ../shared/data (full SST-2 files)"}
    return {
        "train": str(FIXTURES / "sst2" / "train.tsv"),
        "eval": str(FIXTURES / "sst2" / "dev.tsv"),
        "vocab": str(FIXTURES / "vocab.txt"),
        "source": "repo sample: tests/fixtures (2,000 train / 400 dev rows)",
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_precision() -> str:
    """bf16 where the hardware runs it natively (Ampere+ GPUs, CPUs with AVX512-BF16/AMX), else fp32."""
    import torch

    from bert_train.runtime import cpu_has_native_bf16

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    info = {
        "date_utc": now(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "mem_total_gb": mem_total_gb(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_start": loadavg(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def shared_machine_note(start: list[float] | None, end: list[float] | None, cores: int | None) -> str | None:
    """A note when the 1-minute load was above the core count: other work shared the CPU."""
    peak = max((x[0] for x in (start, end) if x), default=0.0)
    if cores and peak > cores * 0.75:
        return (f"taken on a shared machine: 1-minute load average up to {peak:.1f} on {cores} cores; absolute "
                "times are noisy, the side-by-side ratios are what the claims rest on")
    return None


def write_result(name: str, data: dict, results_dir: Path | None = None) -> Path:
    out = (results_dir or RESULTS) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return out


def read_result(name: str, results_dir: Path | None = None) -> dict | None:
    p = (results_dir or RESULTS) / f"{name}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [] if title is None else [title, ""]

    def fmt(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |"

    lines.append(fmt(cells[0]))
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.extend(fmt(r) for r in cells[1:])
    return "\n".join(lines)


def child_env(threads: int, extra: dict | None = None) -> dict:
    """Environment of a benchmark subprocess: offline, a fixed thread count, no job variables."""
    env = {k: v for k, v in os.environ.items() if k not in JOB_ENV}
    env.update({
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), str(CONTAINER_DIR), os.environ.get("PYTHONPATH", ""))
                                      if p),
    })
    env.update(extra or {})
    return env


def fmt_num(x, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"
