"""The per-SDE schedule memo: cached runs equal uncached ones and follow changes of the SDE."""
import gc

import pytest
import torch

import samplers.plan_cache as plan_cache
from samplers import sample
from sde_lib import VESDE, VPSDE

CASES = [("ddim", {}), ("ddim", {"eta": 1.0}), ("dpm_solver", {"order": 3}),
         ("dpm_solver", {"order": 3, "corrector": True, "power": 0.8, "eps": "auto"}),
         ("ode", {"solver": "euler", "denoise": True}), ("ode", {"solver": "heun"})]


def _run(method, options, sde, gm, z, steps=8):
    g = torch.Generator().manual_seed(1)
    return sample(method, gm.score_fn(sde), sde, tuple(z.shape), x_T=z, steps=steps, generator=g, **options).samples


@pytest.mark.parametrize("method,options", CASES)
def test_cached_run_equals_a_fresh_one(gm2, method, options):
    sde, z = VPSDE(), torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    first, second = _run(method, options, sde, gm2, z), _run(method, options, sde, gm2, z)  # second: cached
    assert plan_cache._TABLES[sde]
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    # A new SDE object starts with an empty table, so this run builds everything afresh.
    torch.testing.assert_close(_run(method, options, VPSDE(), gm2, z), first, rtol=0, atol=0)


def test_changing_the_sde_on_the_same_object_changes_the_schedule(gm2):
    sde, z = VPSDE(), torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    before = _run("dpm_solver", {}, sde, gm2, z)
    sde.beta_max = 10.0
    changed = _run("dpm_solver", {}, sde, gm2, z)
    torch.testing.assert_close(changed, _run("dpm_solver", {}, VPSDE(beta_max=10.0), gm2, z), rtol=0, atol=0)
    assert not torch.allclose(before, changed)


def test_schedules_are_per_sde_object_and_released_with_it():
    sde = VESDE()
    plan_cache.memo(sde, "k", lambda: [1.0])
    assert sde in plan_cache._TABLES
    calls = []
    assert plan_cache.memo(sde, "k", lambda: calls.append(1) or [2.0]) == [1.0] and not calls
    del sde
    gc.collect()
    assert not any(isinstance(k, VESDE) for k in plan_cache._TABLES.keys())


def test_large_device_tensors_are_rebuilt_not_kept():
    sde, built = VPSDE(), []
    for _ in range(2):
        plan_cache.memo_tensor(sde, "big", lambda: built.append(1) or torch.zeros(1),
                               elements=plan_cache.MAX_CACHED_ELEMENTS + 1)
    assert len(built) == 2
