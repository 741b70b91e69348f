"""Batch iterators: determinism, per-epoch reshuffle, resumable state, rank sharding, eval order."""

import pytest
import torch

from sde_data import ImageDataset, ToyDataset, eval_batches, infinite_batches

N = 23


def ids_dataset(n=N):
    """Images whose every pixel holds the item's index, so a batch reveals which items it has."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageDataset(images=images, labels=None, name="ids")


def ids(batch):
    return (batch[:, 0, 0, 0] * 255).round().long().tolist()


def stream(dataset=None, seed=0, **kw):
    return infinite_batches(dataset or ids_dataset(), 5, generator=torch.Generator().manual_seed(seed), **kw)


def test_batches_are_floats_and_deterministic():
    a, b, c = stream(), stream(), stream(seed=1)
    first = next(a)
    assert first.shape == (5, 1, 2, 2) and first.dtype == torch.float32
    assert 0 <= first.min() and first.max() <= 1
    seq_a = [ids(next(a)) for _ in range(10)]
    next(b)
    assert seq_a == [ids(next(b)) for _ in range(10)]
    assert [ids(next(c)) for _ in range(11)] != [ids(first)] + seq_a


def test_each_epoch_is_a_fresh_permutation():
    it = stream()  # 23 items, batches of 5, drop_last: 4 batches = 20 items per epoch
    assert it.steps_per_epoch == 4
    epochs = [sum((ids(next(it)) for _ in range(4)), []) for _ in range(3)]
    for e in epochs:
        assert len(set(e)) == 20 and set(e) <= set(range(N))  # no repeats within an epoch
    assert epochs[0] != epochs[1] != epochs[2]
    assert it.epoch == 3 and it.step == 0


def test_drop_last_false_covers_everything():
    it = stream(drop_last=False)
    sizes, seen = [], []
    for _ in range(it.steps_per_epoch):
        b = ids(next(it))
        sizes.append(len(b))
        seen += b
    assert sizes == [5, 5, 5, 5, 3] and sorted(seen) == list(range(N))


@pytest.mark.parametrize("flip,deq", [(False, False), (True, True)])
def test_state_restore_gives_identical_continuation(flip, deq):
    data = ImageDataset(images=torch.randint(0, 256, (N, 3, 4, 4), dtype=torch.uint8), labels=None, name="r")
    ref = stream(data, random_flip=flip, uniform_dequantization=deq)
    run = stream(data, random_flip=flip, uniform_dequantization=deq)
    for _ in range(7):  # into the second epoch
        next(run)
    state = run.state_dict()
    resumed = stream(data, seed=99, random_flip=flip, uniform_dequantization=deq)  # other seed
    resumed.load_state_dict(state)
    expected = [next(ref) for _ in range(7 + 9)][7:]
    for want in expected:
        assert torch.equal(next(resumed), want)


def test_restore_rejects_a_different_layout():
    state = stream().state_dict()
    it = infinite_batches(ids_dataset(), 4, generator=torch.Generator())
    with pytest.raises(ValueError, match="batch_size=5.*batch_size=4"):
        it.load_state_dict(state)


def test_dequantization_and_flip_on_images():
    data = ImageDataset(images=torch.randint(0, 256, (N, 1, 3, 3), dtype=torch.uint8), labels=None, name="r")
    it = stream(data, uniform_dequantization=True)
    idx = it.indices(0, 0)
    x = next(it)
    low = data.images[idx].float() / 256
    assert (x >= low).all() and (x < low + 1 / 256).all() and not torch.equal(x, low)
    flips = stream(data, random_flip=True)
    y = next(flips)
    plain = data.images[flips.indices(0, 0)].float() / 255
    same, mirrored = (y == plain).flatten(1).all(1), (y == plain.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all()


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_are_disjoint_and_cover(world_size):
    ranks = [stream(rank=r, world_size=world_size, drop_last=False) for r in range(world_size)]
    steps = ranks[0].steps_per_epoch
    per_step = [[ids(next(it)) for it in ranks] for _ in range(2 * steps)]
    for epoch in (per_step[:steps], per_step[steps:]):
        union = []
        for shares in epoch:
            assert len({len(s) for s in shares}) == 1  # equal shares keep ranks in step
            union += sum(shares, [])
        assert set(union) == set(range(N))
    full = stream(rank=0, world_size=world_size, drop_last=True)
    global_order = full.permutation(0)
    one = [[ids(next(it)) for it in
            [stream(rank=r, world_size=world_size) for r in range(world_size)]]]
    flat = sum(one[0], [])
    assert len(flat) == len(set(flat)) == 5 * world_size  # disjoint within a global batch
    # rank r holds every world_size-th item of the global permutation
    for r, share in enumerate(one[0]):
        assert share == global_order[:5 * world_size][r::world_size].tolist()


def test_toys_and_option_errors():
    toy = ToyDataset(x=torch.randn(12, 2), name="t")
    it = infinite_batches(toy, 4, generator=torch.Generator().manual_seed(0))
    b = next(it)
    assert b.dtype == torch.float32 and any(torch.equal(b[0], row) for row in toy.x)
    with pytest.raises(ValueError, match="images only"):
        infinite_batches(toy, 4, generator=torch.Generator(), random_flip=True)
    with pytest.raises(ValueError, match="has 12"):
        infinite_batches(toy, 5, generator=torch.Generator(), world_size=3)
    with pytest.raises(ValueError, match="rank"):
        infinite_batches(toy, 2, generator=torch.Generator(), rank=2, world_size=2)


def test_eval_batches_ordered_sharded_resumable():
    data = ids_dataset()
    got = list(eval_batches(data, 5))
    assert [i.tolist() for i, _ in got] == [list(range(k, min(k + 5, N))) for k in range(0, N, 5)]
    assert all(x.dtype == torch.uint8 and x[:, 0, 0, 0].tolist() == i.tolist() for i, x in got)
    assert [i.tolist() for i, _ in eval_batches(data, 5, start=20)] == [[20, 21, 22]]
    shards = [list(eval_batches(data, 4, start=3, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # same number of batches on every rank
    flat = [j for s in shards for i, _ in s for j in i.tolist()]
    assert sorted(flat) == list(range(3, N))
    with pytest.raises(ValueError, match="start"):
        next(eval_batches(data, 4, start=N + 1))
