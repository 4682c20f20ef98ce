"""The latency model against a simulated device whose costs are known exactly; cost profiles (interpolation, JSON);
positional acceptance; the roofline; bad profiles raise ValueError."""

import numpy as np
import pytest

from specjax.costs.profile import CostCurve, CostProfile, DeviceProfile, ProfileEntry
from specjax.costs.latency import (AcceptanceProfile, Workload, ar_plan, break_even_tau, chain_plan, expected_rounds,
    predict, speedup, tree_plan)
from specjax.model.config import named_config
from specjax.costs.roofline import ACCELERATORS, eagle_shape, model_shape, roofline_profile


class SimulatedDevice:
    """A device whose call costs are known functions of (T, S); a decode on it is a tally of its calls."""

    def __init__(self, slope_s=3e-6):
        self.slope_s = slope_s                       # seconds per context slot

    def target(self, t, s):
        return 0.010 + 0.004 * (t - 1) + 0.0015 * max(t - 8, 0) + self.slope_s * s

    def drafter(self, t, s):
        return 0.002 + 0.0003 * t + 0.1 * self.slope_s * s

    def level(self, t, s):
        return 0.0025 + 0.0005 * t + 0.1 * self.slope_s * s

    round_overhead = 0.0007
    run_overhead = 0.003

    def profile(self, contexts=(128, 512), grid=tuple(range(1, 65))) -> DeviceProfile:
        """What `specjax profile` would measure on this device (no noise)."""
        entries = [ProfileEntry(s, 1, *(CostCurve(grid, tuple(f(t, s) for t in grid), n) for f, n in
                                        ((self.target, "target"), (self.drafter, "drafter"),
                                         (self.level, "tree_level")))) for s in contexts]
        return DeviceProfile("simulated", "measured", tuple(entries), self.round_overhead, self.run_overhead)

    def decode(self, s, width, new_tokens, emitted, drafter_steps=(), tree_levels=(), verify_tokens=1):
        """Seconds of a run whose round r emits emitted[r] tokens (the prefill emits the first token)."""
        seconds = self.target(width, s) + self.run_overhead + (self.drafter(width, s) if drafter_steps or
                                                               tree_levels else 0.0)
        made, r = 1, 0
        while made < new_tokens:
            seconds += (sum(self.drafter(t, s) for t in drafter_steps) + sum(self.level(t, s) for t in tree_levels)
                        + self.target(verify_tokens, s) + self.round_overhead)
            made += emitted[r % len(emitted)]
            r += 1
        return seconds


DEVICE = SimulatedDevice()
PLANS = [ar_plan(), chain_plan(1), chain_plan(4), tree_plan("tree", [1, 4, 8, 8], 24)]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.name)
@pytest.mark.parametrize("context", [128, 200, 512])
def test_round_terms_reproduce_the_simulated_device(plan, context):
    prof = DEVICE.profile().at(context)
    pred = predict(prof, plan, 1.0)
    s = context
    assert pred.verify_s == pytest.approx(DEVICE.target(plan.verify_tokens, s), rel=1e-12)
    expect_draft = sum(DEVICE.drafter(t, s) for t in plan.drafter_steps) + sum(DEVICE.level(t, s)
                                                                              for t in plan.tree_levels)
    assert pred.draft_s == pytest.approx(expect_draft, rel=1e-12, abs=1e-15)
    assert pred.overhead_s == DEVICE.round_overhead


@pytest.mark.parametrize("plan,step", [(ar_plan(), 1), (chain_plan(4), 3), (tree_plan("t", [1, 4, 8], 20), 2)],
                         ids=lambda x: getattr(x, "name", str(x)))
