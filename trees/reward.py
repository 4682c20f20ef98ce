"""GTO's draft tree reward: the exact expected accepted length of a draft tree under its verifier (transport/THEORY.md §4).

Two views of the same quantity:
* `expected_accept_length(shape, law, p_tables, q_tables)`: the recursion of §4.2 over a tree *shape* whose child
  tokens are random (i.i.d. / without replacement) or deterministic (top-m of q), with target and draft laws given
  for every context (small vocabularies: contexts are enumerated). Jitted; differentiable w.r.t. `q_tables`
  (drafter logits through a softmax) for the i.i.d. and without-replacement laws; for deterministic children the
  law is a discrete top-m choice, so the gradient w.r.t. q is zero almost everywhere (only p carries one).
* `tree_reward(tree, target_probs)`: E[accepted length | the drafted tree], the sum over nodes of the probability
  that the verifier's walk reaches them. For deterministic children this is the sampling-free DTR
  `Σ_v Π_{u on path(v)} p(tok(u) | parent)`; for random children its mean over rounds equals the recursion's value
  (tower rule), so it predicts τ - 1 from the trees a run actually drafted.
`simulate_accept_length` runs many random rounds with the real verifier rules to check the recursion.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trees.tree import LAW_DET, LAW_IID, LAW_WOR, LAW_NAMES, DraftTree, draft_laws
from trees.walk import RuleSet, walk_tree

Shape = tuple  # nested tuples: a node's shape is the tuple of its child slots' shapes; a leaf is ()


def _law_code(law: str | int) -> int:
    if isinstance(law, str):
        if law not in LAW_NAMES:
            raise ValueError(f"unknown draw law {law!r}; use one of {LAW_NAMES}")
        return LAW_NAMES.index(law)
    return int(law)


def shape_depth(shape: Shape) -> int:
    """Depth of a nested-tuple shape (a leaf has depth 0)."""
    return 0 if not shape else 1 + max(shape_depth(s) for s in shape)


def _norm(x):
    s = jnp.sum(x, axis=-1, keepdims=True)
    return x / jnp.where(s > 0, s, 1.0)


def _slot_masses(law: int, p: jax.Array, q: jax.Array, m: int) -> list[jax.Array]:
    """A_v(j, x) for j = 1..m as arrays `[..., V]` (contexts leading): P(slot j accepted with token x)."""
    if law == LAW_IID:
        out, pi, reach = [], p, jnp.ones(p.shape[:-1] + (1,), p.dtype)
        for _ in range(m):
            out.append(reach * jnp.minimum(pi, q))
            tau = jnp.sum(jnp.maximum(pi - q, 0.0), axis=-1, keepdims=True)
            reach = reach * tau
            pi = _norm(jnp.maximum(pi - q, 0.0))
        return out
    if law == LAW_WOR:
        # ordered histories of rejected drafts: weights w [..., H], residual p_h [..., H, V], remaining q_h [..., H, V]
        v = p.shape[-1]
        w = jnp.ones(p.shape[:-1] + (1,), p.dtype)
        ph, qh = p[..., None, :], q[..., None, :]
        out = []
        for j in range(m):
            qhat = _norm(qh)
            acc = jnp.minimum(ph, qhat)
            out.append(jnp.sum(w[..., None] * acc, axis=-2))
            if j == m - 1:
                break
            rej = qhat - acc                                                 # [..., H, V]: reject draft x
            w = (w[..., None] * rej).reshape(w.shape[:-1] + (-1,))           # [..., H*V]
            ph_next = _norm(jnp.maximum(ph - qhat, 0.0))                     # independent of which x was rejected
            ph = jnp.repeat(ph_next, v, axis=-2)
            eye = jnp.eye(v, dtype=bool)
            qh = jnp.where(eye, 0.0, qh[..., :, None, :]).reshape(qh.shape[:-2] + (-1, v))
        return out
    if law == LAW_DET:
        # children = top-m of q (ties to the smaller id); point-mass verification: A(j, x) = p(x) 1[x = c_j]
        _, top = jax.lax.top_k(jax.lax.stop_gradient(q), m)
        return [p * jax.nn.one_hot(top[..., j], p.shape[-1], dtype=p.dtype) for j in range(m)]
    raise ValueError(f"unknown law code {law}")


@partial(jax.jit, static_argnames=("shape", "law"))
def _expected_accept_length(shape: Shape, law: int, p_tables: tuple, q_tables: tuple) -> jax.Array:
    def rec(node_shape, d):
        p, q = p_tables[d], q_tables[d]                                      # [V]*d + [V]
        if not node_shape:
            return jnp.zeros(p.shape[:-1], p.dtype)
        masses = _slot_masses(law, p, q, len(node_shape))
        total = jnp.zeros(p.shape[:-1], p.dtype)
        for a, sub in zip(masses, node_shape):
            total = total + jnp.sum(a * (1.0 + rec(sub, d + 1)), axis=-1)
        return total
    return rec(shape, 0)


def expected_accept_length(shape: Shape, law: str | int, p_tables: Sequence[Any], q_tables: Sequence[Any]
                           ) -> jax.Array:
    """Exact E[accepted drafts] (no bonus token) of a tree shape under its verifier (transport/THEORY.md §4.2).

    shape: nested tuples (e.g. chain-2 `(((),),)`, binary depth 1 `((), ())`). law: a name of
    `specjax.verify.names.TREE_LAWS` ("deterministic", "iid", "without_replacement") or its code.
    p_tables[d], q_tables[d]: target / draft laws after a context of d drafted tokens, shape `[V]*d + [V]`, for
    d = 0..depth(shape) - 1. Returns a scalar. ValueError on bad shapes or tables.
    """
    code = _law_code(law)
    depth = shape_depth(shape)
    if len(p_tables) < depth or len(q_tables) < depth:
        raise ValueError(f"a depth-{depth} shape needs p/q tables for d = 0..{depth - 1}")
    v = np.shape(p_tables[0])[-1]
    for d in range(depth):
        for name, t in (("p", p_tables[d]), ("q", q_tables[d])):
            if np.shape(t) != (v,) * (d + 1):
                raise ValueError(f"{name}_tables[{d}] must have shape {(v,) * (d + 1)}, got {np.shape(t)}")
    widest = _max_children(shape)
    if code in (LAW_WOR, LAW_DET) and widest > v:
        raise ValueError(f"{LAW_NAMES[code]} children: {widest} slots exceed the vocabulary ({v})")
    pad = tuple(jnp.asarray(t, jnp.float32) for t in p_tables[:depth]), tuple(jnp.asarray(t, jnp.float32)
                                                                               for t in q_tables[:depth])
    # a leaf at depth D reads tables[D] only for its shape; give it a dummy of the right rank
    p_t = pad[0] + (jnp.zeros((v,) * (depth + 1)),)
    q_t = pad[1] + (jnp.zeros((v,) * (depth + 1)),)
    return _expected_accept_length(shape, code, p_t, q_t)


def _max_children(shape: Shape) -> int:
    return 0 if not shape else max(len(shape), max(_max_children(s) for s in shape))


def dtr(tree: DraftTree, target_probs: jax.Array, max_depth: int) -> jax.Array:
    """Sampling-free draft tree reward `Σ_{v≠root} Π_{u on path(v)} p(tok(u) | parent(u))` per row `[B]`: the exact
    E[accepted length] of a tree verified with point masses. target_probs `[B, N+1, V]`."""
    edge = jnp.take_along_axis(_parent_probs(target_probs, tree.parent), tree.token[..., None], axis=-1)[..., 0]
    return _path_sum(tree, edge, max_depth)


def _parent_probs(target_probs, parent):
    return jnp.take_along_axis(target_probs, jnp.clip(parent, 0, None)[..., None], axis=1)


def _path_sum(tree: DraftTree, edge: jax.Array, max_depth: int) -> jax.Array:
    """Σ over valid non-root nodes of the product of `edge` along the root-to-node path (static depth loop)."""
    reach = jnp.ones_like(edge)
    par = jnp.clip(tree.parent, 0, None)
    for _ in range(max_depth):
        reach = jnp.where(tree.depth == 0, 1.0, jnp.take_along_axis(reach, par, axis=1) * edge)
    return jnp.sum(jnp.where(tree.valid & (tree.depth > 0), reach, 0.0), axis=1)


def _slot_accept_probs(law: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """P(slot j accepted | these drafts) `[K]` at one node under its rule (p, q `[V]`)."""
    k = drafts.shape[0]
    # deterministic children: y ~ p, the first slot holding y
    first = jnp.array([~jnp.any((drafts[:j] == drafts[j]) & valid[:j]) for j in range(k)]) if k else valid
    det = jnp.where(valid & first, p[drafts], 0.0)

    def chain(wor):
        pi, qi, reach, out = p, q, jnp.float32(1.0), []
        for j in range(k):
            mass = jnp.sum(qi)
            qn = qi / jnp.where(mass > 0, mass, 1.0) if wor else q
            x = drafts[j]
            a = jnp.where(qn[x] > 0, jnp.minimum(1.0, pi[x] / jnp.where(qn[x] > 0, qn[x], 1.0)), 0.0)
            a = jnp.where(valid[j], a, 0.0)
            out.append(reach * a)
            rejected = valid[j]
            pi = jnp.where(rejected, _norm(jnp.maximum(pi - qn, 0.0)), pi)
            if wor:
                qi = jnp.where(rejected, qi.at[x].set(0.0), qi)
            reach = reach * (1.0 - a)
        return jnp.stack(out)

    return jnp.select([law == LAW_IID, law == LAW_WOR], [chain(False), chain(True)], det)


@partial(jax.jit, static_argnames=("max_depth",))
def tree_reward(tree: DraftTree, target_probs: jax.Array, max_depth: int) -> jax.Array:
    """E[accepted drafts | tree] `[B]` under the rule of each node's law (§4.2 applied to the realized children).

    target_probs `[B, N+1, V]` (warped target law at every node). Equals `dtr` when every node is deterministic.
    """
    def per_row(token, valid, children, law, probs, p_all):
        safe = jnp.clip(children, 0, None)
        kvalid = (children >= 0) & valid[safe]
        slot_p = jax.vmap(_slot_accept_probs)(law, p_all, probs, token[safe], kvalid)     # [N+1, K]
        # a node's incoming edge = the summed probability of the slots of its parent that point to it
        n1 = token.shape[0]
        edge = jnp.zeros((n1,), slot_p.dtype).at[safe.reshape(-1)].add(jnp.where(kvalid, slot_p, 0.0).reshape(-1))
        return edge

    edge = jax.vmap(per_row)(tree.token, tree.valid, tree.children, tree.law, draft_laws(tree, target_probs),
                             target_probs)
    return _path_sum(tree, edge, max_depth)


def _shape_nodes(shape: Shape):
    """Static BFS enumeration: lists parent, depth, slot; children slots per node (Python, construction time)."""
    parent, depth, kids = [-1], [0], [[]]
    frontier = [(0, shape)]
    while frontier:
        nxt = []
        for node, sh in frontier:
            for sub in sh:
                idx = len(parent)
                parent.append(node)
                depth.append(depth[node] + 1)
                kids.append([])
                kids[node].append(idx)
                nxt.append((idx, sub))
        frontier = nxt
    return np.array(parent), np.array(depth), kids


def simulate_accept_length(key: jax.Array, shape: Shape, law: str | int, p_tables: Sequence[Any],
                           q_tables: Sequence[Any], rules: RuleSet, num_rounds: int = 20000) -> tuple[float, float]:
    """Mean and standard error of the accepted length over `num_rounds` simulated rounds: children drawn by `law`
    from q_tables (i.i.d., Gumbel-top-k without replacement, or top-m), then the real tree walk with `rules`.
    The law is a traced argument, so one compilation per (shape, rules, num_rounds) serves every law."""
    code = _law_code(law)
    depth_max = shape_depth(shape)
    v = np.shape(p_tables[0])[-1]
    p_t = tuple(jnp.asarray(p_tables[d], jnp.float32).reshape(-1, v) for d in range(depth_max))
    q_t = tuple(jnp.asarray(q_tables[d], jnp.float32).reshape(-1, v) for d in range(depth_max))
    n = _simulate(key, jnp.int32(code), p_t, q_t, shape=shape, rules=rules, num_rounds=num_rounds)
    n = np.asarray(n, np.float64)
    return float(n.mean()), float(n.std(ddof=1) / np.sqrt(n.size))


@partial(jax.jit, static_argnames=("shape", "rules", "num_rounds"))
def _simulate(key, code, flat_p, flat_q, *, shape, rules, num_rounds):
    depth_max = shape_depth(shape)
    parent, depth, kids = _shape_nodes(shape)
    n1 = parent.size
    v = flat_p[0].shape[-1]
    kmax = max(1, max(len(k) for k in kids))
    children = np.full((n1, kmax), -1, np.int32)
    for i, ks in enumerate(kids):                                        # static shape bookkeeping (numpy)
        children[i, :len(ks)] = ks
    anc = np.zeros((n1, depth_max + 1), np.int64)                        # ancestor at each depth
    for i in range(n1):
        j = i
        while j > 0:
            anc[i, depth[j]] = j
            j = parent[j]

    def one_round(k):
        token = jnp.zeros((n1,), jnp.int32)
        probs = jnp.zeros((n1, v), jnp.float32)
        p_all = jnp.zeros((n1, v), jnp.float32)
        for d in range(depth_max):                                       # static depth loop
            nodes = np.flatnonzero(depth == d)
            ctx = jnp.zeros((nodes.size,), jnp.int32)
            for e in range(1, d + 1):
                ctx = ctx * v + token[anc[nodes, e]]
            p, q = flat_p[d][ctx], flat_q[d][ctx]
            probs = probs.at[nodes].set(q)
            p_all = p_all.at[nodes].set(p)
            # all nodes of this depth at once: kmax candidates each, the first m kept (a prefix of an i.i.d. /
            # Gumbel-top-k / top-k sequence has the same law with m draws)
            k_iid, k_wor = jax.random.split(jax.random.fold_in(k, d))
            logq = jnp.where(q > 0, jnp.log(jnp.where(q > 0, q, 1.0)), -jnp.inf)          # [n_d, V]
            iid = jax.random.categorical(k_iid, logq[:, None, :], shape=(nodes.size, kmax))
            wor = jax.lax.top_k(logq + jax.random.gumbel(k_wor, logq.shape), min(kmax, v))[1]
            det = jax.lax.top_k(q, min(kmax, v))[1]
            if kmax > v:
                wor = jnp.pad(wor, ((0, 0), (0, kmax - v)))
                det = jnp.pad(det, ((0, 0), (0, kmax - v)))
            tok = jnp.select([code == LAW_IID, code == LAW_WOR], [iid, wor], det)
            slots = children[nodes]                                                      # [n_d, kmax]
            has = slots >= 0
            if has.any():
                token = token.at[slots[has]].set(tok[has].astype(jnp.int32))
        tree = DraftTree(token=token[None], parent=jnp.asarray(parent, jnp.int32)[None],
                         depth=jnp.asarray(depth, jnp.int32)[None], valid=jnp.ones((1, n1), bool),
                         children=jnp.asarray(children)[None], law=jnp.full((1, n1), code, jnp.int32),
                         probs=probs[None])
        _, n, _ = walk_tree(jax.random.fold_in(k, 10 ** 6), tree, p_all[None], rules, depth_max,
                            (LAW_DET, LAW_IID, LAW_WOR))
        return n[0]

    return jax.vmap(one_round)(jax.random.split(key, num_rounds))
