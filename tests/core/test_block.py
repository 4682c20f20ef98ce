"""Block verification: exact enumeration of the emitted law (lossless, block >= token, the paper's toy example), the
jax rule against the exact law (chi-square, with negative controls), Monte Carlo length vs exact, degenerate and bad
inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.testing.stats import chi_square_pvalue_counts
from specjax.verify.block import accept_block, accept_block_unchecked, block_weights
from specjax.verify.chain import accept_chain
from tests.exact_tables import complete, laws_along, pattern_index, random_tables, sample_chains
from transport.exact.chain import (chain_acceptance, chain_output_law, chain_pattern_law, check_tables, completions,
                                   pattern_offsets, total_variation)

P_MIN = 1e-4
N = 20_000


def _case(seed, v=3, k=3, conc=1.0, zeros=0.0):
    rng = np.random.default_rng(seed)
    return random_tables(rng, v, k + 1, conc, zeros), random_tables(rng, v, k, conc, zeros)


@pytest.mark.parametrize("seed", range(6))
def test_block_is_lossless_and_beats_token_by_exact_enumeration(seed):
    p, q = _case(seed, v=3, k=3, conc=[0.3, 1.0, 3.0][seed % 3], zeros=0.2 * (seed % 2))
    target = completions(check_tables(p, q)[0], 3)[0]
    for verifier in ("token", "block"):
        assert total_variation(chain_output_law(p, q, verifier), target) < 1e-13
    assert chain_acceptance(p, q, "block") >= chain_acceptance(p, q, "token") - 1e-13
    # negative control: token-wise weights inside the block rule (a published port's bug) are lossy
    assert total_variation(chain_output_law(p, q, "block_tokenwise"), target) > 1e-3


def test_block_never_worse_than_token_on_random_cases():
    rng = np.random.default_rng(11)
    gains = []
    for case in range(60):
        v, k = int(rng.integers(2, 5)), int(rng.integers(1, 4))
        conc = float(rng.choice([0.2, 1.0, 5.0]))
        p, q = random_tables(rng, v, k + 1, conc), random_tables(rng, v, k, conc)
        gains.append(chain_acceptance(p, q, "block") - chain_acceptance(p, q, "token"))
    assert min(gains) > -1e-13 and max(gains) > 1e-3


def test_block_acceptance_is_the_sum_of_expected_weights():
    """E[n] = Σ_i E_q[p_i] (the block weights), independently of the stop law."""
    p, q = _case(3, v=3, k=3)
    p64, q64 = check_tables(p, q)
    x = np.array(list(np.ndindex(3, 3, 3)))
    prob = np.prod([q64[i][tuple(x[:, j] for j in range(i)) + (x[:, i],)] for i in range(3)], axis=0)
    with jax.enable_x64(True):
        w, _ = block_weights(jnp.asarray(x), jnp.asarray(laws_along(q64, x, 3)), jnp.asarray(laws_along(p64, x, 4)))
    assert float(prob @ np.asarray(w)[:, 1:].sum(1)) == pytest.approx(chain_acceptance(p, q, "block"), abs=1e-13)


def test_toy_example_of_the_block_verification_paper():
    """Sun et al. §1: context-free binary models, draft (a, b) = (2/3, 1/3), target (1/3, 2/3), two drafts:
    token verification accepts 10/9 tokens per round in expectation, block verification 11/9."""
    draft, target = np.array([2 / 3, 1 / 3]), np.array([1 / 3, 2 / 3])
    p = [target, np.tile(target, (2, 1)), np.tile(target, (2, 2, 1))]
    q = [draft, np.tile(draft, (2, 1))]
    assert chain_acceptance(p, q, "token") == pytest.approx(10 / 9, abs=1e-15)
    assert chain_acceptance(p, q, "block") == pytest.approx(11 / 9, abs=1e-15)


def _run(rule, p, q, seed, n=N):
    rng = np.random.default_rng(seed)
    p64, q64 = check_tables(p, q)
    k = len(q64)
    x = sample_chains(rng, q64, n)
    num, tokens = rule(jax.random.key(seed), jnp.asarray(x, jnp.int32),
                       jnp.asarray(laws_along(q64, x, k), jnp.float32), jnp.asarray(laws_along(p64, x, k + 1),
                                                                                    jnp.float32))
    return np.asarray(num), np.asarray(tokens), rng


@pytest.mark.parametrize("seed", [0, 1])
def test_jax_block_matches_the_exact_law(seed):
    p, q = _case(seed + 20, v=3, k=3, conc=0.7)
    num, tokens, rng = _run(accept_block, p, q, seed)
    v, k = 3, 3
    counts = np.bincount(pattern_index(tokens, num, v, k), minlength=pattern_offsets(v, k)[-1])
    assert chi_square_pvalue_counts(counts, chain_pattern_law(p, q, "block")) > P_MIN
    # lossless: completing the emitted tokens with target samples gives the target's joint law
    target = completions(check_tables(p, q)[0], k)[0].ravel()
    assert chi_square_pvalue_counts(np.bincount(complete(rng, check_tables(p, q)[0], tokens, num, k),
                                                minlength=v ** (k + 1)), target) > P_MIN
    # negative controls (power): the same samples reject the token rule's law and the token-wise-weights bug
    assert chi_square_pvalue_counts(counts, chain_pattern_law(p, q, "token")) < P_MIN
    assert chi_square_pvalue_counts(counts, chain_pattern_law(p, q, "block_tokenwise")) < P_MIN
    # Monte Carlo mean accepted length = the exact formula (mean z-test)
    exact = chain_acceptance(p, q, "block")
    assert abs(num.mean() - exact) < 4.5 * num.std() / np.sqrt(len(num))


def test_degenerate_inputs():
    v, k, b = 4, 3, 64
    rng = np.random.default_rng(5)
    q = rng.dirichlet(np.ones(v), size=(b, k))
    x = jnp.asarray(np.argmax(q, -1), jnp.int32)
    key = jax.random.key(0)
    # p = q: every draft passes
    p = np.concatenate([q, rng.dirichlet(np.ones(v), size=(b, 1))], 1)
    num, _ = accept_block(key, x, jnp.asarray(q, jnp.float32), jnp.asarray(p, jnp.float32))
    assert np.all(np.asarray(num) == k)
    # disjoint supports: nothing passes, the correction lies in p's support
    qd = np.zeros((b, k, v)); qd[..., :2] = 0.5
    pd = np.zeros((b, k + 1, v)); pd[..., 2:] = 0.5
    num, tok = accept_block(key, jnp.zeros((b, k), jnp.int32), jnp.asarray(qd, jnp.float32), jnp.asarray(pd, jnp.float32))
    assert np.all(np.asarray(num) == 0) and np.all(np.asarray(tok)[:, 0] >= 2) and np.all(np.asarray(tok)[:, 1:] == -1)
    # one-hot drafts and targets (temperature 0): block = token, exactly
    oh_q = np.eye(v)[rng.integers(0, v, (b, k))]
    oh_p = np.eye(v)[rng.integers(0, 2, (b, k + 1))]
    xs = jnp.asarray(np.argmax(oh_q, -1), jnp.int32)
    got = accept_block(key, xs, jnp.asarray(oh_q, jnp.float32), jnp.asarray(oh_p, jnp.float32))
    want = accept_chain(key, xs, jnp.asarray(oh_q, jnp.float32), jnp.asarray(oh_p, jnp.float32))
    assert np.array_equal(np.asarray(got[0]), np.asarray(want[0])) and np.array_equal(np.asarray(got[1]),
                                                                                    np.asarray(want[1]))


def test_unchecked_variant_runs_inside_jit():
    p, q = _case(4, v=3, k=2)
    fn = jax.jit(lambda key, x, qq, pp: accept_block_unchecked(key, x, qq, pp))
    num, tokens, _ = _run(lambda *a: fn(*a), p, q, 3, n=256)
    assert num.shape == (256,) and tokens.shape == (256, 3)


def test_bad_input_raises_before_tracing():
    b, k, v = 2, 3, 4
    q = np.full((b, k, v), 0.25, np.float32)
    p = np.full((b, k + 1, v), 0.25, np.float32)
    x = np.zeros((b, k), np.int32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="target_probs"):
        accept_block(key, x, q, p[:, :k])
    with pytest.raises(ValueError, match="NaN"):
        accept_block(key, x, q, np.where(np.arange(v) == 0, np.nan, p).astype(np.float32))
    with pytest.raises(ValueError, match="sum to 1"):
        accept_block(key, x, q * 2, p)
    with pytest.raises(ValueError, match="ids outside"):
        accept_block(key, x + v, q, p)
    with pytest.raises(ValueError, match="zero probability"):
        accept_block(key, x, np.where(np.arange(v) == 0, 0.0, 1 / 3).astype(np.float32) * np.ones((b, k, 1), np.float32), p)
    with pytest.raises(ValueError, match="K >= 1"):
        accept_block(key, np.zeros((b, 0), np.int32), q[:, :0], p[:, :1])


def test_exact_reference_rejects_bad_tables():
    p, q = _case(0, v=3, k=2)
    with pytest.raises(ValueError, match="needs q_tables"):
        chain_acceptance(p[:2], q)
    with pytest.raises(ValueError, match="must have shape"):
        chain_acceptance([p[0], p[2], p[2]], q)
    with pytest.raises(ValueError, match="probability rows"):
        chain_acceptance([p[0] * 2, p[1], p[2]], q)
    with pytest.raises(ValueError, match="probability rows"):
        chain_acceptance([np.full(3, np.nan), p[1], p[2]], q)
    with pytest.raises(ValueError, match="unknown chain verifier"):
        chain_acceptance(p, q, "blocky")
