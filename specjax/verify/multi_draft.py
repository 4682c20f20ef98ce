"""Multi-draft verifier rules as pure jax functions (one implementation each; jittable and vmappable).

Shape contract (every rule): `rule(key, p[V], q[V], drafts[k] int, valid[k] bool) -> (slot int32, token int32)`
with k >= 1 slots (k = 0 is a ValueError). `slot` is the accepted slot (-1 if none) and `token` the accepted draft
or the correction token. Drafts are verified in sampling order; acceptance tests are written `u * den < num` (no
division, no 0/0).

Padding: a slot with `valid=False` is padding, never accepted; padded slots may hold any id in [0, V). Two
contracts, one per kind of draft law (`names.POSITIONAL_RULES`; transport/THEORY.md §3.10):
* prefix (rrs, rrs_without_replacement, kseq, lp_plan, point_mass; Khisti's rules): the valid slots, in slot order,
  are the drafts (a prefix-compacted list in sampling order) and must be a sample of the rule's law with n = Σ valid
  drafts. A padded call behaves exactly like the unpadded call on the valid slots (same key, same token, the slot
  mapped back); every slot padded emits a sample of p with slot -1. Masking any slots of an i.i.d. sample, or the
  trailing slots of a without-replacement sample (what the samplers do), leaves such a sample; masking an interior
  slot of a without-replacement sample does not (its draw conditioned the later ones), and no id reveals it.
* positional (greedy, spechub): slot j holds the j-th draft of the law's own k-slot layout (the sampler's), and
  padding masks slots of that sample; the rule verifies the valid slots by the law they keep (see each rule).
Every rule is lossless when its drafts follow the rule's draft law under its contract: token ~ p exactly (float32: up
to O(V·eps)).

Public rules check their inputs eagerly (ValueError on concrete inputs, shape-only under jit/vmap:
`specjax.verify.checks`) and then run a jitted core; what a trace cannot check is stated as the rule's assumption.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from specjax.sampling import sample_token
from specjax.validation import check_int, check_key, check_probs, check_same_shape
from specjax.verify.chain import residual_distribution
from specjax.verify.checks import (check_distinct, check_greedy_drafts, check_kseq_rho, check_plan, check_rule_inputs,
                                   check_spechub_drafts)
from specjax.verify.draft_laws import greedy_set


def _on_valid_prefix(core, key, p, q, drafts, valid, *args):
    """Run `core(key, p, q, drafts, live, *args)` on the valid drafts moved (stably) to the front, live `[k]` = the
    first n = Σ valid slots, and map its slot back to the caller's slot: this is the whole padding contract."""
    order = jnp.argsort(~valid, stable=True)
    live = jnp.arange(drafts.shape[0]) < jnp.sum(valid)
    slot, token = core(key, p, q, drafts[order], live, *args)
    return jnp.where(slot >= 0, order[jnp.maximum(slot, 0)], -1).astype(jnp.int32), token.astype(jnp.int32)


def _slot_uniforms(key: jax.Array, k: int, dtype) -> jax.Array:
    """u_j `[k]` from fold_in(key, j): draft j sees the same uniform whatever the number of slots, so a padded call
    reproduces the unpadded one exactly."""
    return jax.vmap(lambda j: jax.random.uniform(jax.random.fold_in(key, j), (), dtype))(jnp.arange(k))


def _slot_of(token: jax.Array, drafts: jax.Array, live: jax.Array) -> jax.Array:
    """First live slot holding `token`, or -1 (a correction token that lands on a draft counts as accepted)."""
    hit = live & (drafts == token)
    return jnp.where(jnp.any(hit), jnp.argmax(hit), -1).astype(jnp.int32)


def _arrays(*xs):
    return tuple(jnp.asarray(x) for x in xs)


# ---- recursive rejection sampling (iid and without replacement) ----------------------------------------------------

