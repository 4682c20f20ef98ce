import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.sampling import SamplingConfig, sample_token, warp_logits
from specjax.testing.stats import binomial_z, chi_square_pvalue


def test_warps_match_their_definitions():
    logits = jnp.log(jnp.array([0.05, 0.4, 0.1, 0.3, 0.15]))
    np.testing.assert_allclose(warp_logits(logits, SamplingConfig(1.0)), [0.05, 0.4, 0.1, 0.3, 0.15], rtol=1e-6)
    np.testing.assert_array_equal(warp_logits(logits, SamplingConfig(0.0)), [0, 1, 0, 0, 0])
    t = np.array([0.05, 0.4, 0.1, 0.3, 0.15]) ** 2
    np.testing.assert_allclose(warp_logits(logits, SamplingConfig(0.5)), t / t.sum(), rtol=1e-5)
    np.testing.assert_allclose(warp_logits(logits, SamplingConfig(1.0, top_k=2)), [0, 4 / 7, 0, 3 / 7, 0], rtol=1e-6)
    # top-p 0.75: 0.4 + 0.3 = 0.7 < 0.75, so 0.15 joins
    np.testing.assert_allclose(warp_logits(logits, SamplingConfig(1.0, top_p=0.75)),
                               [0, 0.4 / 0.85, 0, 0.3 / 0.85, 0.15 / 0.85], rtol=1e-5)


def test_greedy_ties_go_to_the_smallest_id():
    np.testing.assert_array_equal(warp_logits(jnp.array([1.0, 3.0, 3.0]), SamplingConfig(0.0)), [0, 1, 0])


def test_sample_token_follows_probs():
    probs = jnp.array([0.1, 0.0, 0.6, 0.3])
    draws = sample_token(jax.random.key(0), jnp.broadcast_to(probs, (20000, 4)))
    assert chi_square_pvalue(np.asarray(draws), np.asarray(probs)) > 1e-4


@pytest.mark.parametrize("v", [700, 1300])
def test_two_stage_sampler_follows_probs_over_large_vocabularies(v):
    """The two-stage sampler (V > 2 blocks; a ragged last block at 1300) against the exact law, with zeros, a
    near-one-hot block and a negative control: the same draws fail against a slightly different law."""
    rng = np.random.default_rng(v)
    probs = rng.dirichlet(np.full(v, 0.3))
    probs[rng.choice(v, v // 3, replace=False)] = 0.0
    probs[5] = 2.0                                             # one heavy token
    probs /= probs.sum()
    draws = np.asarray(sample_token(jax.random.key(1), jnp.broadcast_to(jnp.asarray(probs, jnp.float32),
                                                                        (200_000, v))))
    assert np.all(probs[draws] > 0)
    assert chi_square_pvalue(draws, probs) > 1e-4
    heavy = int(np.sum(draws == 5))
    assert abs(binomial_z(heavy, len(draws), probs[5])) < 4.5
    other = probs.copy()
    other[5] *= 0.97                                          # a 3% error on the heavy token is detected
    assert abs(binomial_z(heavy, len(draws), other[5] / other.sum())) > 4.5


@pytest.mark.parametrize("kwargs", [dict(temperature=-0.1), dict(temperature=float("nan")), dict(top_k=-1),
                                    dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_sampling_config(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)
