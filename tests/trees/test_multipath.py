"""GBV on K i.i.d. chains: the selected path's law q^Γ and the exact acceptance against enumeration of all K-tuples,
losslessness (exact; jax by chi-square up to K = 8) with a negative control (verifying the selected path against q
instead of q^Γ), float32 stability at K = 8, degenerate and bad inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.testing.stats import chi_square_pvalue_counts
from tests.exact_tables import complete, pattern_index, random_tables, sample_chains, trie_of_chains
from transport.exact.chain import along, chain_pattern_law, completions, stop_law, total_variation
from transport.exact.multipath import RANKS, best_chain, gbv_acceptance, gbv_stops, selected_law
from transport.exact.tree_kernels import completed_law, emitted_law, expected_length
from transport.exact.tree_laws import enumerate_chain_sets
from trees.multipath import gbv_walk, gbv_walk_unchecked, selected_path_law

P_MIN = 1e-4
N = 20_000
V, L = 3, 2


def _tables(seed, conc=0.8, v=V):
    rng = np.random.default_rng(seed)
    return random_tables(rng, v, L + 1, conc), random_tables(rng, v, L, conc)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_reference_selected_law_and_losslessness_by_enumeration(k):
    p, q = _tables(k)
    sets = list(enumerate_chain_sets(k, L, q))
    target = completions(p, L)[0]
    for rank in RANKS:
        chosen: dict = {}
        for chains, prob in sets:
            best = tuple(chains[best_chain(chains, p, q, rank)])
            chosen[best] = chosen.get(best, 0.0) + prob
        for path, prob in chosen.items():
            law = selected_law(path, p, q, k, rank)
            assert np.prod([law[d, path[d]] for d in range(L)]) == pytest.approx(prob, abs=1e-14)
            assert np.allclose(law.sum(1), 1.0, atol=1e-14)
        stops = [(gbv_stops(chains, p, q, rank), prob) for chains, prob in sets]
        assert total_variation(completed_law(stops, p, L), target) < 1e-13
        assert gbv_acceptance(p, q, k, L, rank) == pytest.approx(expected_length(stops), abs=1e-13)
    # negative control: verifying the selected path against the draft law q (not q^Γ) is lossy for k >= 2
    naive = [([(tuple(b[:n]), f[n], w[n]) for n in range(L + 1)], prob) for chains, prob in sets
             for b in [tuple(chains[best_chain(chains, p, q, "ratio")])]
             for w, f in [stop_law("block", along(p, b, L + 1), along(q, b, L), b)]]
    tv = total_variation(completed_law(naive, p, L), target)
    assert (tv > 1e-3) if k >= 2 else (tv < 1e-13)


def test_one_chain_is_block_verification():
    p, q = _tables(9)
    stops = [(gbv_stops(c, p, q), prob) for c, prob in enumerate_chain_sets(1, L, q)]
    assert np.abs(emitted_law(stops, V, L) - chain_pattern_law(p, q, "block")).max() < 1e-14


def test_selected_law_at_k8_matches_simulated_selection():
    p, q = _tables(3)
    k, n = 8, 20_000
    rng = np.random.default_rng(0)
    chains = sample_chains(rng, q, n * k).reshape(n, k, L)
    picked = np.array([chains[r, best_chain(chains[r].tolist(), p, q, "ratio")] for r in range(n)])
    counts = np.bincount(np.ravel_multi_index(tuple(picked.T), (V,) * L), minlength=V ** L)
    exact = [np.prod([selected_law(x, p, q, k, "ratio")[d, x[d]] for d in range(L)]) for x in np.ndindex(V, V)]
    assert chi_square_pvalue_counts(counts, np.array(exact)) > P_MIN


def _jax_round(sets_or_chains, p, q, seed, rank="ratio"):
    tree, target = trie_of_chains(sets_or_chains, p, q)
    path, num, tokens = gbv_walk(jax.random.key(seed), tree, target, L, rank)
    return np.asarray(path), np.asarray(num), np.asarray(tokens), tree


@pytest.mark.parametrize("k", [3, 8])
def test_jax_gbv_is_lossless(k):
    p, q = _tables(4)
    rng = np.random.default_rng(k)
    chains = sample_chains(rng, q, N * k).reshape(N, k, L)
    path, num, tokens, tree = _jax_round(chains, p, q, seed=k)
    cells = np.bincount(complete(rng, p, tokens, num, L), minlength=V ** (L + 1))
    assert chi_square_pvalue_counts(cells, completions(p, L)[0].ravel()) > P_MIN
    exact = gbv_acceptance(p, q, k, L)
    assert abs(num.mean() - exact) < 4.5 * num.std() / np.sqrt(N)
    # path ids are the trie nodes of the emitted prefix
    tok = np.asarray(tree.token)
    for r in range(40):
        assert list(tok[r, path[r, 1:num[r] + 1]]) == list(tokens[r, :num[r]])
    if k == 3:                                     # per-pattern law = the reference, and power against q instead of q^Γ
        sets = list(enumerate_chain_sets(k, L, q))
        counts = np.bincount(pattern_index(tokens, num, V, L), minlength=len(chain_pattern_law(p, q, "block")))
        assert chi_square_pvalue_counts(counts, emitted_law([(gbv_stops(c, p, q), w) for c, w in sets], V, L)) > P_MIN
        naive = [([(b[:n], f[n], w[n]) for n in range(L + 1)], prob) for c, prob in sets
                 for b in [tuple(c[best_chain(c, p, q, "ratio")])] for w, f in [stop_law("block", along(p, b, L + 1),
                                                                                       along(q, b, L), b)]]
        assert chi_square_pvalue_counts(counts, emitted_law(naive, V, L)) < P_MIN


def test_selected_law_is_stable_in_float32_at_k8():
    """q^Γ by positive terms in log space: float32 agrees with float64; upper^K - lower^K in float32 does not."""
    v, k = 5, 8
    q0 = np.array([0.9, 0.09, 0.01 - 2e-7, 1e-7, 1e-7])     # tiny-q tokens ranked first (high p/q): q << below
    p0 = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    p_t = [p0, np.tile(p0, (v, 1)), np.tile(p0, (v, v, 1))]
    q_t = [q0, np.tile(q0, (v, 1))]
    path = (3, 4)                                   # a selected path through the tiny-q tokens
    exact = selected_law(path, p_t, q_t, k, "ratio")
    got = np.exp(np.asarray(selected_path_law(jnp.asarray(path), jnp.asarray(np.stack([p0, p0]), jnp.float32),
                                              jnp.asarray(np.stack([q0, q0]), jnp.float32), k, "ratio")))
    rel = np.abs(got - exact) / exact
    assert rel.max() < 1e-4
    from transport.exact.multipath import mass_below, rank_keys
    below = mass_below(q0, rank_keys(p0, q0, "ratio")).astype(np.float32)
    naive = (below + q0.astype(np.float32)) ** k - below ** k       # the cancelling form, first position
    assert np.max(np.abs(naive - exact[0]) / exact[0]) > 1e-2


def test_degenerate_inputs():
    # disjoint supports: the target never emits a drafted token, nothing is accepted
    v = 4
    p_dis = [np.broadcast_to(np.eye(v)[0], (v,) * (d + 1)).copy() for d in range(L + 1)]
    q_dis = [np.broadcast_to(np.r_[0, 1, 1, 1] / 3, (v,) * (d + 1)).copy() for d in range(L)]
    chains = np.tile(np.array([[1, 2], [3, 1], [2, 2]]), (16, 1, 1))
    _, num, tokens, _ = _jax_round(chains, p_dis, q_dis, seed=0)
    assert np.all(num == 0) and np.all(tokens[:, 0] == 0)
    # p = q: the selected chain's law q^Γ differs from q, yet GBV stays exactly lossless
    p, q = _tables(5)
    same = [p[0], p[1]]
    stops = [(gbv_stops(c, p, same), w) for c, w in enumerate_chain_sets(3, L, same)]
    assert total_variation(completed_law(stops, p, L), completions(p, L)[0]) < 1e-13
    fn = jax.jit(gbv_walk_unchecked, static_argnames=("max_depth", "rank"))
    tree, target = trie_of_chains(np.tile(np.array([[0, 1], [0, 1]]), (4, 1, 1)), p, q)
    path, n, _ = fn(jax.random.key(0), tree, target, max_depth=L)
    assert path.shape == (4, L + 1) and np.all(np.asarray(path)[:, 0] == 0)


def test_bad_input_raises_before_tracing():
    p, q = _tables(6)
    tree, target = trie_of_chains(np.array([[[0, 1], [2, 0]]]), p, q)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="ranking"):
        gbv_walk(key, tree, target, L, rank="best")
    with pytest.raises(ValueError, match="target_probs"):
        gbv_walk(key, tree, target[:, :3], L)
    with pytest.raises(ValueError, match="depth"):
        gbv_walk(key, tree, target, L + 1)
    with pytest.raises(ValueError, match="LAW_IID"):
        gbv_walk(key, tree.replace(law=tree.law.at[0, 0].set(2)), target, L)
    with pytest.raises(ValueError, match="q = 0"):
        gbv_walk(key, tree.replace(probs=tree.probs.at[0, 0].set(jnp.eye(V)[1])), target, L)
    with pytest.raises(ValueError, match="NaN"):
        gbv_walk(key, tree, target.at[0, 0, 0].set(jnp.nan), L)
