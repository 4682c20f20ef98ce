"""`specjax profile` and the teacher-forced acceptance profile on the tiny pair: the ranks equal those a chain
drafter sees step by step along the true path (a model drafter and an EAGLE head); rates and empirical τ from
ranks; a measured profile is a valid `DeviceProfile` (no timing is asserted); the roofline command."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.apps import cli
from specjax.apps.acceptance import _rank_of, teacher_forced_ranks
from specjax.apps.profile import ProfileConfig, isotonic, measure_profile
from specjax.block import Block
from specjax.costs import DeviceProfile
from specjax.decode import generate, prefill
from specjax.eagle import init_eagle
from specjax.latency import AcceptanceProfile
from specjax.sampling import GREEDY
from trees.sequoia import empirical_reward

PROMPT = [1, 2, 3, 4, 5]
DEPTH = 3


def _greedy_text(target):
    out = generate(target, np.array([PROMPT]), np.array([len(PROMPT)]), jax.random.key(0), method="ar",
                   max_new_tokens=16, sampling=GREEDY)
    return PROMPT + np.asarray(out.tokens[0]).tolist()


def _stepwise_ranks(target, drafter, z, t):
    """The reference: prefill z[:t] (the target's greedy pending token is z[t]), then the chain drafter's calls of
    `specjax.draft.draft_chain`, fed the true tokens instead of its own."""
    caches, ctx = prefill(target, drafter, jnp.array([z[:t]]), jnp.array([t]), jax.random.key(0), GREEDY, 64)
    assert int(ctx.pending[0]) == z[t]
    feats = lambda f: f if drafter.runner.reads_features else None
    out = drafter.forward(caches.drafter, Block.chain(jnp.stack([ctx.prev, ctx.pending], 1), ctx.position - 1,
                                                      feats(ctx.features)))
    ranks = [int(_rank_of(out.logits[0, -1:], jnp.array([z[t + 1]]))[0])]
    for d in range(2, DEPTH + 1):
        out = drafter.forward(out.cache, Block.chain(jnp.array([[z[t + d - 1]]]), jnp.array([t + d - 1]),
                                                     feats(out.hidden[:, -1:])))
        ranks.append(int(_rank_of(out.logits[0], jnp.array([z[t + d]]))[0]))
    return ranks


@pytest.mark.parametrize("kind", ["model", "eagle"])
def test_teacher_forced_ranks_equal_stepwise_drafting(tiny_pair, kind):
    target, draft = tiny_pair
    drafter = draft if kind == "model" else init_eagle(target, seed=3)
    z = _greedy_text(target)
    ranks = teacher_forced_ranks(target, drafter, z, len(PROMPT), DEPTH)
    assert ranks.shape == (len(z) - DEPTH - len(PROMPT), DEPTH)
    ref = np.array([_stepwise_ranks(target, drafter, z, t) for t in range(len(PROMPT), len(z) - DEPTH)])
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
    cfg = ProfileConfig(contexts=(24, 40), tokens=(1, 2, 16), level_tokens=(1, 2, 4), inner=1, repeats=1,
                        overhead_prompt=8, overhead_runs=1)
    prof = measure_profile(target, draft, cfg, log=lambda *_: None)
    back = DeviceProfile.load(prof.save(tmp_path / "p.json"))
    assert back.contexts == (24, 40) and back.batches == (1,)
    at = back.at(30)
    assert at.target.tokens == (1, 2, 16) and at.tree_level.tokens == (1, 2, 4)
    assert at.round_overhead >= 0 and at.run_overhead >= 0
    assert set(back.meta["overheads"]) >= {"ar_round_s", "round_overhead_raw_s", "run_overhead_raw_s"}


def test_roofline_command(tmp_path, capsys):
    out = tmp_path / "h200.json"
    assert cli.main(["profile", "--target", "random:byte-small", "--drafter", "model:random:byte-small-draft",
                     "--roofline", "h200", "--contexts", "128", "--tokens", "1", "8", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["kind"] == "roofline" and d["meta"]["bandwidth_bytes_per_s"] == 4.8e12
    assert DeviceProfile.from_dict(d).at(128).drafter is not None
    assert cli.main(["profile", "--roofline", "abacus", "--target", "random:byte-small", "--drafter", "none",
                     "--out", str(out)]) == 2
    assert "unknown accelerator" in capsys.readouterr().err
