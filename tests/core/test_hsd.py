"""HSD (hierarchical speculative decoding) settled against block verification by exact enumeration: the published
rule, transcribed step by step, equals block verification except for how the whole draft passes; it accepts more
than block verification and is lossy (TV 1/9 on the block paper's toy example); the jitted rule emits the exact law
(chi-square, with the block law as negative control); the decode loop refuses it unless lossy rules are allowed,
and at temperature 0 it decodes like AR."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.decode.loop import generate
from specjax.methods import make_method
from specjax.sampling import GREEDY
from specjax.testing.pairs import tiny_pair
from specjax.testing.stats import chi_square_pvalue_counts
from specjax.verify.chain import accept_chain
from specjax.verify.hsd import accept_hsd
from tests.exact_tables import complete, laws_along, pattern_index, random_tables, sample_chains
from transport.exact.chain import (along, chain_acceptance, chain_output_law, chain_pattern_law, check_tables,
                                   completions, draft_sequences, pattern_offsets, stop_law, total_variation)

P_MIN = 1e-4


def _toy(k=2):
    """Sun et al.'s toy: context-free binary laws, draft (2/3, 1/3), target (1/3, 2/3)."""
    draft, target = np.array([2 / 3, 1 / 3]), np.array([1 / 3, 2 / 3])
    return ([np.broadcast_to(target, (2,) * (i + 1)).copy() for i in range(k + 1)],
            [np.broadcast_to(draft, (2,) * (i + 1)).copy() for i in range(k)])


def _published_hsd(p_seq, q_seq, x):
    """The published single-draft rule in its own terms, on one drafted chain x `[K]` (p_seq `[K+1, V]`, q_seq
    `[K, V]`): joint prefix masses P_i, Q_i (i = 0..K-1), P̃_i = P_i / max(1, running max of P/Q), step-back
    probability 1 − Σ(P̃_i p_i − Q_i q_i)_+ / max(Σ(·)_+, Σ(·)_−) at each i, and the whole draft passing with
    min(1, P_K/Q_K). Returns (step-back `[K]`, whole-pass probability)."""
    k = len(x)
    p_x, q_x = p_seq[np.arange(k), x], q_seq[np.arange(k), x]
    joint_p = np.concatenate([[1.0], np.cumprod(p_x)[:-1]])
    joint_q = np.concatenate([[1.0], np.cumprod(q_x)[:-1]])
    capped = joint_p / np.maximum.accumulate(np.maximum(joint_p / joint_q, 1.0))
    diff = capped[:, None] * p_seq[:k] - joint_q[:, None] * q_seq
    plus, minus = np.maximum(diff, 0).sum(1), np.maximum(-diff, 0).sum(1)
    step_back = 1 - plus / np.maximum(plus, minus)
    return step_back, min(1.0, float(np.prod(p_x / q_x)))


def _pi_from(step_back, whole):
    """P(n accepted) `[K+1]`: n = K if the whole draft passes, else the last i < K that does not step back."""
    k = len(step_back)
    h = np.concatenate([1 - step_back, [whole]])
    return np.array([h[n] * np.prod(1 - h[n + 1:]) for n in range(k + 1)])


def test_toy_example_settles_hsd_against_block_verification():
    """E[accepted drafts] (tokens per round = 1 + these): token 10/9, block 11/9, HSD 12/9 — HSD's excess comes
    with an emitted law 1/9 away (in TV) from the target's; token and block are exact."""
    p, q = _toy()
    target = completions(p, 2)[0]
    assert chain_acceptance(p, q, "token") == pytest.approx(10 / 9, abs=1e-15)
    assert chain_acceptance(p, q, "block") == pytest.approx(11 / 9, abs=1e-15)
    assert chain_acceptance(p, q, "hsd") == pytest.approx(12 / 9, abs=1e-15)
    assert total_variation(chain_output_law(p, q, "hsd"), target) == pytest.approx(1 / 9, abs=1e-15)
    for lossless in ("token", "block"):
        assert total_variation(chain_output_law(p, q, lossless), target) < 1e-15


@pytest.mark.parametrize("seed", range(4))
def test_published_rule_is_block_verification_but_for_the_whole_pass(seed):
    """On every drafted chain: the published step-back probabilities are block verification's 1 − h_i, and the
    stop law built from them and min(1, P_K/Q_K) is specjax's "hsd" stop law; HSD passes the whole chain more often
    than block verification exactly when P_K > 0 and some proper prefix's joint ratio exceeds max(1, P_K/Q_K), and
    otherwise the two stop laws are equal."""
    rng = np.random.default_rng(seed)
    p, q = check_tables(random_tables(rng, 3, 4, 0.6, 0.1), random_tables(rng, 3, 3, 0.6, 0.1))
    differ = 0
    for x, _ in draft_sequences(q, 3):
        p_seq, q_seq = along(p, x, 4), along(q, x, 3)
        step_back, whole = _published_hsd(p_seq, q_seq, x)
        pi_hsd, final_hsd = stop_law("hsd", p_seq, q_seq, x)
        pi_block, final_block = stop_law("block", p_seq, q_seq, x)
        np.testing.assert_allclose(_pi_from(step_back, whole), pi_hsd, atol=1e-13)
        np.testing.assert_allclose(final_hsd, final_block, atol=1e-15)      # the same correction laws
        ratios = np.cumprod(p_seq[np.arange(3), x] / q_seq[np.arange(3), x])
        block_whole = ratios[-1] / max(1.0, ratios.max())               # block's capped weight p_K
        escapes = ratios[-1] > 0 and ratios[:-1].max() > max(1.0, ratios[-1]) + 1e-12
        assert escapes == (whole > block_whole + 1e-12), x
        if not escapes:
            np.testing.assert_allclose(pi_hsd, pi_block, atol=1e-13)
        differ += escapes
    assert differ > 0


