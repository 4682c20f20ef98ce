"""Coupled verification in the decode loop (THEORY §3.11): DISD along a chain (`verifier="disd"`) and the Gumbel list
at every node of a coupled RSD-C tree (`verifier="gumbel_list"`). The output is the same token for token whatever the
drafter, the draft length or the tree (and equals AR driven by the same races); it follows the target's exact law
(chi-square, with a negative control whose races ignore the position and must fail); greedy equals AR; the exact chain
law of `transport` is lossless and accepts no more than the token rule; the jitted rule accepts at the exact rate; bad
combinations are refused before tracing."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import specjax.decode.chain as chain_module
from specjax.decode.chain import ChainSpeculator
from specjax.decode.loop import generate, needed_capacity, prefill
from specjax.methods import make_method
from specjax.runners.model import early_exit
from specjax.sampling import GREEDY, SamplingConfig
from specjax.testing.pairs import tiny_pair as make_pair
from specjax.testing.stats import binomial_z, chi_square_pvalue
from specjax.verify.coupled import (accept_coupled_chain_unchecked, coupled_drafts, gumbel_list, gumbel_list_of_times,
    output_races, race_times, race_winners, round_races)
from tests.exact_tables import (ALPHA, LAW_PROMPT, assert_target_law, decode_law_rows, exact_chain_tau, random_tables,
    round_laws)
from transport.exact.chain import chain_acceptance, chain_output_law, completions, total_variation
from transport.exact.coupled import disd_acceptance, disd_diagonal
from trees.speculator import TreeSpeculator
from trees.verify import verify_tree

SAMPLINGS = (SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.7, top_k=6))


def _disd(k, **options):
    return make_method("chain", num_draft=k, verifier="disd", **options)


def _tree(budget):
    return make_method("rsd-c", budget=budget, verifier="gumbel_list")


def _taus_of_runs_equal_to_coupled_ar(target, ragged_prompts, sampling, runs) -> list[float]:
    """Decode the prompts with each (method, drafter) of `runs` from one key; assert each output equals AR's driven by
    the same races (ChainSpeculator(0, "disd")) token for token; return the runs' τ."""
    tokens, lengths = ragged_prompts
    key = jax.random.key(3)
    reference = np.asarray(generate(target, tokens, lengths, key, method=ChainSpeculator(0, "disd"),
                                    max_new_tokens=20, sampling=sampling).tokens)
    taus = []
    for method, drafter in runs:
        out = generate(target, tokens, lengths, key, method=method, drafter=drafter, max_new_tokens=20,
                       sampling=sampling)
        np.testing.assert_array_equal(np.asarray(out.tokens), reference, err_msg=repr(method))
        taus.append(out.acceptance_length)
    return taus


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_output_is_the_same_whatever_the_drafter(tiny_pair, ragged_prompts, sampling):
    target, draft = tiny_pair
    runs = [(_disd(2), draft), (_disd(4), make_pair(5, 6)[1]), (_disd(3), early_exit(target, 1)),
            (_disd(3, policy="confidence"), draft)]                     # ragged rounds, AR steps included
    taus = _taus_of_runs_equal_to_coupled_ar(target, ragged_prompts, sampling, runs)
    assert max(taus) > 1.0                    # drafts were accepted: not AR in disguise
    assert len(set(np.round(taus, 6))) > 1    # the drafters differ, the output does not


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_coupled_trees_emit_the_same_output_as_coupled_chains(tiny_pair, ragged_prompts, sampling):
    target, draft = tiny_pair
    runs = [(_tree(8), draft), (_tree(16), make_pair(5, 6)[1]), (_tree(12), early_exit(target, 1))]
    taus = _taus_of_runs_equal_to_coupled_ar(target, ragged_prompts, sampling, runs)
    assert min(taus) > 1.0 and len(set(np.round(taus, 6))) > 1


def test_token_rule_is_not_drafter_invariant(tiny_pair, ragged_prompts):
    """Control: the invariance above is the coupling's, not the test's: the token rule's output moves with the
    drafter for the same key."""
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    key, sampling = jax.random.key(3), SamplingConfig(temperature=1.0)
    a = generate(target, tokens, lengths, key, method=make_method("chain", num_draft=2), drafter=draft,
                 max_new_tokens=20, sampling=sampling)
    b = generate(target, tokens, lengths, key, method=make_method("chain", num_draft=2), drafter=make_pair(5, 6)[1],
                 max_new_tokens=20, sampling=sampling)
    assert not np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens))


@pytest.mark.parametrize("sampling, k", [(SAMPLINGS[0], 2), (SAMPLINGS[1], 3)])
def test_emitted_law_is_the_target_law(tiny_pair, sampling, k):
    target, draft = tiny_pair
    out = decode_law_rows(target, _disd(k), sampling, draft)
    assert_target_law(target, out.tokens, sampling)
    assert 1.0 < out.acceptance_length < k + 1


