"""What the trainer prints: EMF records from the metrics contract, only where they are true."""

from __future__ import annotations

import io
import json

import pytest
import torch

from bert_train.telemetry import Telemetry, gpu_metrics
from bertbatch_contract import metrics
from bertbatch_contract.progress import Progress, parse_progress


def test_emf_and_progress_lines_from_rank_0_only():
    out = io.StringIO()
    t = Telemetry(enabled=True, namespace="NS", profile="dev", run_id="r1", stream=out)
    t.metrics({"TrainLoss": 0.5, "SamplesPerSecond": 100.0})
    t.progress(Progress(1, 3, 10, 90, 0.5, 100.0, 65))
    emf, progress = out.getvalue().splitlines()
    record = json.loads(emf)
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "NS"
    assert (record["Profile"], record["RunId"], record["TrainLoss"]) == ("dev", "r1", 0.5)
    assert parse_progress(progress).step == 10 and parse_progress(progress).eta_seconds == 65
    with pytest.raises(KeyError):
        t.metrics({"TrainLos": 1.0})  # a typo would create a metric no dashboard shows

    silent = io.StringIO()
    other_rank = Telemetry(enabled=False, namespace="NS", profile="dev", run_id="r1", stream=silent)
    other_rank.metrics({"TrainLoss": 0.5})
    other_rank.progress(Progress(1, 3, 10, 90, 0.5, 100.0, 65))
    assert silent.getvalue() == ""


def test_gpu_metrics_only_on_a_gpu(monkeypatch):
    assert gpu_metrics(torch.device("cpu")) == {}
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "utilization", lambda device=None: 87)
    assert gpu_metrics(torch.device("cuda", 0)) == {metrics.GPU_MEMORY_USED.name: 3072.0,
                                                    metrics.GPU_UTILIZATION.name: 87.0}

    def no_nvml(device=None):
        raise ModuleNotFoundError("pynvml")

    monkeypatch.setattr(torch.cuda, "utilization", no_nvml)
    assert gpu_metrics(torch.device("cuda", 0)) == {metrics.GPU_MEMORY_USED.name: 3072.0}  # no made-up value
