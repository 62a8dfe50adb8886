"""The throughput benchmark's core runs end to end on the tiny shape and the repo sample.

Structure and padding only: no timing assertion (timings belong in bench/results/, not in tests).
"""

from __future__ import annotations

import pytest

from tests.conftest import FIXTURES


@pytest.mark.slow
def test_throughput_compare_tiny_on_the_repo_sample():
    from bench import throughput

    data = {"train": str(FIXTURES / "sst2" / "train.tsv"), "eval": str(FIXTURES / "sst2" / "dev.tsv"),
            "vocab": str(FIXTURES / "vocab.txt"), "source": "repo sample"}
    r = throughput.compare(shape="tiny", steps=4, batch_size=16, eval_rows=32, train_rows=400, threads=1, data=data)

    assert r["settings"]["shape"] == "tiny" and r["settings"]["steps"] == 4 and r["settings"]["eval_rows"] == 32
    assert r["same_initial_weights"] is True
    for side in ("baseline", "contender"):
        s = r[side]
        assert s["steps"] == 4 and s["samples"] == 64
        for key in ("samples_per_second", "tokens_per_second", "padding_fraction", "peak_rss_mb", "eval_accuracy"):
            assert s[key] is not None, (side, key)
        assert 0 <= s["eval_accuracy"] <= 1
        assert s["real_tokens"] <= s["computed_tokens"]
    # The baseline pads every example to 128 tokens; the container pads each batch to its longest.
    assert r["baseline"]["computed_tokens"] == 4 * 16 * 128
    assert r["contender"]["padding_fraction"] < r["baseline"]["padding_fraction"]
    assert r["contender"]["precision"] == "fp32"
    assert set(r["ratio"]) >= {"samples_per_second", "tokens_per_second", "peak_rss"}