def _rrs_chain(u, p, q, drafts, live, without_replacement: bool):
    """Recursive rejection sampling over the slots with uniforms u `[k]` -> (slot, final target residual `[V]`)."""
    def step(carry, xs):
        pi, qi, slot = carry
        j, x, ok, uj = xs
        mass = jnp.sum(qi) if without_replacement else jnp.ones((), qi.dtype)   # remaining q mass, summed directly
        active = ok & (slot < 0)
        accept = active & (uj * qi[x] < pi[x] * mass)
        rejected = active & ~accept
        pi = jnp.where(rejected, residual_distribution(pi, qi / mass), pi)
        if without_replacement:
            qi = jnp.where(rejected, qi.at[x].set(0.0), qi)
        return (pi, qi, jnp.where(accept, j, slot)), None

    init = (p, q, jnp.array(-1, jnp.int32))
    (pi, _, slot), _ = jax.lax.scan(step, init, (jnp.arange(drafts.shape[0], dtype=jnp.int32), drafts, live, u))
    return slot, pi


def _rrs_core(key, p, q, drafts, live, without_replacement: bool):
    key_u, key_res = jax.random.split(key)
    u = _slot_uniforms(key_u, drafts.shape[0], p.dtype)
    slot, pi = _rrs_chain(u, p, q, drafts, live, without_replacement)
    return slot, jnp.where(slot >= 0, drafts[jnp.maximum(slot, 0)], sample_token(key_res, pi))


@partial(jax.jit, static_argnames="without_replacement")
def _rrs(key, p, q, drafts, valid, without_replacement):
    return _on_valid_prefix(partial(_rrs_core, without_replacement=without_replacement), key, p, q, drafts, valid)


