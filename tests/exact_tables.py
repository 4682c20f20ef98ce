"""Shared fixtures for exact-enumeration tests: context-dependent random tables, chain sampling in numpy, the
index of an emitted-token pattern (accepted drafts + one token) among all patterns of a depth-K round, the
emitted-law test of a decoding method against its target's exact law, and the exact expected accepted length of a
chain round computed with the decode loop's own calls."""
from __future__ import annotations

import jax
import numpy as np

from specjax.decode.loop import generate
from specjax.testing.stats import chi_square_pvalue
from specjax.testing.pairs import exact_joint_law

ALPHA = 1e-4
"""Significance of the chi-square law tests (fixed seeds: a pass or a fail reproduces exactly)."""
LAW_PROMPT = (3, 1, 4)
LAW_ROWS = 6000


def random_tables(rng: np.random.Generator, v: int, count: int, conc: float = 1.0, zeros: float = 0.0) -> list:
    """count tables, tables[i] `[V]*i + [V]`: random conditional laws; `zeros` = chance of zeroing an entry."""
    out = []
    for i in range(count):
        t = rng.dirichlet(np.full(v, conc), size=(v,) * i)
        if zeros:
            t = np.where(rng.random(t.shape) < zeros, 0.0, t)
            t[t.sum(-1) == 0, 0] = 1.0
        out.append(t / t.sum(-1, keepdims=True))
    return out


def sample_chains(rng: np.random.Generator, q_tables: list, n: int) -> np.ndarray:
    """n chains `[n, K]` drawn from q_tables along their own prefixes (numpy, fixed seed)."""
    k, v = len(q_tables), q_tables[0].shape[-1]
    x = np.zeros((n, k), np.int64)
    for i in range(k):
        probs = q_tables[i][tuple(x[:, j] for j in range(i))] if i else np.broadcast_to(q_tables[0], (n, v))
        cum = np.cumsum(probs, -1)
        x[:, i] = np.minimum((rng.random((n, 1)) * cum[:, -1:] > cum).sum(-1), v - 1)
    return x


def laws_along(tables: list, x: np.ndarray, count: int) -> np.ndarray:
    """`[n, count, V]`: tables[i] after each row's prefix x[:, :i]."""
    return np.stack([tables[i][tuple(x[:, j] for j in range(i))] if i else np.broadcast_to(tables[0], (len(x),) +
                     tables[0].shape) for i in range(count)], axis=1)


def complete(rng: np.random.Generator, p_tables: list, tokens: np.ndarray, num: np.ndarray, depth: int) -> np.ndarray:
    """Continue each emitted row (tokens[:, :num+1]) with target samples to depth+1 tokens -> flat cell ids `[n]`."""
    n, v = len(tokens), p_tables[0].shape[-1]
    seq = np.where(np.arange(depth + 1)[None] <= num[:, None], tokens[:, :depth + 1], 0)
    for i in range(depth + 1):
        fill = np.arange(n)[i > num]
        if len(fill) == 0:
            continue
        probs = p_tables[i][tuple(seq[fill, j] for j in range(i))] if i else np.broadcast_to(p_tables[0], (len(fill), v))
        cum = np.cumsum(probs, -1)
        seq[fill, i] = np.minimum((rng.random((len(fill), 1)) * cum[:, -1:] > cum).sum(-1), v - 1)
    return np.ravel_multi_index(tuple(seq.T), (v,) * (depth + 1))


def pattern_index(tokens: np.ndarray, num: np.ndarray, v: int, depth: int) -> np.ndarray:
    """A unique id per emitted pattern (n, tokens[:n+1]) of a depth-`depth` round: offset of n + base-V digits."""
    offsets = np.concatenate([[0], np.cumsum([v ** (m + 1) for m in range(depth + 1)])])
    ids = np.zeros(len(tokens), np.int64)
    for m in range(depth + 1):
        rows = num == m
        if rows.any():
            ids[rows] = offsets[m] + np.ravel_multi_index(tuple(tokens[rows, :m + 1].T), (v,) * (m + 1))
    return ids


def pattern_count(v: int, depth: int) -> int:
    return int(sum(v ** (m + 1) for m in range(depth + 1)))


