"""In-process checks of the pieces that make N ranks equal one process: the rank-sharded data
stream (with image augmentations), its world-size-free resume position, and the training noise
of the losses drawn for the global batch."""
import pytest
import torch

from sde_data import ImageDataset, ToyDataset, infinite_batches
from sde_lib import get_sde
from training.losses import get_loss_fn

N = 37


def _images(n=N):
    return ImageDataset(images=torch.randint(0, 256, (n, 1, 3, 3), dtype=torch.uint8,
                                             generator=torch.Generator().manual_seed(1)), labels=None, name="r")


def _streams(data, batch_size, world_size, **kw):
    return [infinite_batches(data, batch_size, generator=torch.Generator().manual_seed(5), rank=r,
                             world_size=world_size, **kw) for r in range(world_size)]


def _interleave(parts):
    """Rank r holds global rows r, r + W, ...: put them back in global order."""
    out = torch.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    for r, p in enumerate(parts):
        out[r::len(parts)] = p
    return out


@pytest.mark.parametrize("augment", [False, True])
def test_ranks_together_give_the_one_process_batches(augment):
    kw = dict(random_flip=augment, uniform_dequantization=augment)
    (one,) = _streams(_images(), 8, 1, **kw)
    two = _streams(_images(), 4, 2, **kw)
    for _ in range(10):  # several epochs of 4 batches
        assert torch.equal(_interleave([next(s) for s in two]), next(one))


@pytest.mark.parametrize("saved,resumed", [((4, 2), (8, 1)), ((8, 1), (4, 2)), ((2, 4), (8, 1))])
def test_position_converts_between_world_sizes_with_the_same_global_batch(saved, resumed):
    data = _images()
    (ref,) = _streams(data, 8, 1, uniform_dequantization=True)
    expected = [next(ref) for _ in range(11)][6:]
    old = _streams(data, *saved, uniform_dequantization=True)
    for _ in range(6):  # into the second epoch
        [next(s) for s in old]
    new = _streams(data, *resumed, uniform_dequantization=True)
    for s in new:
        s.load_state_dict(old[0].state_dict())
    for want in expected:
        assert torch.equal(_interleave([next(s) for s in new]), want)


def test_position_survives_a_changed_global_batch():
    data = ToyDataset(x=torch.arange(N, dtype=torch.float32)[:, None], name="ids")
    (one,) = _streams(data, 6, 1)
    seen = [next(one) for _ in range(3)]  # 18 items of epoch 0 consumed
    two = _streams(data, 6, 2)  # global batch 12: continues at item 18, epoch ends after item 30
    for s in two:
        s.load_state_dict(one.state_dict())
    order = one.permutation(0)
    nxt = _interleave([next(s) for s in two])[:, 0].long()
    assert torch.equal(nxt, order[18:30])
    assert set(torch.cat(seen)[:, 0].long().tolist()).isdisjoint(nxt.tolist())
    assert two[0].state_dict()["epoch"] == 1 and two[0].state_dict()["items"] == 0  # 30 + 12 > 37


def test_same_world_size_other_batch_is_still_refused_and_old_states_load():
    (a,) = _streams(_images(), 8, 1)
    next(a)
    (b,) = _streams(_images(), 4, 1)
    with pytest.raises(ValueError, match="batch_size=8.*batch_size=4"):
        b.load_state_dict(a.state_dict())
    old = {k: v for k, v in a.state_dict().items() if k != "items"}  # written before `items` existed
    (c,) = _streams(_images(), 8, 1)
    c.load_state_dict(old)
    assert torch.equal(next(c), next(a))


@pytest.mark.parametrize("name,sde_name,options", [
    ("dsm", "vpsde", {}), ("dsm", "subvpsde", dict(likelihood_weighting=True, importance_sampling=True)),
    ("ddpm", "vpsde", {}), ("smld", "vesde", {})])
def test_loss_shards_draw_the_global_noise(name, sde_name, options):
    sde = get_sde(sde_name)
    score_fn = lambda x, t: -x * (1 + t[:, None, None, None])  # noqa: E731 (any fixed function of (x, t))
    x0 = torch.randn(12, 1, 3, 3, generator=torch.Generator().manual_seed(2))

    def per_sample(rank, world):
        loss_fn = get_loss_fn(name, sde, rank=rank, world_size=world, **options)
        return loss_fn(score_fn, x0[rank::world], torch.Generator().manual_seed(3))

    one = per_sample(0, 1)
    for world in (2, 3):
        assert torch.allclose(_interleave([per_sample(r, world)[:, None] for r in range(world)])[:, 0], one,
                              rtol=1e-6, atol=0)
