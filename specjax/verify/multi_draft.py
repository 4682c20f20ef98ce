"""Multi-draft verifier rules as pure jax functions (one implementation each; jittable and vmappable).

Shape contract (every rule): `rule(key, p[V], q[V], drafts[k] int32, valid[k] bool) -> (slot int32, token int32)`.
`slot` is the accepted slot (-1 if none) and `token` the accepted draft or the correction token. A slot with
`valid=False` is padding: never accepted, skipped. Drafts are verified in sampling order. Every rule is lossless:
token ~ p exactly (float32: up to O(V·eps)). Acceptance tests are written `u * den < num` (no division, no 0/0).
Public rules run eager ValueError checks on concrete inputs (shape-only under jit/vmap), then a jitted core.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from specjax.sampling import sample_token
from specjax.validation import check_probs, check_same_shape, check_tokens, is_concrete
from specjax.verify.chain import residual_distribution


def _check(p, q, drafts, valid, *, k: int | None = None) -> None:
    check_probs("p", p, ndim=1)
    check_probs("q", q, ndim=1)
    check_same_shape("p", p, "q", q)
    if np.ndim(drafts) != 1:
        raise ValueError(f"drafts must be [k], got shape {np.shape(drafts)}")
    check_tokens("drafts", drafts, np.shape(p)[0])
    if np.shape(valid) != np.shape(drafts) or np.dtype(valid.dtype if hasattr(valid, "dtype") else np.asarray(valid).dtype) != bool:
        raise ValueError(f"valid must be a bool array shaped like drafts {np.shape(drafts)}")
    if k is not None and np.shape(drafts)[0] != k:
        raise ValueError(f"this rule needs exactly {k} drafts, got {np.shape(drafts)[0]}")
    if is_concrete(q) and is_concrete(drafts) and is_concrete(valid):
        qx = np.asarray(q)[np.asarray(drafts)]
        if np.any(np.asarray(valid) & (qx <= 0)):
            raise ValueError("a valid draft has q(x) = 0: q must be the law the drafts were sampled from")


def _slot_of(token: jax.Array, drafts: jax.Array, valid: jax.Array) -> jax.Array:
    """First valid slot holding `token`, or -1 (a correction token that lands on a draft counts as accepted)."""
    hit = valid & (drafts == token)
    return jnp.where(jnp.any(hit), jnp.argmax(hit), -1).astype(jnp.int32)


def _rrs_chain(u, p, q, drafts, valid, without_replacement: bool):
    """Recursive rejection sampling over the slots with uniforms u `[k]` -> (slot, final target residual `[V]`)."""
    def step(carry, xs):
        pi, qi, slot = carry
        j, x, ok, uj = xs
        mass = jnp.sum(qi) if without_replacement else jnp.ones((), qi.dtype)   # remaining q mass, summed directly
        live = ok & (slot < 0)
        accept = live & (uj * qi[x] < pi[x] * mass)
        rejected = live & ~accept
        pi = jnp.where(rejected, residual_distribution(pi, qi / mass), pi)
        if without_replacement:
            qi = jnp.where(rejected, qi.at[x].set(0.0), qi)
        return (pi, qi, jnp.where(accept, j, slot)), None

    init = (p, q, jnp.array(-1, jnp.int32))
    (pi, _, slot), _ = jax.lax.scan(step, init, (jnp.arange(drafts.shape[0], dtype=jnp.int32), drafts, valid, u))
    return slot, pi


@partial(jax.jit, static_argnames="without_replacement")
def _rrs(key, p, q, drafts, valid, without_replacement):
    key_u, key_res = jax.random.split(key)
    u = jax.random.uniform(key_u, drafts.shape, p.dtype)
    slot, pi = _rrs_chain(u, p, q, drafts, valid, without_replacement)
    token = jnp.where(slot >= 0, drafts[jnp.maximum(slot, 0)], sample_token(key_res, pi))
    return slot, token.astype(jnp.int32)


def rrs_iid(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Recursive rejection sampling for i.i.d. drafts x_i ~ q (SpecInfer). p, q `[V]`; drafts, valid `[k]`.
    Accept x_i w.p. min(1, p_i(x_i)/q(x_i)), else p_{i+1} = norm((p_i - q)_+). Returns (slot, token)."""
    _check(p, q, drafts, valid)
    return _rrs(key, p, q, drafts, valid, without_replacement=False)