def test_run_prediction_is_exact_on_the_simulated_device(plan, step):
    """Rounds emitting a fixed `step` tokens: averaged over a full cycle of run lengths the predicted run time is
    the simulated one exactly (the rounds formula is exact on the integer lattice); each run is within a round."""
    s, width = 300, 64
    prof = DEVICE.profile().at(s)
    lengths = range(41, 41 + step)
    kw = dict(drafter_steps=plan.drafter_steps, tree_levels=plan.tree_levels, verify_tokens=plan.verify_tokens)
    sim = [DEVICE.decode(s, width, n, [step], **kw) for n in lengths]
    pred = [predict(prof, plan, float(step), Workload(n, width)) for n in lengths]
    assert np.mean([p.run_s for p in pred]) == pytest.approx(np.mean(sim), rel=1e-12)
    for p, t in zip(pred, sim):
        assert abs(p.run_s - t) < p.round_s
    # the named terms add up
    p = pred[0]
    assert p.run_s == pytest.approx(p.prefill_s + p.rounds * (p.draft_s + p.verify_s + p.overhead_s))
    assert p.tokens_per_s == pytest.approx(41 / p.run_s)


def test_leaving_out_a_term_breaks_the_match():
    """Negative control: a profile without the round overhead no longer reproduces the device."""
    s, width, n = 300, 64, 49
    full = DEVICE.profile().at(s)
    bare = CostProfile(full.target, full.drafter, full.tree_level, 0.0, full.run_overhead, s)
    sim = DEVICE.decode(s, width, n, [1])
    assert predict(full, ar_plan(), 1.0, Workload(n, width)).run_s == pytest.approx(sim, rel=1e-12)
    assert predict(bare, ar_plan(), 1.0, Workload(n, width)).run_s < sim * (1 - 1e-3)


def test_expected_rounds():
    assert expected_rounds(1, 2.5) == 0.0
    assert expected_rounds(49, 1.0) == 48
    # the mean of ceil((n-1)/3) over a residue cycle
    assert np.mean([expected_rounds(n, 3.0) for n in (10, 11, 12)]) == pytest.approx(np.mean([3, 4, 4]))


def test_break_even_and_speedup_surface():
    prof = DEVICE.profile().at(128)
    plan = chain_plan(4)
    tau_star = break_even_tau(prof, plan)
    assert predict(prof, plan, tau_star).steady_tokens_per_s == pytest.approx(
        predict(prof, ar_plan(), 1.0).steady_tokens_per_s)
    c1 = prof.target(1)
    pred = predict(prof, plan, 2.0)
    ar = predict(prof, ar_plan(), 1.0)
    s = speedup(2.0, prof.target.ratio(5) * prof.target(1) / c1, pred.draft_s / c1, prof.round_overhead / c1)
    assert float(s) == pytest.approx(pred.steady_tokens_per_s / ar.steady_tokens_per_s)
    grid = speedup(np.array([[1.0], [3.0]]), np.array([[1.0, 3.0]]))
    assert grid.shape == (2, 2) and grid[1, 1] == 1.0
    with pytest.raises(ValueError):
        speedup(0.5, 1.0)


def test_profile_json_round_trip(tmp_path):
    prof = DEVICE.profile()
    back = DeviceProfile.load(prof.save(tmp_path / "p.json"))
    assert back == prof
    assert back.at(300).target(7) == prof.at(300).target(7)


def test_acceptance_profile_chain_tau():
    acc = AcceptanceProfile(((0.8, 0.1), (0.5, 0.2)))
    assert acc.chain_tau(0) == 1.0
    assert acc.chain_tau(3) == pytest.approx(1 + 0.8 + 0.8 * 0.5 + 0.8 * 0.5 * 0.5)   # last row reused
    assert acc.rate(0, 5) == 0.0
    assert AcceptanceProfile((0.6, 0.3)).chain_tau(2) == pytest.approx(1 + 0.6 + 0.36)


def test_roofline_is_flat_for_a_small_model_and_rises_past_the_ridge():
    target = named_config("byte-small")
    prof = roofline_profile(target, eagle_shape(target), "h200", contexts=(256,), tokens=(1, 8, 33, 65536))
    c = prof.at(256).target
    assert c.ratio(33) < 1.05                          # launch- and memory-bound: nearly flat
    assert c.ratio(65536) > 2                          # compute-bound far past the ridge point
    shape = model_shape(target)
    assert shape.params == target.n_layers * (target.d_model * 32 * 24 + 3 * target.d_model * 768
                                              + 2 * target.d_model) + 259 * 256
    acc = ACCELERATORS["h200"]
    assert c(1) == pytest.approx(max(shape.params * 2 + 2 * 8 * 256 * 4 * 32 * 2 + 4 * 259, 0) / acc.bandwidth
                                 + (8 * 10 + 4) * acc.launch, rel=1e-9)
    with pytest.raises(ValueError, match="unknown accelerator"):
        roofline_profile(target, None, "abacus")