def test_coupled_tree_emits_the_target_law(tiny_pair):
    target, draft = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    out = decode_law_rows(target, _tree(6), sampling, draft)
    assert_target_law(target, out.tokens, sampling)
    assert 1.0 < out.acceptance_length < 3.0


def test_a_round_accepts_the_exact_expected_length(tiny_pair):
    """One chain round of K = 3 from a fixed context, 20,000 rows (independent races): the loop's mean accepted
    length is the exact one, 1 + Σ_k Σ_x Π_d P(X_d = Y_d = x_d), enumerated over the round's own laws; the token
    rule's exact value (larger) is rejected, so the check has power."""
    target, draft = tiny_pair
    sampling, prompt, pending, k, n = SamplingConfig(temperature=1.0), [1, 2, 3, 4, 5], 7, 3, 20_000
    p, q = round_laws(target, draft, prompt, pending, k, sampling)
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    both = np.array([[disd_diagonal(a, b) for a, b in zip(pr, qr)] for pr, qr in zip(p, q)])
    exact = exact_chain_tau(p, q, 16, k, accept=both)[-1]
    spec = ChainSpeculator(k, "disd")
    tokens, lengths = jnp.tile(jnp.asarray(prompt, jnp.int32), (n, 1)), jnp.full((n,), len(prompt), jnp.int32)

    @jax.jit
    def one_round(key):
        start = prefill(target, draft, tokens, lengths, key, sampling, needed_capacity(len(prompt), spec),
                        pending=jnp.full((n,), pending, jnp.int32))
        return spec.round(target=target, drafter=draft, caches=start.caches, ctx=start.ctx, key=key,
                          sampling=sampling).num_accepted

    accepted = np.asarray(one_round(jax.random.key(11)))
    se = accepted.std() / np.sqrt(n)
    assert abs(1 + accepted.mean() - exact) < 4 * se
    assert abs(1 + accepted.mean() - exact_chain_tau(p, q, 16, k)[-1]) > 8 * se


def test_races_shared_across_positions_fail_the_law_test(tiny_pair, monkeypatch):
    """Negative control: one race for every position of a round (keys not folded by position) correlates the tokens
    of a round; the same law test must reject it."""
    target, draft = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    monkeypatch.setattr(chain_module, "round_races", lambda key, position, width, vocab:
                        jnp.repeat(round_races(key, position, 1, vocab), width, axis=1))
    jax.clear_caches()                        # the loop must be traced again with the patched keys
    out = decode_law_rows(target, _disd(2), sampling, draft)
    gen = np.asarray(out.tokens)
    assert chi_square_pvalue(gen[:, 1] * 16 + gen[:, 2], _pair_law(target, sampling).ravel()) < ALPHA
    monkeypatch.undo()
    jax.clear_caches()


def _pair_law(target, sampling):
    """The exact joint law `[V, V]` of the 2nd and 3rd generated tokens after LAW_PROMPT."""
    from specjax.testing.pairs import exact_joint_law
    return exact_joint_law(target, list(LAW_PROMPT), sampling, 3).sum(0)


def test_greedy_equals_autoregressive(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(0)
    ar = generate(target, tokens, lengths, key, max_new_tokens=24, sampling=GREEDY)
    for k in (1, 3, 5):
        sd = generate(target, tokens, lengths, key, method=_disd(k), drafter=draft, max_new_tokens=24,
                      sampling=GREEDY)
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=f"K={k}")
    sd = generate(target, tokens, lengths, key, method=_tree(12), drafter=draft, max_new_tokens=24, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg="tree")


@pytest.mark.parametrize("seed", range(6))
def test_exact_chain_law_is_lossless_and_accepts_no_more_than_the_token_rule(seed):
    rng = np.random.default_rng(seed)
    v, k = 4, 2
    p = random_tables(rng, v, k + 1, conc=0.8, zeros=0.15 if seed % 2 else 0.0)
    q = random_tables(rng, v, k, conc=0.8, zeros=0.15 if seed % 3 == 0 else 0.0)
    assert total_variation(chain_output_law(p, q, "disd"), completions(p, k)[0]) < 1e-12
    disd, token = chain_acceptance(p, q, "disd"), chain_acceptance(p, q, "token")
    assert 0.0 < disd <= token + 1e-12


