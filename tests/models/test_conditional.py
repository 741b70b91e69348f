"""Class-conditional score networks: the label embedding, NetworkScore.with_labels, label dropout,
and classifier-free guidance with one network."""
import pytest
import torch

from models import get_score_fn
from models.mlp import MLP
from models.score_fn import network_classes
from models.unet import SmallUNet
from samplers.guidance import classifier_free
from sde_lib import VPSDE, uses_discrete_schedule
from sde_lib.oracle import GaussianMixture
from training.losses import conditional_loss, dsm_loss
from training.optim import build_optimizer


def _randomised(model):
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.data.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("make,x", [(lambda k: SmallUNet(nf=16, num_classes=k), torch.randn(4, 1, 8, 8)),
                                    (lambda k: MLP(2, width=32, num_classes=k), torch.randn(4, 2))],
                         ids=["unet", "mlp"])
def test_unconditional_default_and_null_label(make, x):
    """num_classes=0 adds no weights and refuses labels; a fresh conditional network (zero embedding)
    is the unconditional one at every label, and the null label is the default."""
    torch.manual_seed(0)
    plain = make(0)
    torch.manual_seed(0)
    cond = make(10)
    assert set(cond.state_dict()) - set(plain.state_dict()) == {"class_embed.table.weight"}
    assert network_classes(plain) == 0 and network_classes(cond) == 10
    cond.load_state_dict(_randomised(plain).state_dict(), strict=False)
    t = torch.rand(4) * 999
    with torch.no_grad():
        ref = plain(x, t)
        assert torch.equal(cond(x, t), ref) and torch.equal(cond(x, t, torch.tensor([0, 3, 9, 10])), ref)
        with pytest.raises(ValueError, match="unconditional"):
            plain(x, t, torch.zeros(4, dtype=torch.long))
        torch.nn.init.normal_(cond.class_embed.table.weight)
        a, b = cond(x, t, torch.tensor([1, 1, 1, 1])), cond(x, t, torch.tensor([2, 2, 2, 2]))
        assert not torch.allclose(a, b) and torch.equal(cond(x, t), cond(x, t, torch.full((4,), 10)))


def test_with_labels_keeps_the_score_interface():
    sde = VPSDE()
    model = MLP(2, width=32, num_classes=3)
    torch.nn.init.normal_(model.class_embed.table.weight)
    score = get_score_fn(sde, model, discrete_schedule=True)
    x, t = torch.randn(4, 2), torch.full((4,), 0.5)
    y = torch.tensor([0, 2, 1, 3])
    labelled = score.with_labels(y)
    with torch.no_grad():
        out = labelled(x, t)
        for b in range(4):
            assert torch.allclose(out[b], score.with_labels(y[b:b + 1])(x[b:b + 1], t[b:b + 1])[0], atol=1e-6)
        assert torch.allclose(labelled.restrict(torch.tensor([1, 3]))(x[[1, 3]], t[[1, 3]]), out[[1, 3]], atol=1e-6)
        assert torch.equal(score(x, t), score.with_labels(torch.full((4,), 3))(x, t))  # no labels = null label
    assert uses_discrete_schedule(labelled) and score.labels is None
    with pytest.raises(ValueError, match="restrict"):
        labelled(x[:2], t[:2])
    with pytest.raises(ValueError, match=r"\[0, 2\] or the null label 3"):
        score.with_labels(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="1-D integer"):
        score.with_labels(torch.zeros(4))
    with pytest.raises(ValueError, match="unconditional"):
        get_score_fn(sde, MLP(2, width=8)).with_labels(torch.zeros(4, dtype=torch.long))


