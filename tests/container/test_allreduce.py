"""`python -m bert_train allreduce-bench`: the all-reduce sweep behind bench/nccl.sh (bus bandwidth
as nccl-tests reports it), with an injected clock; the real gloo run is bench/nccl.sh --smoke's
test in tests/test_bench_smoke.py."""

from __future__ import annotations

import pytest

from bert_train import allreduce


def test_bus_bandwidth_is_the_algorithm_bandwidth_times_2_n_minus_1_over_n():
    # 1 GB in 0.1 s is 10 GB/s of algorithm bandwidth; a ring all-reduce over 8 ranks moves
    # 2 x 7/8 of the data over each link.
    assert allreduce.bus_bandwidth(10**9, 0.1, 8) == pytest.approx(10 * 2 * 7 / 8)


def test_sizes_double_from_the_smallest_to_the_largest():
    assert allreduce.message_sizes(1024, 8192) == [1024, 2048, 4096, 8192]


def test_the_sweep_times_each_size_after_its_warm_up_with_the_injected_clock():
    calls: list[int] = []
    ticks = iter(float(t) for t in range(100))

    def all_reduce(size: int) -> None:
        calls.append(size)

    rows = allreduce.sweep([1024, 4096], world_size=4, iterations=3, warmup=1,
                           all_reduce=all_reduce, synchronize=lambda: None, clock=lambda: next(ticks))
    assert calls == [1024] * 4 + [4096] * 4  # warm-up, then the timed iterations
    # one clock tick between the start and the end of each size's timed loop: 1 s / 3 iterations
    assert [row["bytes"] for row in rows] == [1024, 4096]
    assert rows[0]["seconds"] == pytest.approx(1 / 3)
    assert rows[1]["busbw_gbps"] == pytest.approx(allreduce.bus_bandwidth(4096, 1 / 3, 4))


@pytest.mark.parametrize(("argv", "message"), [
    (["--min-bytes", "4096", "--max-bytes", "1024"],
     "allreduce-bench: error: --min-bytes 4096 is larger than --max-bytes 1024"),
    (["--iterations", "0"], "allreduce-bench: error: --iterations 0 must be at least 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, message):
    assert allreduce.main(argv) == 2
    assert capsys.readouterr().err == message + "\n"


def test_one_process_is_refused_a_bandwidth_needs_two(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert allreduce.main([]) == 2
    assert capsys.readouterr().err == (
        "allreduce-bench: error: WORLD_SIZE is 1: run it under torchrun with 2 or more processes\n")
