"""The per-sample adaptive Runge-Kutta integrator on ODEs with known solutions."""
import math

import pytest
import torch

from samplers.rk import TABLEAUS, integrate


def _rms_norm(rtol, atol):
    def norm(err, y0, y1):
        s = atol + rtol * torch.maximum(y0[0].abs(), y1[0].abs())
        return (err[0] / s).pow(2).mean(dim=1).sqrt()
    return norm


@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_per_sample_rates_converge_and_are_independent(method):
    # y' = -k cos(tau) y per sample: y(T) = y0 exp(-k sin T); rates differ by 30x across the batch.
    k = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    # rows: the running samples the solver evaluates (finished ones are dropped from the batch).
    func = lambda tau, y, rows: (-(k[rows] * torch.cos(tau))[:, None] * y[0],)
    y0 = (torch.ones(3, 2, dtype=torch.float64),)
    errs = []
    for tol in (1e-4, 1e-7):
        sol = integrate(func, y0, 3.0, method=method, rtol=tol, atol=tol, norm=_rms_norm(tol, tol))
        exact = torch.exp(-k * math.sin(3.0))[:, None].expand(3, 2)
        errs.append((sol.y[0] - exact).abs().max().item())
    assert errs[1] < errs[0] and errs[1] < 1e-5
    # The slow sample alone takes its own steps and gets the same answer as inside the batch.
    func1 = lambda tau, y, rows: (-(0.1 * torch.cos(tau))[:, None] * y[0],)
    one = integrate(func1, (y0[0][:1],), 3.0, method=method, rtol=1e-4, atol=1e-4, norm=_rms_norm(1e-4, 1e-4))
    both = integrate(func, y0, 3.0, method=method, rtol=1e-4, atol=1e-4, norm=_rms_norm(1e-4, 1e-4))
    assert torch.equal(one.y[0][0], both.y[0][0]) and both.n_steps > one.n_steps


def test_non_finite_field_raises():
    func = lambda tau, y, rows: (torch.full_like(y[0], float("nan")),)
    with pytest.raises(RuntimeError, match="exceeded 50 steps"):
        integrate(func, (torch.ones(2, 2),), 1.0, method="dopri5", rtol=1e-5, atol=1e-5,
                  norm=_rms_norm(1e-5, 1e-5), max_steps=50)


@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_unused_quadrature_stages_are_skipped_without_changing_the_result(method):
    # y' = -y, q' = y^2 (q is never read by the field: a quadrature entry).
    calls = {"full": 0, "skipped": 0}

    def func(tau, y, rows, quadrature=True):
        calls["full" if quadrature else "skipped"] += 1
        return -y[0], (y[0] ** 2 if quadrature else None)

    y0 = (torch.ones(2, 1, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64))
    norm = lambda err, a, b: (err[0].abs() / 1e-8).amax(dim=1)  # noqa: E731
    plain = integrate(lambda tau, y, rows: func(tau, y, rows), y0, 2.0, method=method, rtol=1e-8, atol=1e-8, norm=norm)
    calls.update(full=0, skipped=0)
    skipping = integrate(func, y0, 2.0, method=method, rtol=1e-8, atol=1e-8, norm=norm, quadrature=True)
    assert torch.equal(plain.y[0], skipping.y[0]) and torch.equal(plain.y[1], skipping.y[1])
    torch.testing.assert_close(skipping.y[1][:, 0], torch.full((2,), 0.5 * (1 - math.exp(-4.0)), dtype=torch.float64))
    unused = TABLEAUS[method].quadrature_stages().count(False)
    assert calls["skipped"] == unused * skipping.n_steps
    assert (unused > 0) == (method == "dopri5")


def test_step_never_grows_right_after_a_rejection():
    # After a rejected attempt the retried step is accepted with a tiny error ratio: PI control
    # alone would grow it (up to MAX_FACTOR); the rule keeps it, so a rejection is not repeated at once.
    from samplers.rk import MAX_FACTOR, _next_factor
    ratio = torch.tensor([1e-6, 1e-6, 4.0], dtype=torch.float64)
    prev = torch.ones(3, dtype=torch.float64)
    accept = torch.tensor([True, True, False])
    rejected = torch.tensor([False, True, False])
    factor = _next_factor(ratio, prev, accept, rejected, 5)
    assert factor[0] == MAX_FACTOR and factor[1] == 1.0 and factor[2] < 1.0