def rrs_iid(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Recursive rejection sampling for i.i.d. drafts x_i ~ q (SpecInfer). p, q `[V]`; drafts, valid `[k]`.
    Accept x_i w.p. min(1, p_i(x_i)/q(x_i)), else p_{i+1} = norm((p_i - q)_+). Returns (slot, token)."""
    check_key("key", key)
    check_rule_inputs(p, q, drafts, valid)
    return _rrs(key, *_arrays(p, q, drafts, valid), without_replacement=False)


def rrs_without_replacement(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Recursive rejection sampling for drafts sampled without replacement from q (RSD), in sampling order. p, q `[V]`;
    drafts, valid `[k]`. Each draft is tested against q with the earlier drafts removed (renormalised by the
    remaining mass). The valid drafts must be distinct (checked on concrete inputs; assumed under jit). Padding:
    mask only trailing slots of a sample (the sampler's own masking); an interior mask is not a smaller sample (module
    doc)."""
    check_key("key", key)
    check_distinct(check_rule_inputs(p, q, drafts, valid), "without-replacement")
    return _rrs(key, *_arrays(p, q, drafts, valid), without_replacement=True)


@partial(jax.jit, static_argnames="without_replacement")
def _rrs_residual(p, q, drafts, valid, without_replacement):
    never = jnp.full(drafts.shape, jnp.inf, p.dtype)          # inf * q(x) < p(x) is never true: force rejection
    return _rrs_chain(never, p, q, drafts, valid, without_replacement)[1]


def rrs_residual(p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array, without_replacement: bool = False):
    """Target residual `[V]` after every valid slot was rejected (the correction law of the RRS rules); for trees.
    p, q `[V]`; drafts, valid `[k]` (same checks as the rule)."""
    live = check_rule_inputs(p, q, drafts, valid)
    if without_replacement:
        check_distinct(live, "without-replacement")
    return _rrs_residual(*_arrays(p, q, drafts, valid), without_replacement=bool(without_replacement))


# ---- SpecTr K-SEQ ----------------------------------------------------------------------------------------------------

def _kseq_h(p, q, k, rho):
    not_beta = jnp.sum(jnp.maximum(q - p / rho, 0.0), -1)     # 1 - β(ρ) as a direct sum
    return rho * (1.0 - not_beta) - (1.0 - not_beta ** k)


@jax.jit
def _rho_star(p, q, k):
    k = jnp.asarray(k, p.dtype)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = _kseq_h(p, q, k, mid) >= 0
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    one = jnp.ones((), p.dtype)
    _, hi = jax.lax.fori_loop(0, 64, body, (one, jnp.maximum(k, one)))
    return jnp.where(_kseq_h(p, q, k, one) >= 0, one, hi)


def kseq_rho_star(p: jax.Array, q: jax.Array, k) -> jax.Array:
    """SpecTr's ρ* for p, q `[V]` and k >= 0 drafts: the smallest ρ in [1, max(k, 1)] with
    1 - (1 - β(ρ))^k <= ρ β(ρ), β(ρ) = Σ min(q, p/ρ). Bisection to the dtype's resolution, returning the upper end so
    the residual stays non-negative. k = 0 gives 1 (nothing to accept)."""
    check_probs("p", p, ndim=1)
    check_probs("q", q, ndim=1)
    check_same_shape("p", p, "q", q)
    if not hasattr(k, "shape"):                              # a Python number must be an int; arrays: a scalar
        check_int("k", k, low=0)
    elif np.ndim(k) != 0:
        raise ValueError(f"k must be a scalar, got shape {np.shape(k)}")
    return _rho_star(*_arrays(p, q), k)


def _kseq_core(key, p, q, drafts, live, rho):
    key_u, key_res = jax.random.split(key)
    k = jnp.sum(live).astype(p.dtype)
    rho = jnp.where(jnp.isnan(rho), _rho_star(p, q, k), rho)
    u = _slot_uniforms(key_u, drafts.shape[0], p.dtype)
    passed = live & (u * rho * q[drafts] < p[drafts])        # accept w.p. min(1, p/(ρq))
    slot = jnp.where(jnp.any(passed), jnp.argmax(passed), -1).astype(jnp.int32)
    m = jnp.minimum(q, p / rho)
    beta = jnp.sum(m)
    accept1 = 1.0 - jnp.sum(jnp.maximum(q - p / rho, 0.0)) ** k
    gamma = jnp.where(beta > 0, accept1 / jnp.where(beta > 0, beta, 1.0), k)
    correction = sample_token(key_res, residual_distribution(p, gamma * m))
    return slot, jnp.where(slot >= 0, drafts[jnp.maximum(slot, 0)], correction)


@jax.jit
def _kseq(key, p, q, drafts, valid, rho):
    return _on_valid_prefix(_kseq_core, key, p, q, drafts, valid, rho)


def kseq(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array, rho=None):
    """SpecTr K-SEQ for i.i.d. drafts; p, q `[V]`, drafts, valid `[k]`: accept the first x_i with u·ρ·q(x_i) < p(x_i),
    else sample norm((p - γ·min(q, p/ρ))_+) with γ = (1 - (1-β)^k)/β. k = number of valid drafts; rho defaults to
    ρ* (`kseq_rho_star`); a given rho must be in [1, max(k, 1)] and lossless, 1 - (1-β(ρ))^k <= ρβ(ρ) (ρ = k always
    is): checked on concrete inputs, assumed under jit."""
    check_key("key", key)
    live = check_rule_inputs(p, q, drafts, valid)
    check_kseq_rho(rho, p, q, live)
    p, q, drafts, valid = _arrays(p, q, drafts, valid)
    return _kseq(key, p, q, drafts, valid, jnp.asarray(jnp.nan if rho is None else rho, p.dtype))


# ---- SpecHub (k = 2) -------------------------------------------------------------------------------------------------

def _second_draft_law(q):
    """Law `[V]` of SpecHub's second draft x2 alone, hub a = argmax q: x2 = a when x1 != a (mass q(V∖a)), else
    x2 ~ q(·|V∖a), so r_i = q_a q_i / q(V∖a) off the hub. Off-hub zeros when q(V∖a) = 0 (x2 then never exists)."""
    a = jnp.argmax(q)                                        # the hub; ties -> smallest id
    not_hub = jnp.arange(q.shape[0]) != a
    q_not_a = jnp.sum(jnp.where(not_hub, q, 0.0))            # 1 - q_a as a direct sum
    return jnp.where(not_hub, q[a] * q / jnp.where(q_not_a > 0, q_not_a, 1.0), q_not_a)


def _spechub_pair(key, p, q, drafts):
    """SpecHub on two drafts, one of them the hub a = argmax q (THEORY §3.5)."""
    v = p.shape[0]
    a = jnp.argmax(q)                                        # the hub; ties -> smallest id
    not_hub = jnp.arange(v) != a
    q_not_a = jnp.sum(jnp.where(not_hub, q, 0.0))            # 1 - q_a as a direct sum
    w = jnp.where(not_hub, _second_draft_law(q), 0.0)        # mass of the pair (a, i)
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
    return slot, jnp.where(first, i, jnp.where(second, a, correction))


def _spechub_core(key, p, q, drafts, valid):
    """Positional: slot 0 is x1 ~ q, slot 1 is x2. Each slot alone is one draft of its own law, verified by the
    single-draft rule against that law (x1: q; x2: `_second_draft_law`); both: the pair rule; none: y ~ p."""
    first = _rrs_core(key, p, q, drafts[:1], valid[:1], without_replacement=False)
    if drafts.shape[0] == 1:
        return first
    second = _rrs_core(key, p, _second_draft_law(q), drafts[1:], valid[1:], without_replacement=False)
    pair = _spechub_pair(key, p, q, drafts)
    second_slot = jnp.where(second[0] >= 0, 1, -1).astype(jnp.int32)
    slot = jnp.where(valid[0], jnp.where(valid[1], pair[0], first[0]), second_slot)
    return slot, jnp.where(valid[0], jnp.where(valid[1], pair[1], first[1]), second[1]).astype(jnp.int32)


_spechub = jax.jit(_spechub_core)


def spechub(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """SpecHub for drafts from `sample_spechub`; p, q `[V]`, drafts, valid `[k]` with k in {1, 2}; optimal for its
    draft law: acceptance min(1, p_a + Σ_{i≠a} min(p_i, q_i/(1-q_a))), hub a = argmax q.

    Padding is positional (the sampler's layout): slot 0 holds x1 ~ q, slot 1 holds x2 (the hub when x1 is not,
    else a draw from q(·|V∖a)). Two valid slots must hold distinct tokens, one of them the hub (checked on concrete
    inputs, assumed under jit). Slot 0 alone is x1 ~ q, verified by the single-draft rule against q; slot 1 alone is
    x2, whose law r (r_a = q(V∖a), r_i = q_a q_i / q(V∖a)) is not q: it is verified by the single-draft rule against
    r (a lone x2 = a needs q(V∖a) > 0: checked on concrete inputs); none emits y ~ p. Returns (slot, token)."""
    check_key("key", key)
    check_spechub_drafts(q, drafts, valid, check_rule_inputs(p, q, drafts, valid, max_slots=2))
    return _spechub(key, *_arrays(p, q, drafts, valid))


# ---- greedy drafts (Hu et al.) ---------------------------------------------------------------------------------------

def _greedy_core(key, p, q, drafts, valid):
    """Positional: slots 0..k-2 hold G = top-(k-1) of q, slot k-1 the draw from q' = q(·|V∖G). G is read from q, not
    from the slots, so padding a G slot (junk id) changes only which slot a correction landing on its token credits."""
    k = drafts.shape[0]
    in_g = jnp.zeros(p.shape[0], bool)
    if k > 1:
        in_g = in_g.at[greedy_set(q, k - 1)].set(True)
    q_rest = jnp.where(in_g, 0.0, q)
    rest_mass = jnp.sum(q_rest)
    x, sampled = drafts[k - 1], valid[k - 1]
    key_u, key_res = jax.random.split(key)
    accept = sampled & (jax.random.uniform(key_u, (), p.dtype) * q[x] < p[x] * rest_mass)
    # the draw's law q'; a padded draw leaves only deterministic slots: nothing is subtracted, y ~ p (point mass)
    q_last = jnp.where(sampled & (rest_mass > 0), q_rest / jnp.where(rest_mass > 0, rest_mass, 1.0), 0.0)
    correction = sample_token(key_res, residual_distribution(p, q_last))                 # equals p on G
    token = jnp.where(accept, x, correction).astype(jnp.int32)
    g_slots = valid & (jnp.arange(k) < k - 1)
    return jnp.where(accept, k - 1, _slot_of(token, drafts, g_slots)).astype(jnp.int32), token


_greedy = jax.jit(_greedy_core)


def greedy_drafts_verifier(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Optimal verifier for greedy drafts (Hu et al.); p, q `[V]`, drafts, valid `[k]`, 1 <= k <= V.

    Slots are positional (`sample_greedy_drafts`'s layout): slots 0..k-2 hold G = top-(k-1) of q (in any order) and
    slot k-1 the draw x ~ q' = q(·|V∖G). Accept x w.p. min(1, p/q'), else sample norm((p - q')_+), which equals p on
    G; landing on a valid G slot accepts it. Acceptance p(G) + Σ_{x∉G} min(p_x, q'_x) = α*(greedy).

    Padding masks slots of that sample. A padded G slot only loses its credit (G comes from q, so the token law is
    unchanged). A padded draw leaves deterministic slots (top tokens of q), which are verified by point mass (y ~ p,
    accept the first valid slot holding y; rule "point_mass"); verifying them as a smaller greedy sample would be
    lossy. A greedy sample of n < k drafts is therefore not a padded k-slot call: call with n slots. Checked on
    concrete inputs, assumed under jit: valid G slots hold distinct tokens of G, a valid slot k-1 a token outside G."""
    check_key("key", key)
    check_greedy_drafts(q, drafts, valid, check_rule_inputs(p, q, drafts, valid, max_slots=np.shape(p)[-1]))
    return _greedy(key, *_arrays(p, q, drafts, valid))


# ---- LP transport plan -----------------------------------------------------------------------------------------------

def _lp_core(key, p, q, drafts, live, sets, accept_probs, residual):
    member = jnp.zeros(p.shape[0], bool).at[drafts].max(live)
    row = jnp.argmax(jnp.all(sets == member[None, :], axis=1))
    acc = accept_probs[row]
    law = jnp.where(jnp.any(live), acc + jnp.maximum(1.0 - jnp.sum(acc), 0.0) * residual, p)   # no draft: y ~ p
    token = sample_token(key, law)
    return _slot_of(token, drafts, live), token


@jax.jit
def _lp_plan(key, p, q, drafts, valid, sets, accept_probs, residual):
    return _on_valid_prefix(_lp_core, key, p, q, drafts, valid, sets, accept_probs, residual)


def lp_plan_verifier(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array, *,
                     sets: jax.Array, accept_probs: jax.Array, residual: jax.Array):
    """Sample from an LP transport plan (e.g. `transport.optimal.lp.LPPlan`); p, q `[V]`, drafts, valid `[k]`. sets
    `[M, V]` bool (the draft sets of the plan), accept_probs `[M, V]` = π(y|S) (rows summing to <= 1), residual `[V]`
    the global correction law. The output is y ~ π(·|S) or the residual with the leftover mass; y in the draft set
    counts as accepted; with no valid draft, y ~ p. Optimal when the plan is; lossless when it is a lossless plan for
    the law of the valid drafts (the draft set must be a row of `sets`: checked on concrete inputs)."""
    check_key("key", key)
    check_plan(p, sets, accept_probs, residual, check_rule_inputs(p, q, drafts, valid))
    p, q, drafts, valid = _arrays(p, q, drafts, valid)
    return _lp_plan(key, p, q, drafts, valid, jnp.asarray(sets), jnp.asarray(accept_probs, p.dtype),
                    jnp.asarray(residual, p.dtype))


# ---- deterministic drafts --------------------------------------------------------------------------------------------

def _point_mass_core(key, p, q, drafts, live):
    token = sample_token(key, p)
    return _slot_of(token, drafts, live), token


@jax.jit
def _point_mass(key, p, q, drafts, valid):
    return _on_valid_prefix(_point_mass_core, key, p, q, drafts, valid)


def point_mass_rule(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Point-mass RRS for deterministic drafts (greedy / top-k tree children); p, q `[V]`, drafts, valid `[k]`:
    sample y ~ p and accept the first valid slot holding y.

    Equal in law to "accept c_j w.p. p_j(c_j), else zero it and renormalise", and lossless for any draft tuple however
    it was chosen: q is checked like every rule's q but ignored (a deterministic draft's proposal law is a point
    mass, never q(x)), so a valid draft may have q(x) = 0 and drafts may repeat. Returns (slot int32, -1 if none;
    token int32).
    """
    check_key("key", key)
    check_rule_inputs(p, q, drafts, valid, drafts_from_q=False)
    return _point_mass(key, *_arrays(p, q, drafts, valid))
