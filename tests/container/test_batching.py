"""Length-grouped batching: repeatable, DDP-aware, and much less padding than random batches."""

from __future__ import annotations

import random

from bert_train.data import epoch_batches, padded_tokens, split_step_batch


def _lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(3, 64) for _ in range(n)]


def test_batches_are_a_function_of_seed_and_epoch():
    lengths = _lengths()
    a = epoch_batches(lengths, 32, seed=1, epoch=0)
    assert a == epoch_batches(lengths, 32, seed=1, epoch=0)
    assert a != epoch_batches(lengths, 32, seed=1, epoch=1)
    assert a != epoch_batches(lengths, 32, seed=2, epoch=0)
    # every full batch is used once, the incomplete remainder (1000 % 32 = 8) is dropped
    flat = [i for b in a for i in b]
    assert len(a) == 1000 // 32 and all(len(b) == 32 for b in a)
    assert len(set(flat)) == len(flat) == 992
    # the longest batch comes first, so an out-of-memory shows at step 1
    assert max(lengths[i] for i in a[0]) == max(lengths)


def test_length_grouping_cuts_padding():
    lengths = _lengths(4000)
    grouped = epoch_batches(lengths, 32, seed=3, epoch=0)
    rng = random.Random(3)
    order = list(range(4000))
    rng.shuffle(order)
    shuffled = [order[k:k + 32] for k in range(0, 4000 - 31, 32)]

    def padding(batches):
        real = sum(lengths[i] for b in batches for i in b)
        return 1 - real / sum(padded_tokens(b, lengths, 1, 1) for b in batches)

    assert padding(shuffled) > 0.3
    assert padding(grouped) < 0.05


def test_ranks_and_micro_batches_partition_the_global_batch():
    batch = list(range(100, 132))
    for world, accum in ((1, 1), (2, 1), (2, 2), (4, 2)):
        parts = [m for r in range(world) for m in split_step_batch(batch, accum, world, r)]
        assert sorted(i for m in parts for i in m) == batch
        assert {len(m) for m in parts} == {32 // world // accum}