def test_hsd_beats_block_and_is_lossy_on_random_tables():
    """60 random context-dependent cases: HSD never accepts less than block verification, accepts more wherever a
    prefix ratio escapes, and then its completed law is not the target's; with K = 1 (no proper prefix) it is
    block = token verification and exact."""
    rng = np.random.default_rng(7)
    escapes, worst = 0, 0.0
    for _ in range(60):
        v, k = int(rng.integers(2, 4)), int(rng.integers(2, 4))
        conc = float(rng.choice([0.3, 1.0, 3.0]))
        p, q = random_tables(rng, v, k + 1, conc), random_tables(rng, v, k, conc)
        gain = chain_acceptance(p, q, "hsd") - chain_acceptance(p, q, "block")
        tv = total_variation(chain_output_law(p, q, "hsd"), completions(check_tables(p, q)[0], k)[0])
        assert gain > -1e-13
        if gain > 1e-9:
            escapes += 1
            assert tv > 1e-9
        worst = max(worst, tv)
        one_p, one_q = p[:2], q[:1]
        assert chain_acceptance(one_p, one_q, "hsd") == pytest.approx(chain_acceptance(one_p, one_q, "block"),
                                                                      abs=1e-14)
        assert total_variation(chain_output_law(one_p, one_q, "hsd"), completions(check_tables(one_p, one_q)[0],
                                                                                  1)[0]) < 1e-13
    assert escapes >= 30 and worst > 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_jax_hsd_matches_its_exact_law(seed):
    """The jitted rule emits the enumerated HSD pattern law (chi-square); the same samples reject block
    verification's law (power), and their completion fails the target's joint law on the toy (the bias is real)."""
    p, q = (_toy(3) if seed == 0 else (random_tables(np.random.default_rng(30), 3, 4, 2.0),
                                       random_tables(np.random.default_rng(31), 3, 3, 2.0)))
    p64, q64 = check_tables(p, q)
    k, v = len(q64), p64[0].shape[-1]
    rng = np.random.default_rng(seed)
    x = sample_chains(rng, q64, 30_000)
    num, tokens = accept_hsd(jax.random.key(seed), jnp.asarray(x, jnp.int32),
                             jnp.asarray(laws_along(q64, x, k), jnp.float32),
                             jnp.asarray(laws_along(p64, x, k + 1), jnp.float32))
    num, tokens = np.asarray(num), np.asarray(tokens)
    counts = np.bincount(pattern_index(tokens, num, v, k), minlength=pattern_offsets(v, k)[-1])
    assert chi_square_pvalue_counts(counts, chain_pattern_law(p, q, "hsd")) > P_MIN
    assert chi_square_pvalue_counts(counts, chain_pattern_law(p, q, "block")) < P_MIN
    if seed == 0:
        target = completions(p64, k)[0].ravel()
        completed = np.bincount(complete(rng, p64, tokens, num, k), minlength=v ** (k + 1))
        assert chi_square_pvalue_counts(completed, target) < P_MIN


def test_one_hot_laws_make_hsd_token_verification():
    """Temperature 0: every joint ratio is 0 or 1, so HSD accepts exactly while the draft is the target's argmax."""
    b, k, v = 64, 3, 4
    rng = np.random.default_rng(5)
    oh_q, oh_p = np.eye(v)[rng.integers(0, v, (b, k))], np.eye(v)[rng.integers(0, 2, (b, k + 1))]
    xs = jnp.asarray(np.argmax(oh_q, -1), jnp.int32)
    args = (jax.random.key(0), xs, jnp.asarray(oh_q, jnp.float32), jnp.asarray(oh_p, jnp.float32))
    for got, want in zip(accept_hsd(*args), accept_chain(*args)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_bad_input_raises_before_tracing():
    q, p = np.full((2, 3, 4), 0.25, np.float32), np.full((2, 4, 4), 0.25, np.float32)
    with pytest.raises(ValueError, match="target_probs"):
        accept_hsd(jax.random.key(0), np.zeros((2, 3), np.int32), q, p[:, :3])
    with pytest.raises(ValueError, match="sum to 1"):
        accept_hsd(jax.random.key(0), np.zeros((2, 3), np.int32), q * 2, p)


def test_decode_loop_refuses_hsd_unless_lossy_is_allowed_and_decodes_greedy_like_ar(ragged_prompts):
    target, draft = tiny_pair(12, 22)
    tokens, lengths = ragged_prompts
    key = jax.random.key(3)
    with pytest.raises(ValueError, match="'hsd' is lossy.*allow_lossy=True"):
        make_method("chain", num_draft=3, verifier="hsd")
    with pytest.raises(ValueError, match="'hsd' is lossy"):
        generate(target, tokens, lengths, key, method=make_method("chain", num_draft=3), drafter=draft,
                 verifier="hsd", max_new_tokens=8)
    ar = generate(target, tokens, lengths, key, max_new_tokens=16, sampling=GREEDY)
    for method, verifier in ((make_method("chain", num_draft=3, verifier="hsd", allow_lossy=True), None),
                             (make_method("chain", num_draft=3), "hsd")):
        sd = generate(target, tokens, lengths, key, method=method, drafter=draft, verifier=verifier,
                      allow_lossy=True, max_new_tokens=16, sampling=GREEDY)
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens))
