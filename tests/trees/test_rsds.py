"""The jitted RSD-S builder and round (transport/THEORY.md §5.3): the builder draws exactly the enumerated law of
stochastic beam search trees (chi-square over whole trees; a beam of unconditioned Gumbels is caught) and marks every
node without replacement; the sampled round emits the target's law at width 3, depth 2, where nodes below the root
often have several children, and so does traversal verification; verifying those children as i.i.d. draws is caught
by the same test. (Greedy RSD-S equals greedy AR: tests/trees/test_tree_decode.py.)"""
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.decode.loop import generate
from specjax.sampling import SamplingConfig
from specjax.testing.pairs import exact_joint_law
from specjax.testing.stats import chi_square_pvalue
from specjax.verify.multi_draft import rrs_iid
from transport.exact.audit import random_model
from transport.exact.tree_laws import enumerate_sbs_trees
from trees import make_speculator
from trees.pool import Pool
from trees.sampled_builders import RSDSTree
from trees.tree import LAW_WOR
from trees.walk import RuleSet, default_rules

ALPHA = 1e-4
T1 = SamplingConfig(temperature=1.0)


def _build_from_tables(builder: RSDSTree, q_tables, n: int, key):
    """n trees `[n, N+1]` from the builder's own level loop with each node's draft law read from q_tables (the
    context-dependent law after the node's path) instead of a drafter call."""
    v = q_tables[0].shape[-1]
    tables = [jnp.asarray(t, jnp.float32) for t in q_tables]
    rows = jnp.arange(n)[:, None]

    @jax.jit
    def build(key):
        pool = Pool.init(jnp.zeros((n,), jnp.int32), builder.pool_size, v, 1)
        for d, k in enumerate(jax.random.split(key, builder.max_depth)):
            idx = builder.frontier(d, pool)
            path, node = [], idx
            for _ in range(d):                                    # the path's tokens, root first
                path.insert(0, pool.token[rows, node])
                node = pool.parent[rows, node]
            q = jnp.broadcast_to(tables[d][tuple(path)], idx.shape + (v,))
            pool = pool.drafted(idx, q, jnp.zeros(idx.shape + (1,)))
            pool = builder.expand(d, pool, idx, jnp.log(q), q, k, T1)
        return builder.finish(pool, builder.select(pool))

    return jax.tree.map(np.asarray, build(key))


def _tree_key(tree, row):
    """(tokens, parent, children) of one row's valid nodes, renumbered as `enumerate_sbs_trees` numbers them."""
    keep = np.flatnonzero(tree.valid[row])
    new = {int(old): i for i, old in enumerate(keep)}
    parent = tuple(-1 if i == 0 else new[int(tree.parent[row, old])] for i, old in enumerate(keep))
    children = tuple(tuple(c for c in range(len(keep)) if parent[c] == i) for i in range(len(keep)))
    return tuple(int(t) for t in tree.token[row, keep]), parent, children