def rrs_without_replacement(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Recursive rejection sampling for drafts sampled without replacement from q (RSD), in sampling order.
    Each draft is tested against q with the earlier drafts removed (renormalised by the remaining mass)."""
    _check(p, q, drafts, valid)
    return _rrs(key, p, q, drafts, valid, without_replacement=True)


@partial(jax.jit, static_argnames="without_replacement")
def rrs_residual(p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array, without_replacement: bool = False):
    """Target residual `[V]` after every valid slot was rejected (the correction law of the RRS rules); for trees."""
    never = jnp.full(drafts.shape, jnp.inf, p.dtype)          # inf * q(x) < p(x) is never true: force rejection
    return _rrs_chain(never, p, q, drafts, valid, without_replacement)[1]


def _kseq_h(p, q, k, rho):
    not_beta = jnp.sum(jnp.maximum(q - p / rho, 0.0), -1)     # 1 - β(ρ) as a direct sum
    return rho * (1.0 - not_beta) - (1.0 - not_beta ** k)


@jax.jit
def kseq_rho_star(p: jax.Array, q: jax.Array, k: jax.Array) -> jax.Array:
    """SpecTr's ρ*: the smallest ρ in [1, k] with 1 - (1 - β(ρ))^k <= ρ β(ρ), β(ρ) = Σ min(q, p/ρ).
    Bisection to the dtype's resolution, returning the upper end so the residual stays non-negative."""
    k = jnp.asarray(k, p.dtype)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = _kseq_h(p, q, k, mid) >= 0
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    one = jnp.ones((), p.dtype)
    _, hi = jax.lax.fori_loop(0, 64, body, (one, jnp.maximum(k, one)))
    return jnp.where(_kseq_h(p, q, k, one) >= 0, one, hi)


@jax.jit
def _kseq(key, p, q, drafts, valid, rho):
    key_u, key_res = jax.random.split(key)
    k = jnp.sum(valid).astype(p.dtype)
    rho = jnp.where(jnp.isnan(rho), kseq_rho_star(p, q, k), rho)
    u = jax.random.uniform(key_u, drafts.shape, p.dtype)
    passed = valid & (u * rho * q[drafts] < p[drafts])        # accept w.p. min(1, p/(ρq))
    slot = jnp.where(jnp.any(passed), jnp.argmax(passed), -1).astype(jnp.int32)
    m = jnp.minimum(q, p / rho)
    beta = jnp.sum(m)
    accept1 = 1.0 - jnp.sum(jnp.maximum(q - p / rho, 0.0)) ** k
    gamma = jnp.where(beta > 0, accept1 / jnp.where(beta > 0, beta, 1.0), k)
    correction = sample_token(key_res, residual_distribution(p, gamma * m))
    return slot, jnp.where(slot >= 0, drafts[jnp.maximum(slot, 0)], correction).astype(jnp.int32)


def kseq(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array, rho=None):
    """SpecTr K-SEQ for i.i.d. drafts: accept the first x_i with u·ρ·q(x_i) < p(x_i), else sample
    norm((p - γ·min(q, p/ρ))_+) with γ = (1 - (1-β)^k)/β. k = number of valid drafts; rho defaults to ρ*
    (`kseq_rho_star`); a given rho must be lossless: 1 - (1-β(ρ))^k <= ρβ(ρ), e.g. any ρ >= k."""
    _check(p, q, drafts, valid)
    rho = jnp.asarray(jnp.nan if rho is None else rho, jnp.asarray(p).dtype)
    return _kseq(key, p, q, drafts, valid, rho)


@jax.jit
def _spechub(key, p, q, drafts, valid):
    v = p.shape[0]
    a = jnp.argmax(q)                                        # the hub; ties -> smallest id
    not_hub = jnp.arange(v) != a
    q_not_a = jnp.sum(jnp.where(not_hub, q, 0.0))            # 1 - q_a as a direct sum
    w = jnp.where(not_hub, q[a] * q / q_not_a, 0.0)          # mass of the pair (a, i)
    p1 = jnp.where(not_hub, jnp.maximum(p - q, 0.0), 0.0)
    big_u = jnp.sum(jnp.where(not_hub, jnp.maximum(q - p, 0.0), 0.0))
    big_w = jnp.sum(jnp.where(not_hub, jnp.maximum(w - p1, 0.0), 0.0))
    pa1 = jnp.maximum(p[a] - big_w, 0.0)
    accepted = jnp.where(not_hub, jnp.minimum(p, q / q_not_a), jnp.minimum(p[a], big_u + big_w))
    hub_first = drafts[0] == a
    i = jnp.where(hub_first, drafts[1], drafts[0])
    u1, u2 = jax.random.uniform(jax.random.fold_in(key, 0), (2,), p.dtype)
    first = jnp.where(hub_first, u1 * w[i] < p1[i], u1 * q[i] < p[i])
    second = jnp.where(hub_first, u2 * big_w < p[a], u2 * big_u < pa1)
    correction = sample_token(jax.random.fold_in(key, 1), residual_distribution(p, accepted))
    slot_i = jnp.where(hub_first, 1, 0)
    slot = jnp.where(first, slot_i, jnp.where(second, 1 - slot_i, -1)).astype(jnp.int32)
    token = jnp.where(first, i, jnp.where(second, a, correction))
    return slot, token.astype(jnp.int32)


def spechub(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """SpecHub (k = 2) for drafts from `sample_spechub`: one draft is the hub a = argmax q. Optimal for its draft law:
    acceptance min(1, p_a + Σ_{i≠a} min(p_i, q_i/(1-q_a))). Needs both slots valid."""
    _check(p, q, drafts, valid, k=2)
    if is_concrete(valid) and not np.all(np.asarray(valid)):
        raise ValueError("spechub needs both draft slots valid")
    if is_concrete(q) and is_concrete(drafts):
        hub = int(np.argmax(np.asarray(q)))
        if hub not in np.asarray(drafts).tolist() or drafts[0] == drafts[1]:
            raise ValueError("spechub drafts must be two distinct tokens, one of them the hub argmax q")
    return _spechub(key, p, q, drafts, valid)


@jax.jit
def _greedy(key, p, q, drafts, valid):
    v = p.shape[0]
    in_g = jnp.zeros(v, bool).at[drafts[:-1]].max(valid[:-1])
    q_rest = jnp.where(in_g, 0.0, q)
    rest_mass = jnp.sum(q_rest)
    x = drafts[-1]
    key_u, key_res = jax.random.split(key)
    accept = valid[-1] & (jax.random.uniform(key_u, (), p.dtype) * q[x] < p[x] * rest_mass)
    correction = sample_token(key_res, residual_distribution(p, q_rest / rest_mass))   # equals p on G
    token = jnp.where(accept, x, correction).astype(jnp.int32)
    slot = jnp.where(accept, drafts.shape[0] - 1, _slot_of(token, drafts[:-1], valid[:-1]))
    return slot.astype(jnp.int32), token


def greedy_drafts_verifier(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Optimal verifier for greedy drafts (Hu et al.): drafts[:-1] = G (top-(k-1) of q), drafts[-1] ~ q(·|V∖G).
    Accept the last draft w.p. min(1, p/q'), else sample norm((p - q')_+), which equals p on G; landing on a
    token of G accepts that slot. Acceptance p(G) + Σ_{x∉G} min(p_x, q'_x) = α*(greedy)."""
    _check(p, q, drafts, valid)
    return _greedy(key, p, q, drafts, valid)


@jax.jit
def _lp_plan(key, p, q, drafts, valid, sets, accept_probs, residual):
    member = jnp.zeros(p.shape[0], bool).at[drafts].max(valid)
    row = jnp.argmax(jnp.all(sets == member[None, :], axis=1))
    acc = accept_probs[row]
    law = acc + jnp.maximum(1.0 - jnp.sum(acc), 0.0) * residual
    token = sample_token(key, law)
    return _slot_of(token, drafts, valid), token


def lp_plan_verifier(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array, *,
                     sets: jax.Array, accept_probs: jax.Array, residual: jax.Array):
    """Sample from an LP transport plan (e.g. `transport.lp.LPPlan`): sets `[M, V]` bool (the draft sets of the
    plan), accept_probs `[M, V]` = π(y|S), residual `[V]` the global correction law. The output is y ~ π(·|S) or the
    residual with the leftover mass; y in the draft set counts as accepted. Optimal when the plan is."""
    _check(p, q, drafts, valid)
    if is_concrete(sets) and is_concrete(drafts) and is_concrete(valid):
        member = np.zeros(np.shape(p)[0], bool)
        member[np.asarray(drafts)[np.asarray(valid)]] = True
        if not np.any(np.all(np.asarray(sets) == member, axis=1)):
            raise ValueError("the draft set is not a set of the LP plan")
    return _lp_plan(key, p, q, drafts, valid, jnp.asarray(sets), jnp.asarray(accept_probs, jnp.asarray(p).dtype),
                    jnp.asarray(residual, jnp.asarray(p).dtype))