def test_classifier_free_with_one_network():
    """Scale 1 is the labelled score exactly, scale 0 the null-label score exactly."""
    sde = VPSDE()
    model = _randomised(SmallUNet(nf=16, num_classes=10))
    score = get_score_fn(sde, model, time_scale=999.0)
    x, t, y = torch.randn(3, 1, 8, 8), torch.full((3,), 0.4), torch.tensor([7, 0, 3])
    with torch.no_grad():
        cond, uncond = score.with_labels(y), score
        assert torch.equal(classifier_free(cond, uncond, 1.0)(x, t), cond(x, t))
        assert torch.equal(classifier_free(cond, uncond, 0.0)(x, t), uncond(x, t))
        mixed = classifier_free(cond, uncond, 2.5)(x, t)
        assert torch.allclose(mixed, 2.5 * cond(x, t) - 1.5 * uncond(x, t), atol=1e-4)


def test_label_dropout():
    """Each label becomes the null label with probability label_dropout; 0 and 1 are exact."""
    seen = []

    class Recorder:
        def with_labels(self, labels, check=True):
            seen.append(labels)
            return lambda x, t: torch.zeros_like(x)

    base = lambda score_fn, x0, g: score_fn(x0, None).sum(1)  # noqa: E731
    x0, labels = torch.zeros(20000, 2), torch.randint(0, 10, (20000,))
    g = torch.Generator().manual_seed(0)
    for p in (0.0, 0.1, 1.0):
        conditional_loss(base, num_classes=10, label_dropout=p)(Recorder(), (x0, labels), g)
        null = seen[-1] == 10
        assert abs(float(null.float().mean()) - p) < 0.01 and torch.equal(seen[-1][~null], labels[~null])
    with pytest.raises(ValueError, match="label_dropout"):
        conditional_loss(base, num_classes=10, label_dropout=1.5)


def test_conditional_training_learns_the_class_scores():
    """Conditional DSM with label dropout on a labelled 2-D mixture: after training, the labelled
    score is close to its component's exact score and the null-label score to the mixture's
    (measured squared errors at t = 0.3: 0.047 / 0.057 / 0.049 against the unconditional score's 0.28 /
    0.68 / 0.96; null label 0.17 against 5.0 for a wrong class)."""
    torch.manual_seed(0)
    gm, sde = GaussianMixture.random(2, 3, seed=4), VPSDE()
    model = MLP(2, width=64, depth=2, num_classes=3)
    score = get_score_fn(sde, model, time_scale=999.0)
    loss_fn = conditional_loss(dsm_loss(sde), num_classes=3, label_dropout=0.2)
    opt, g = build_optimizer(model, lr=3e-3), torch.Generator().manual_seed(0)
    parts = [gm.component(j) for j in range(3)]
    counts = torch.multinomial(gm.weights, 400 * 256, replacement=True, generator=g).bincount(minlength=3)
    data = torch.cat([parts[j].sample(int(counts[j]), g) for j in range(3)])
    classes = torch.cat([torch.full((int(counts[j]),), j) for j in range(3)])
    order = torch.randperm(len(data), generator=g)
    for batch in order.split(256):
        opt.zero_grad()
        loss_fn(score, (data[batch], classes[batch]), g).mean().backward()
        opt.step()
    t = torch.full((500,), 0.3)
    with torch.no_grad():
        xm = gm.marginal(sde, 0.3).sample(500, g)
        null = (score(xm, t) - gm.score_t(sde, xm, t)).pow(2).sum(1).mean()
        wrong = (score.with_labels(torch.zeros(500, dtype=torch.long))(xm, t) - gm.score_t(sde, xm, t)).pow(2).sum(1).mean()
        for j in range(3):
            x = parts[j].marginal(sde, 0.3).sample(500, g)
            exact = parts[j].score_t(sde, x, t)
            own = (score.with_labels(torch.full((500,), j))(x, t) - exact).pow(2).sum(1).mean()
            other = (gm.score_t(sde, x, t) - exact).pow(2).sum(1).mean()  # the unconditional score's error
            assert own < 0.25 * other, (j, float(own), float(other))
        assert null < 0.25 * wrong, (float(null), float(wrong))
