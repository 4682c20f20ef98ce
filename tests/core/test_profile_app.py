"""`specjax profile` and the teacher-forced acceptance profile on the tiny pair: the ranks equal those a chain
drafter sees step by step along the true path (an EAGLE head); rates and empirical τ from ranks; a measured profile
is a valid `DeviceProfile` (no timing is asserted); the roofline command; the break-even τ under the demo's table."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.apps import cli
from specjax.bench.acceptance import _rank_of, teacher_forced_ranks
from specjax.apps.demo import print_break_even
from specjax.bench.profile import ProfileConfig, chain_break_even, isotonic, measure_profile
from specjax.model.block import Block
from specjax.costs.profile import DeviceProfile
from specjax.decode.loop import prefill
from specjax.runners.eagle import init_eagle
from specjax.costs.latency import AcceptanceProfile
from specjax.runners.lookup import lookup_handle
from specjax.sampling import GREEDY
from specjax.methods import make_method
from trees.sequoia import empirical_reward

PROMPT = [1, 2, 3, 4, 5]
DEPTH = 3


@jax.jit
def _stepwise_ranks(target, drafter, z, t):
    """The reference, for the chain starting at t (traced, so one compile serves every start): prefill z[:t] (z
    `[M]` right-padded past t; the target's greedy pending token is z[t]), then the chain drafter's calls of
    `specjax.decode.draft.draft_chain`, fed the true tokens instead of its own. Returns the ranks `[DEPTH]` and pending."""
    start = prefill(target, drafter, z[None], t[None], jax.random.key(0), GREEDY, 2 * z.shape[0])
    caches, ctx = start.caches, start.ctx
    feats = lambda f: f if drafter.runner.reads_features else None
    out = drafter.forward(caches.drafter, Block.chain(jnp.stack([ctx.prev, ctx.pending], 1), ctx.position - 1,
                                                      feats(ctx.features)))
    ranks = [_rank_of(out.logits[0, -1:], z[t + 1][None])[0]]
    for d in range(2, DEPTH + 1):
        out = drafter.forward(out.cache, Block.chain(z[t + d - 1][None, None], (t + d - 1)[None],
                                                     feats(out.hidden[:, -1:])))
        ranks.append(_rank_of(out.logits[0], z[t + d][None])[0])
    return jnp.stack(ranks), ctx.pending[0]


def test_teacher_forced_ranks_equal_stepwise_drafting(tiny_pair):
    """An EAGLE-style head (its features past the first step are its own outputs: the subtle case; a model
    drafter takes the same path without features)."""
    target, _ = tiny_pair
    drafter = init_eagle(target, seed=3)
    z = jnp.zeros((len(PROMPT) + 16,), jnp.int32).at[:len(PROMPT)].set(jnp.array(PROMPT))
    for t in range(len(PROMPT), z.shape[0]):              # the target's greedy text: each prefill's pending token
        z = z.at[t].set(_stepwise_ranks(target, drafter, z, jnp.int32(t))[1])
    z = np.asarray(z).tolist()
    ranks = teacher_forced_ranks(target, drafter, z, len(PROMPT), DEPTH)
    assert ranks.shape == (len(z) - DEPTH - len(PROMPT), DEPTH)
    ref = np.array([np.asarray(_stepwise_ranks(target, drafter, jnp.asarray(z), jnp.int32(t))[0])
                    for t in range(len(PROMPT), len(z) - DEPTH)])
    np.testing.assert_array_equal(ranks, ref)
    assert len(set(ranks[:, 0].tolist())) > 1                     # not a constant (the check has power)


def test_rates_and_empirical_tau_from_ranks():
    ranks = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [3, 0, 0], [0, 0, 0]])
    acc = AcceptanceProfile.from_ranks(ranks, num_ranks=2)
    assert acc.rates[0] == (0.6, 0.2)
    assert acc.rates[1] == (3 / 4, 1 / 4)                         # the start with rank 3 left the tree
    # chain of 2: leading zeros per start = 2, 1, 0, 0, 3->2
    assert empirical_reward([(0,), (0, 0)], ranks) == pytest.approx((2 + 1 + 0 + 0 + 2) / 5)
    assert empirical_reward([(0,), (1,), (1, 0)], ranks) == pytest.approx((1 + 1 + 2 + 0 + 1) / 5)
    with pytest.raises(ValueError):
        AcceptanceProfile.from_ranks(ranks - 5, 2)
    with pytest.raises(ValueError, match="depth"):
        empirical_reward([(0,), (0, 0), (0, 0, 0), (0, 0, 0, 0)], ranks)


def test_isotonic():
    np.testing.assert_allclose(isotonic([1.0, 3.0, 2.0, 4.0]), [1.0, 2.5, 2.5, 4.0])
    np.testing.assert_allclose(isotonic([3.0, 1.0, 2.0]), [2.0, 2.0, 2.0])
    assert np.all(np.diff(isotonic(np.random.default_rng(0).normal(size=50))) >= 0)


def test_measured_profile_is_a_valid_device_profile(tiny_pair, tmp_path):
    target, draft = tiny_pair
    cfg = ProfileConfig(contexts=(24,), tokens=(1, 2), level_tokens=(1,), inner=1, repeats=2, overhead_prompt=8,
                        overhead_runs=1)
    prof = measure_profile(target, draft, cfg, log=lambda *_: None)
    back = DeviceProfile.load(prof.save(tmp_path / "p.json"))
    assert back == prof and back.contexts == (24,) and back.batches == (1,)
    at = back.at(24)
    assert at.target.tokens == at.drafter.tokens == (1, 2) and at.tree_level.tokens == (1,)
    assert at.target(1) > 0 and at.round_overhead >= 0 and at.run_overhead >= 0
    assert [len(s) for s in back.meta["raw"][0]["target"]["samples"]] == [2, 2]          # every sample kept
    assert set(back.meta["overheads"]) >= {"ar_round_s", "round_overhead_raw_s", "run_overhead_raw_s"}


@pytest.mark.parametrize("kwargs,match", [
    (dict(tokens=()), "tokens must not be empty"),
    (dict(tokens=(0, 1)), "tokens"),
    (dict(contexts=(16,), tokens=(1, 32)), "cannot hold a call over T = 32"),
    (dict(contexts=(16,), tokens=(1,), level_tokens=(14,)), "tree level over 14"),
    (dict(stat="mean"), "unknown statistic"),
    (dict(repeats=0), "repeats"),
    (dict(temperature=-1.0), "temperature"),
])
def test_bad_profile_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProfileConfig(**kwargs)


def test_profile_command_rejects_bad_input_before_loading(monkeypatch, tmp_path, capsys):
    from specjax.apps import models
    monkeypatch.setattr(models, "load_target", lambda *a, **k: pytest.fail("loaded a model before checking"))
    for argv in (["--contexts", "16", "--tokens", "1", "32"], ["--roofline", "abacus"], ["--batches", "0"]):
        assert cli.main(["profile", "--target", "random:tiny", "--drafter", "none", *argv,
                         "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot hold" in err and "unknown accelerator" in err and "batches" in err


def test_roofline_command(tmp_path, capsys):
    out = tmp_path / "h200.json"
    assert cli.main(["profile", "--target", "random:tiny", "--drafter", "model:random:tiny-draft",
                     "--roofline", "h200", "--contexts", "128", "--tokens", "1", "8", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["kind"] == "roofline" and d["meta"]["bandwidth_bytes_per_s"] == 4.8e12
    assert DeviceProfile.from_dict(d).at(128).drafter is not None


def test_break_even_printed_under_the_demo_table(tiny_pair, capsys):
    """The demo's figures: c(K+1)/c(1) measured here, and per drafter τ* = (its drafting + c(K+1)) / c(1), printed
    beside the τ it reached; a chain of no drafts or a cache too small for the call raise before measuring."""
    target, draft = tiny_pair
    drafters = {"lookup:2": lookup_handle(target.config, max_ngram=2)}
    cost = print_break_even(target, drafters, make_method("chain", num_draft=1), [[1, 2, 3]], 8,
                            {name: {"tau": 1.25} for name in drafters})
    c1 = cost["target_1_s"]
    assert cost["verify_tokens"] == 2 and cost["cost_ratio"] == pytest.approx(cost["target_verify_s"] / c1)
    assert cost["cost_ratio"] >= 1
    for name in drafters:
        assert cost["break_even_tau"][name] == pytest.approx((cost["draft_s"][name] + cost["target_verify_s"]) / c1)
        assert cost["break_even_tau"][name] > cost["cost_ratio"]                 # drafting is never free
    out = capsys.readouterr().out
    assert "K+1 = 2 tokens" in out and all(f"{name} " in out for name in drafters) and "(it reached 1.25)" in out
    with pytest.raises(ValueError, match="num_draft"):
        chain_break_even(target, drafters, 0, 16)
    with pytest.raises(ValueError, match="context"):
        chain_break_even(target, drafters, 4, 4)