class _FreshGumbelBeam(RSDSTree):
    """A port's shortcut: each level's candidates ranked by log q(path) plus a fresh Gumbel, not conditioned on the
    parent's perturbed value (a different tree law)."""

    def expand(self, d, pool, idx, logits, q, key, sampling):
        b, l, v = q.shape
        rows = jnp.arange(b)[:, None]
        phi_c = jnp.where(idx == 0, 0.0, pool.value[rows, idx])[..., None] + jnp.log(q)
        g = jnp.where(pool.valid[rows, idx][..., None], phi_c + jax.random.gumbel(key, phi_c.shape), -jnp.inf)
        score, flat = jax.lax.top_k(g.reshape(b, l * v), self.width)
        return pool.put(self.offsets[d + 1], flat % v, jnp.take_along_axis(idx, flat // v, axis=1),
                        jnp.isfinite(score), value=jnp.take_along_axis(phi_c.reshape(b, l * v), flat, axis=1))


def _tree_law_pvalue(builder, v, width, depth, n=20000):
    _, q = random_model(v, depth, seed=2)
    law = Counter()
    for t, prob in enumerate_sbs_trees(q, width, depth):
        law[(t.tokens, t.parent, t.children)] += prob
    ids = {k: i for i, k in enumerate(law)}
    tree = _build_from_tables(builder, q, n, jax.random.key(0))
    sampled = np.array([ids.get(_tree_key(tree, r), len(ids)) for r in range(n)])
    return chi_square_pvalue(sampled, np.array(list(law.values()) + [0.0])), tree


@pytest.mark.parametrize("v, width, depth", [(3, 3, 2), (3, 2, 3)])
def test_builder_draws_the_enumerated_beam_tree_law(v, width, depth):
    pvalue, tree = _tree_law_pvalue(RSDSTree(width=width, depth=depth), v, width, depth)
    assert pvalue > ALPHA
    inner = tree.valid & np.any(tree.children >= 0, axis=-1)
    assert np.all(tree.law[inner] == LAW_WOR)                     # every node is verified without replacement
    assert np.any(np.sum(tree.children[:, 1:] >= 0, axis=-1) >= 2)  # some node below the root has 2+ children


def test_tree_law_test_catches_unconditioned_gumbels():
    """Negative control: the same chi-square rejects a beam whose levels draw fresh, unconditioned Gumbels."""
    pvalue, _ = _tree_law_pvalue(_FreshGumbelBeam(width=3, depth=2), 3, 3, 2)
    assert pvalue < ALPHA


@pytest.fixture(scope="module")
def exact_laws(tiny_pair):
    """The target's exact laws of tokens (1, 2) and (2, 3) [V*V] and of token 4 [V] after [3, 1, 4] at T = 1."""
    law = exact_joint_law(tiny_pair[0], [3, 1, 4], T1, 4)
    return law.sum((2, 3)).ravel(), law.sum((0, 3)).ravel(), law.sum((0, 1, 2))


def _pvalues(tiny_pair, exact_laws, rules, verifier="token", n=4096):
    target, draft = tiny_pair
    out = generate(target, np.tile(np.array([3, 1, 4], np.int32), (n, 1)), np.full(n, 3), jax.random.key(7),
                   method=make_speculator("rsd-s", width=3, depth=2, rules=rules, verifier=verifier), drafter=draft,
                   max_new_tokens=4, sampling=T1)
    g, v = np.asarray(out.tokens), 16
    j12, j23, m4 = exact_laws
    pv = [chi_square_pvalue(g[:, 0] * v + g[:, 1], j12), chi_square_pvalue(g[:, 1] * v + g[:, 2], j23),
          chi_square_pvalue(g[:, 3], m4)]
    return pv, out


def test_jitted_round_samples_the_target_law(tiny_pair, exact_laws):
    pv, out = _pvalues(tiny_pair, exact_laws, default_rules())
    assert min(pv) > ALPHA, pv
    assert np.any(np.asarray(out.accepted) >= 2)      # paths through nodes below the root were accepted


def test_law_test_catches_children_verified_as_iid_draws(tiny_pair, exact_laws):
    """Negative control: the same test rejects RRS for i.i.d. drafts applied to the without-replacement children."""
    wrong, _ = _pvalues(tiny_pair, exact_laws, RuleSet(iid=rrs_iid, wor=rrs_iid))
    assert min(wrong) < ALPHA, wrong


def test_jitted_traversal_round_samples_the_target_law(tiny_pair, exact_laws):
    """Traversal verification reads the same node laws (every node without replacement, its draft law renormalised
    as siblings are deleted): lossless on RSD-S trees by enumeration (audit), and here in the loop."""
    pv, out = _pvalues(tiny_pair, exact_laws, None, verifier="traversal")
    assert min(pv) > ALPHA, pv
    assert np.any(np.asarray(out.accepted) >= 2)