@pytest.mark.parametrize("case", ["random", "p = q", "disjoint", "one-hot"])
def test_jitted_rule_accepts_at_the_exact_rate(case):
    """The jitted chain rule on one position (K = 1): P(accept) of 20,000 races = the closed form of
    `transport.exact.coupled` (binomial z), and the emitted token is the target's race winner."""
    rng = np.random.default_rng(7)
    v = 8
    p, q = rng.dirichlet(np.ones(v)), rng.dirichlet(np.ones(v))
    if case == "p = q":
        q = p
    elif case == "disjoint":
        p, q = np.r_[p[:4], np.zeros(4)], np.r_[np.zeros(4), q[4:]]
        p, q = p / p.sum(), q / q.sum()
    elif case == "one-hot":
        p = np.eye(v)[2]
    n = 20_000
    races = round_races(jax.random.key(1), jnp.arange(n), 2, v)               # [n, 2, V]: distinct races
    qs = jnp.broadcast_to(jnp.asarray(q, jnp.float32), (n, 1, v))
    ps = jnp.broadcast_to(jnp.asarray(p, jnp.float32), (n, 2, v))
    drafts = race_winners(races[:, :1], qs)
    num, tokens = jax.jit(accept_coupled_chain_unchecked)(races, drafts, qs, ps)
    num, tokens = np.asarray(num), np.asarray(tokens)
    assert np.array_equal(tokens[:, 0], np.asarray(race_winners(races[:, :1], ps[:, :1]))[:, 0])
    assert np.all(tokens[num == 0, 1] == -1)
    rate = disd_acceptance(p, q)
    if case == "p = q":
        assert num.mean() == 1.0 and rate == pytest.approx(1.0)
    elif case == "disjoint":
        assert num.mean() == 0.0 and rate == 0.0
    else:
        assert abs(binomial_z(int(num.sum()), n, rate)) < 4.0
    assert chi_square_pvalue(tokens[:, 0], p) > ALPHA


def test_bad_combinations_are_refused(tiny_pair, ragged_prompts):
    target, _ = tiny_pair
    tokens, lengths = ragged_prompts
    with pytest.raises(ValueError, match="coupled verifier"):
        make_method("chain", num_draft=3, verifier="disd", policy="del")
    with pytest.raises(ValueError, match="tree verifier"):
        generate(target, tokens, lengths, jax.random.key(0), method=make_method("eagle2", budget=8),
                 drafter=tiny_pair[1], verifier="disd")
    with pytest.raises(ValueError, match="coupled RSD-C tree"):
        make_method("eagle2", budget=8, verifier="gumbel_list")
    with pytest.raises(ValueError, match="chain verifier"):
        make_method("chain", num_draft=2, verifier="gumbel_list")
    tree = make_method("rsd-c", budget=4).builder
    with pytest.raises(ValueError, match="coupled RSD-C tree is verified by"):
        TreeSpeculator(dataclasses.replace(tree, coupled=True))


@pytest.mark.parametrize("case", ["random", "p = q", "disjoint", "one-hot p", "zeros in q"])
def test_the_tree_walks_rule_is_the_exactly_tested_gumbel_list(case):
    """The walk's per-node rule on drawn race times (`gumbel_list_of_times`) returns, key for key, what `gumbel_list`
    returns with the key (whose joint law of slot and token is tested exactly in test_coupled_rule.py), drafts drawn
    from the same race by `coupled_drafts`, including degenerate laws and slots past q's support."""
    rng = np.random.default_rng(3)
    v, k, n = 8, 3, 2000
    p, q = rng.dirichlet(np.ones(v)), rng.dirichlet(np.ones(v))
    if case == "p = q":
        q = p
    elif case == "disjoint":
        p, q = np.r_[p[:4], np.zeros(4)], np.r_[np.zeros(4), q[4:]]
    elif case == "one-hot p":
        p = np.eye(v)[5]
    elif case == "zeros in q":
        q = np.r_[q[:2], np.zeros(v - 2)]                           # k = 3 > |supp q|: the third slot is padding
    p, q = (jnp.asarray(x / x.sum(), jnp.float32) for x in (p, q))

    def both(key):
        drafts, valid = coupled_drafts(key, q, k)
        times = race_times(key, v)
        return gumbel_list(key, p, q, drafts, valid), gumbel_list_of_times(times, p, q, drafts, valid)

    (slot, token), (slot2, token2) = jax.jit(jax.vmap(both))(jax.random.split(jax.random.key(4), n))
    np.testing.assert_array_equal(np.asarray(slot), np.asarray(slot2))
    np.testing.assert_array_equal(np.asarray(token), np.asarray(token2))
    assert chi_square_pvalue(np.asarray(token2), np.asarray(p, np.float64) / float(np.sum(p))) > ALPHA


def test_verify_tree_asks_for_the_races():
    from tests.exact_tables import to_draft_tree
    from transport.exact.tree_laws import ConcreteTree
    rng = np.random.default_rng(0)
    p, q = random_tables(rng, 4, 2), random_tables(rng, 4, 1)
    tree, target = to_draft_tree([ConcreteTree(tokens=[0, 1, 2], parent=[-1, 0, 0], children=[[1, 2], [], []],
                                               law=["without_replacement", "deterministic", "deterministic"])], p, q)
    with pytest.raises(ValueError, match="races of the output positions"):
        verify_tree(jax.random.key(0), tree, target, verifier="gumbel_list")
    with pytest.raises(ValueError, match="races of the output positions"):
        verify_tree(output_races(jax.random.key(0), jnp.zeros((1,), jnp.int32), 2), tree, target,
                    verifier="gumbel_list")                          # keys, not the drawn races
    races = round_races(jax.random.key(0), jnp.zeros((1,), jnp.int32), 2, 4)
    path, n, tokens = verify_tree(races, tree, target, verifier="gumbel_list")
    assert int(n[0]) in (0, 1)
