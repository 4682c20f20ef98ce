"""Bad input raises a clear ValueError, eagerly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.verify import multi_draft
from transport import lp_optimum, optimal_acceptance, verifier_acceptance

P = np.array([0.5, 0.3, 0.2])
Q = np.array([0.2, 0.3, 0.5])


@pytest.mark.parametrize("fn", [lambda p, q, k: optimal_acceptance(p, q, k, "iid"),
                                lambda p, q, k: verifier_acceptance(p, q, k, "rrs"),
                                lambda p, q, k: lp_optimum(p, q, k, "iid")])
@pytest.mark.parametrize("p,q,k,match", [
    (np.array([0.6, 0.6, -0.2]), Q, 2, "negative"),
    (np.array([0.5, np.nan, 0.5]), Q, 2, "NaN"),
    (np.array([0.5, 0.3, 0.3]), Q, 2, "sum to 1"),
    (P, Q[:2] / Q[:2].sum(), 2, "same shape"),
    (P, Q, 0, ">= 1"),
    (P, Q, 1.5, "integer"),
    (P.astype(np.float16), Q.astype(np.float16), 2, "half precision"),
])
def test_bad_inputs_raise(fn, p, q, k, match):
    with pytest.raises(ValueError, match=match):
        fn(p, q, k)


def test_unknown_names_and_law_constraints():
    with pytest.raises(ValueError, match="unknown draft law"):
        optimal_acceptance(P, Q, 2, "beam")
    with pytest.raises(ValueError, match="unknown verifier"):
        verifier_acceptance(P, Q, 2, "magic")
    with pytest.raises(ValueError, match="spechub"):
        verifier_acceptance(P, Q, 3, "spechub")
    with pytest.raises(ValueError, match="greedy"):
        optimal_acceptance(P, np.array([1.0, 0.0, 0.0]), 2, "greedy")
    with pytest.raises(ValueError, match="enumeration"):
        verifier_acceptance(np.ones(200) / 200, np.ones(200) / 200, 4, "rrs_without_replacement")


def test_rule_inputs_checked_eagerly_and_not_under_jit():
    key, p, q = jax.random.key(0), jnp.asarray(P, jnp.float32), jnp.asarray(Q, jnp.float32)
    ok = jnp.ones(2, bool)
    with pytest.raises(ValueError, match="outside"):
        multi_draft.rrs_iid(key, p, q, jnp.array([0, 3], jnp.int32), ok)
    with pytest.raises(ValueError, match="q\\(x\\) = 0"):
        multi_draft.rrs_iid(key, p, jnp.array([0.0, 0.5, 0.5]), jnp.array([0, 1], jnp.int32), ok)
    with pytest.raises(ValueError, match="valid"):
        multi_draft.rrs_iid(key, p, q, jnp.array([0, 1], jnp.int32), jnp.ones(3, bool))
    with pytest.raises(ValueError, match="hub"):
        multi_draft.spechub(key, p, q, jnp.array([0, 1], jnp.int32), ok)
    with pytest.raises(ValueError, match="sum to 1"):
        multi_draft.kseq(key, p * 2, q, jnp.array([0, 1], jnp.int32), ok)
    slot, _ = jax.jit(multi_draft.rrs_iid)(key, p, q, jnp.array([0, 1], jnp.int32), ok)   # traced: shape checks only
    assert slot.dtype == jnp.int32