def to_draft_tree(trees: list, p_tables: list, q_tables: list, dtype=np.float32):
    """Concrete numpy trees (transport.exact.tree_laws.ConcreteTree) -> one batched `DraftTree` `[B, N+1]` and the
    target laws `[B, N+1, V]` at every node (padding nodes: invalid, uniform laws)."""
    import jax.numpy as jnp
    from trees.tree import LAW_NAMES, DraftTree
    b, v = len(trees), p_tables[0].shape[-1]
    n1 = max(len(t.tokens) for t in trees)
    kmax = max(1, max(len(c) for t in trees for c in t.children))
    token = np.zeros((b, n1), np.int32)
    parent = np.zeros((b, n1), np.int32)
    depth = np.ones((b, n1), np.int32)
    valid = np.zeros((b, n1), bool)
    children = np.full((b, n1, kmax), -1, np.int32)
    law = np.zeros((b, n1), np.int32)
    probs = np.full((b, n1, v), 1.0 / v)
    target = np.full((b, n1, v), 1.0 / v)
    for r, t in enumerate(trees):
        m = len(t.tokens)
        token[r, :m], parent[r, :m], valid[r, :m] = t.tokens, t.parent, True
        for i in range(m):
            ctx = t.path(i)
            depth[r, i] = len(ctx)
            law[r, i] = LAW_NAMES.index(t.law[i])
            children[r, i, :len(t.children[i])] = t.children[i]
            target[r, i] = p_tables[len(ctx)][ctx]
            if t.children[i]:
                probs[r, i] = q_tables[len(ctx)][ctx]
    tree = DraftTree(token=jnp.asarray(token), parent=jnp.asarray(parent), depth=jnp.asarray(depth),
                     valid=jnp.asarray(valid), children=jnp.asarray(children), law=jnp.asarray(law),
                     probs=jnp.asarray(probs, dtype))
    return tree, jnp.asarray(target, dtype)


def trie_of_chains(chain_sets, p_tables: list, q_tables: list, dtype=np.float32):
    """Rows of K chains of L tokens -> the `trees.sampled_builders.SpecInferTree` layout: pool node 1 + d*K + j holds chain
    j's token d; the first chain with the same prefix owns the (valid) node; slot j of a valid node at depth d points
    to chain j's canonical node at depth d+1 when chain j shares its prefix. Returns (DraftTree, target `[B, N+1, V]`)."""
    import jax.numpy as jnp
    from trees.tree import LAW_IID, DraftTree
    chains = np.asarray(chain_sets, np.int64)                       # [B, K, L]
    b, k, depth = chains.shape
    v = p_tables[0].shape[-1]
    n1 = 1 + k * depth
    rows = np.arange(b)[:, None]
    codes = np.cumsum(chains * v ** np.arange(depth)[None, None, :], axis=2)   # prefix codes through depth d
    same = codes[:, :, None, :] == codes[:, None, :, :]                       # [B, K(row), K(j), L]
    canon = 1 + np.arange(depth)[None, None, :] * k + np.argmax(same, axis=1)   # [B, K(j), L]: first equal chain
    token = np.zeros((b, n1), np.int32)
    parent = np.full((b, n1), -1, np.int32)
    dep = np.zeros((b, n1), np.int32)
    valid = np.zeros((b, n1), bool)
    valid[:, 0] = True
    children = np.full((b, n1, k), -1, np.int32)
    children[:, 0, :] = canon[:, :, 0]
    probs = np.zeros((b, n1, v))
    target = np.zeros((b, n1, v))
    probs[:, 0], target[:, 0] = q_tables[0], p_tables[0]
    for d in range(depth):
        ids = 1 + d * k + np.arange(k)
        token[:, ids], dep[:, ids] = chains[:, :, d], d + 1
        parent[:, ids] = 0 if d == 0 else canon[:, :, d - 1]
        valid[:, ids] = canon[:, :, d] == ids[None, :]
        ctx = tuple(chains[:, :, i] for i in range(d + 1))
        target[:, ids] = p_tables[d + 1][ctx]
        probs[:, ids] = q_tables[d + 1][ctx] if d + 1 < len(q_tables) else 1.0 / v
        if d + 1 < depth:
            # slot j of the canonical node of row i at depth d: chain j's node at d+1, if chain j shares row i's prefix
            share = same[:, :, :, d]                                          # [B, i, j]
            nxt = np.broadcast_to(canon[:, None, :, d + 1], share.shape)
            own = canon[:, :, d]                                              # node of chain i
            children[rows, own] = np.where(share, nxt, -1)
    tree = DraftTree(token=jnp.asarray(token), parent=jnp.asarray(parent), depth=jnp.asarray(dep),
                     valid=jnp.asarray(valid), children=jnp.asarray(children),
                     law=jnp.full((b, n1), LAW_IID, jnp.int32), probs=jnp.asarray(probs, dtype))
    return tree, jnp.asarray(target, dtype)


def first_tokens_law(target, prompt, sampling) -> tuple[np.ndarray, np.ndarray]:
    """The target's exact law of its first generated tokens after `prompt`, by enumeration: the joint of the first
    two `[V, V]` and the marginal of the third `[V]`."""
    law = exact_joint_law(target, list(prompt), sampling, 3)
    return law.sum(2), law.sum((0, 1))