# --- bad profiles ------------------------------------------------------------------------------------------------

def _curve(seconds, tokens=None, name="target"):
    return CostCurve(tuple(tokens or range(1, len(seconds) + 1)), tuple(seconds), name)


@pytest.mark.parametrize("seconds,tokens,match", [
    ((0.01, -0.02), None, ">= 0"),
    ((0.01, float("nan")), None, "finite"),
    ((0.02, 0.01, 0.03), None, "non-decreasing"),
    ((0.01, 0.02), (2, 1), "ascending"),
    ((0.01, 0.02), (0, 1), ">= 1"),
    ((0.01,), (1, 2), "same length"),
    ((), (), "non-empty"),
])
def test_bad_curves_raise(seconds, tokens, match):
    with pytest.raises(ValueError, match=match):
        CostCurve(tuple(range(1, len(seconds) + 1)) if tokens is None else tokens, seconds)


def test_missing_entries_raise():
    prof = DEVICE.profile(contexts=(128, 512), grid=tuple(range(1, 17)))
    with pytest.raises(ValueError, match="outside the profiled grid"):
        predict(prof.at(128), tree_plan("big", [1, 4], 32), 1.0)              # T = 33 not profiled
    with pytest.raises(ValueError, match="outside the profiled contexts"):
        prof.at(1024)
    with pytest.raises(ValueError, match="batch 4 was not profiled"):
        prof.at(128, batch=4)
    ar_only = CostProfile(_curve((0.01, 0.02, 0.03)))
    with pytest.raises(ValueError, match="drafter"):
        predict(ar_only, chain_plan(2), 1.5)
    with pytest.raises(ValueError, match="tree_level"):
        predict(CostProfile(_curve((0.01, 0.02)), drafter=_curve((0.001, 0.002))), tree_plan("t", [1], 1), 1.5)
    d = prof.to_dict()
    del d["entries"][0]["target"]
    with pytest.raises(ValueError, match="missing or malformed"):
        DeviceProfile.from_dict(d)
    with pytest.raises(ValueError, match="not a cost profile"):
        DeviceProfile.from_dict({"entries": []})


def test_bad_profile_fields_raise():
    c = _curve((0.01, 0.02))
    with pytest.raises(ValueError, match="round_overhead"):
        CostProfile(c, round_overhead=-1e-3)
    with pytest.raises(ValueError, match="duplicate"):
        DeviceProfile("x", "measured", (ProfileEntry(8, 1, c), ProfileEntry(8, 1, c)))
    with pytest.raises(ValueError, match="kind"):
        DeviceProfile("x", "guessed", (ProfileEntry(8, 1, c),))
    d = DEVICE.profile().to_dict()
    d["entries"][1]["target"]["seconds"][5] = -1.0
    with pytest.raises(ValueError, match=">= 0"):
        DeviceProfile.from_dict(d)
    with pytest.raises(ValueError, match="τ"):
        predict(CostProfile(c), ar_plan(), 0.5)
    with pytest.raises(ValueError, match="at most 2 tokens"):
        predict(CostProfile(c, drafter=c), chain_plan(1), 2.5)


@pytest.mark.parametrize("rates,match", [
    (((0.5, 0.6),), "sum to more than 1"),
    (((1.2,),), r"\[0, 1\]"),
    (((-0.1, 0.2),), r"\[0, 1\]"),
    (((0.5, 0.1), (0.3,)), "rectangular"),
    ((), "non-empty"),
])
def test_bad_acceptance_raises(rates, match):
    with pytest.raises(ValueError, match=match):
        AcceptanceProfile(rates)