def decode_law_rows(target, method, sampling, drafter=None, prompt=LAW_PROMPT, rows: int = LAW_ROWS, seed: int = 42):
    """`rows` copies of `prompt` decoded for 3 tokens by `method` in one `generate` call (the samples of
    `assert_target_law`)."""
    return generate(target, np.tile(np.asarray(prompt, np.int32), (rows, 1)), np.full(rows, len(prompt)),
                    jax.random.key(seed), method=method, drafter=drafter, max_new_tokens=3, sampling=sampling)


def assert_target_law(target, tokens, sampling, prompt=LAW_PROMPT) -> np.ndarray:
    """The emitted tokens `[N, >= 3]` pass the chi-square test against the target's exact law (the first two
    tokens' joint and the third's marginal) at ALPHA, and fail it against that joint moved by one cell (the
    negative control: the test has power on these samples). Returns the first-two-token cell ids `[N]` for further
    controls."""
    joint12, third = first_tokens_law(target, prompt, sampling)
    gen = np.asarray(tokens)
    pairs = gen[:, 0] * target.config.vocab_size + gen[:, 1]
    assert chi_square_pvalue(pairs, joint12.ravel()) > ALPHA
    assert chi_square_pvalue(gen[:, 2], third) > ALPHA
    assert chi_square_pvalue(pairs, np.roll(joint12.ravel(), 1)) < ALPHA
    return pairs


def round_laws(target, drafter, prompt, pending: int, depth: int, sampling) -> tuple[np.ndarray, np.ndarray]:
    """The laws of one chain round started after `prompt` with `pending` token, for every draft prefix
    (x1..x_{depth-1}): p, q `[V^(depth-1), depth, V]` float64 (depth d's law given the prefix's first d-1 tokens),
    computed as the decode loop does: prefill, the drafter's first call over (prev, pending), then one call per
    draft on its own features; the target scoring [pending, x1, ..] in one block."""
    import itertools

    import jax.numpy as jnp

    from specjax.model.block import Block
    from specjax.decode.loop import prefill
    from specjax.sampling import GREEDY, warp_logits

    v = target.config.vocab_size
    prefixes = jnp.asarray(list(itertools.product(range(v), repeat=depth - 1)), jnp.int32)    # [N, depth-1]
    n, t = len(prefixes), len(prompt)
    tokens = jnp.tile(jnp.asarray(prompt, jnp.int32), (n, 1))
    start = prefill(target, drafter, tokens, jnp.full((n,), t, jnp.int32), jax.random.key(0), GREEDY,
                    t + depth + 2)
    caches, ctx = start.caches, start.ctx
    pend = jnp.full((n,), pending, jnp.int32)
    out = drafter.forward(caches.drafter, Block.chain(jnp.stack([ctx.prev, pend], 1), ctx.position - 1,
                                                      ctx.features))
    qs, cache, feat = [out.logits[:, -1]], out.cache, out.hidden[:, -1:]
    for d in range(2, depth + 1):
        out = drafter.forward(cache, Block.chain(prefixes[:, d - 2:d - 1], ctx.position + d - 1, feat))
        qs.append(out.logits[:, -1])
        cache, feat = out.cache, out.hidden[:, -1:]
    scored = target.forward(caches.target, Block.chain(jnp.concatenate([pend[:, None], prefixes], 1),
                                                       ctx.position))
    p = warp_logits(scored.logits, sampling)                                                # [N, depth, V]
    return np.asarray(p, np.float64), np.asarray(warp_logits(jnp.stack(qs, 1), sampling), np.float64)


def exact_chain_tau(p: np.ndarray, q: np.ndarray, v: int, depth: int, accept: np.ndarray | None = None) -> np.ndarray:
    """`[depth]`: 1 + sum_{k<=K} P(the first k drafts accepted) for K = 1..depth, by enumeration over the laws of
    `round_laws`: P(first k accepted) = sum over x1..xk of prod_{d<=k} a(x_d | x1..x_{d-1}), with a = P(draft x and
    accepted) = min(p, q) for the token rule, or `accept` (same shape as p) for another rule."""
    m = (np.minimum(p, q) if accept is None else accept).reshape((v,) * (depth - 1) + (depth, v))
    reach, out = np.ones(()), []
    for k in range(1, depth + 1):
        law = m[(slice(None),) * (k - 1) + (0,) * (depth - k) + (k - 1,)]  # [x1..x_{k-1}, x_k]: later x unread
        reach = reach[..., None] * law
        out.append(reach.sum())
    return 1.0 + np.cumsum(out)
