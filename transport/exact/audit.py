"""Exactness audit of verification rules (transport/THEORY.md §7): for a drafting scheme and a verifier on a tiny
enumerable model (context-dependent random tables, V = 3), the exact law of the emitted tokens, its total-variation
distance to the target law, and the expected number of accepted drafts. Pure numpy float64; no model code.

Chains and trees are compared after *completion* (emitted tokens continued by target samples to depth+1 tokens, see
`transport.exact.chain`); single-step multi-draft rules compare their output law with p. Every row is exact (enumeration
of every draft); TV at ~1e-16 means lossless, anything above ~1e-12 is a real bias. Rows name their source:
"specjax" (a rule specjax ships), "paper" (the published algorithm, as we settled it), "paper, lossy" (a published
rule claimed lossless that enumeration shows is not: HSD), "port" (a variant found in public ports), "misuse" /
"lossy by design" / "sensitivity" (cases that must fail).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from transport.exact import dispatch
from transport.exact.coupled import disd_joint, gumbel_list_law
from transport.exact.kernels import residual
from transport.exact.chain import (add_completed, along, chain_acceptance, chain_output_law, completions,
                                   kl_divergence, stop_law, total_variation)
from transport.exact.multipath import best_chain, gbv_stops
from transport.exact.tree_kernels import completed_law, expected_length, token_stops, traversal_stops, verify_all
from transport.exact.tree_laws import (ConcreteTree, chains_tree, enumerate_chain_sets, enumerate_sbs_trees,
                                       enumerate_trees, sample_sbs_trees, without_leaf)

# the lossy chain rules at their defaults (transport/THEORY.md §5.6), FLy with a window that fits a 3-draft chain
LOSSY_DEFAULTS = ("typical", "fuzzy", "ears", "topm", "fly:2,0.3")
IRREGULAR = ((((),), ()), ((),), ())          # leaves at depths 1-3: post-order, deepest-first and level order differ
BINARY2 = (((), ()), ((), ()))


# sources whose rows must be lossless; every other source (port, misuse, sensitivity, lossy by design) must be biased
LOSSLESS_SOURCES = ("specjax", "paper", "former specjax")


@dataclass(frozen=True)
class AuditRow:
    """One (scheme, verifier) pair: TV to the target law, E[accepted drafts], source tag, exact; for chains
    KL(emitted ‖ target) of the completed laws (None where not computed). Monte Carlo rows (exact False, `samples`
    trees) also give `tv_null`, the TV that sampling noise alone makes (½ Σ se·√(2/π) over the cells of the completed
    law), `max_z`, the largest |estimate − target| / se over the cells of the adjacent-pair marginals, and
    `accepted_se`, the standard error of `accepted`."""

    scheme: str
    verifier: str
    source: str
    tv: float
    accepted: float
    exact: bool = True
    samples: int = 0
    tv_null: float = 0.0
    max_z: float = 0.0
    accepted_se: float = 0.0
    kl: float | None = None


def _tables(rng: np.random.Generator, v: int, count: int, conc: float) -> list:
    return [rng.dirichlet(np.full(v, conc), size=(v,) * i) for i in range(count)]


def random_model(v: int, depth: int, seed: int, concentration: float = 0.8) -> tuple[list, list]:
    """(p, q): depth+1 target and depth draft tables `[V]*d + [V]`, every context's law Dirichlet(concentration)."""
    rng = np.random.default_rng(seed)
    return _tables(rng, v, depth + 1, concentration), _tables(rng, v, depth, concentration)


def _tree_rows(scheme, trees, p, depth, verifiers: dict) -> list[AuditRow]:
    target = completions(p, depth)[0]
    rows = []
    for name, (source, fn) in verifiers.items():
        stops = verify_all(trees, fn)
        rows.append(AuditRow(scheme, name, source, total_variation(completed_law(stops, p, depth), target),
                             expected_length(stops)))
    return rows


def chain_rows(p, q) -> list[AuditRow]:
    """A chain of len(q) sampled drafts under every chain verifier and published variant."""
    target = completions(p, len(q))[0]
    spec = {"token": "specjax", "block": "specjax", "traversal": "specjax", "block_tokenwise": "port",
            "exact_match": "paper", "exact_match_argmax": "misuse", "hsd": "paper, lossy",
            **{name: "lossy by design" for name in LOSSY_DEFAULTS}}
    rows = []
    for name, source in spec.items():
        law = chain_output_law(p, q, name)
        rows.append(AuditRow(f"chain K={len(q)}", name, source, total_variation(law, target),
                             chain_acceptance(p, q, name), kl=kl_divergence(law, target)))
    return rows


def multi_draft_rows(p0: np.ndarray, q0: np.ndarray, k: int) -> list[AuditRow]:
    """Single-step multi-draft rules: output law vs p, membership acceptance."""
    rows = []
    for rule in dispatch.RULES + dispatch.TWO_STEP_RULES:
        kk = 2 if rule in ("spechub", "khisti_lp") else k
        law, member, _ = dispatch.enumerate_rule(rule, p0, q0, kk)
        rows.append(AuditRow(f"multi-draft k={kk}", rule, "specjax", 0.5 * float(np.abs(law - p0).sum()), member))
    return rows


def coupled_rows(p0: np.ndarray, q0: np.ndarray, k: int) -> list[AuditRow]:
    """The coupled rules (THEORY §3.11): DISD and the Gumbel list with k drafts emit the target's race winner; the
    misuse emits DISD's accepted draft but, on a mismatch, a sample of the standard residual norm((p − q)_+) instead
    of the target's own winner."""
    joint = disd_joint(p0, q0)
    accepted = float(np.trace(joint))
    mixed = np.diag(joint) + (1.0 - accepted) * residual(p0, q0)
    rows = [AuditRow("coupled k=1", "disd", "specjax", total_variation(joint.sum(0), p0), accepted),
            AuditRow("coupled k=1", "disd accept, standard residual on mismatch", "misuse",
                     total_variation(mixed, p0), accepted)]
    law = gumbel_list_law(p0, q0, k)
    return rows + [AuditRow(f"coupled k={k}", "gumbel_list", "specjax", total_variation(law.sum(0), p0),
                            float(law[1:].sum()))]


def tree_rows(p, q) -> list[AuditRow]:
    """i.i.d. / without-replacement / deterministic trees: token-level rules, traversal and its port variants."""
    rows = []
    for law in ("iid", "without_replacement"):
        trees = list(enumerate_trees(IRREGULAR, law, q))
        flip = {"iid": True, "without_replacement": False}
        rows += _tree_rows(f"tree {law} (irregular, depth 3)", trees, p, 3, {
            "token-level RRS" if law == "iid" else "token-level RRS w/o replacement": ("specjax",
                                                                                     lambda t: token_stops(t, p, q)),
            "traversal": ("specjax", lambda t: traversal_stops(t, p, q)),
            "traversal deepest-leaf-first": ("port", lambda t: traversal_stops(t, p, q, order="deepest")),
            "traversal level-order leaves": ("port", lambda t: traversal_stops(t, p, q, order="level")),
            ("traversal renormalised iid siblings" if law == "iid" else "traversal unrenormalised wor siblings"):
                ("port", lambda t, law=law: traversal_stops(t, p, q, renorm={law: flip[law]})),
            "traversal final token from original p": ("port", lambda t: traversal_stops(t, p, q,
                                                                                       final_from_original=True)),
        })
    det = list(enumerate_trees(BINARY2, "deterministic", q))
    rows += _tree_rows("tree top-k det (EAGLE, binary depth 2)", det, p, 2, {
        "point mass (EAGLE q = 1)": ("specjax", lambda t: token_stops(t, p, q)),
        "RRS w/o replacement with the drafter's q": ("misuse", lambda t: token_stops(
            t, p, q, {"deterministic": "without_replacement"})),
        "traversal (point masses)": ("specjax", lambda t: traversal_stops(t, p, q)),
    })
    return rows


def _with_laws(tree: ConcreteTree, root: str, below: str) -> ConcreteTree:
    return ConcreteTree(tree.tokens, tree.parent, tree.children, (root,) + (below,) * (len(tree.tokens) - 1))


def sbs_verifiers(p, q, names: Sequence[str] | None = None) -> dict[str, tuple[str, Callable[[ConcreteTree], list]]]:
    """The verifiers audited on RSD-S trees (those in `names`, default all): specjax's recursive rejection without
    replacement at every node (the RSD paper's rule) and traversal, the point masses below the root specjax shipped
    before (lossless, weaker), and the misuse of verifying the children as i.i.d. draws."""
    below = lambda t: _with_laws(t, "without_replacement", "deterministic")
    every = {
        "RRS w/o replacement at every node (RSD paper)": ("specjax", lambda t: token_stops(t, p, q)),
        "RRS w/o replacement at root, point mass below": ("former specjax", lambda t: token_stops(below(t), p, q)),
        "traversal": ("specjax", lambda t: traversal_stops(t, p, q)),
        "traversal, point masses below the root": ("former specjax", lambda t: traversal_stops(below(t), p, q)),
        "RRS i.i.d. at every node": ("misuse", lambda t: token_stops(t, p, q, {"without_replacement": "iid"})),
    }
    unknown = set(names or ()) - set(every)
    if unknown:
        raise ValueError(f"unknown RSD-S verifiers {sorted(unknown)}; known: {list(every)}")
    return {name: rule for name, rule in every.items() if names is None or name in names}


def _pair_marginals(law: np.ndarray) -> np.ndarray:
    """The laws of adjacent token pairs (i, i+1) of a law over V^(D+1), stacked `[D, V, V]` (cells with mass enough
    for a z-test at a few thousand samples, where the full law's rare cells are not)."""
    d = law.ndim
    return np.stack([law.sum(axis=tuple(a for a in range(d) if a not in (i, i + 1))) for i in range(d - 1)])


def _sbs_accumulate(scheme, trees, p, depth, verifiers: dict, samples: int = 0) -> list[AuditRow]:
    """One pass over weighted trees (exact: their probabilities; Monte Carlo, `samples` > 0: weight 1/samples
    each), every verifier at once, so that large enumerations stream instead of being held in memory."""
    comp = completions(p, depth)
    target = comp[0]
    total = {name: np.zeros_like(target) for name in verifiers}
    squares = {name: np.zeros_like(target) for name in verifiers}
    pairs = {name: np.zeros_like(_pair_marginals(target)) for name in verifiers}   # Monte Carlo: E[x²] per cell
    length = {name: [0.0, 0.0] for name in verifiers}
    for tree, prob in trees:
        for name, (_, fn) in verifiers.items():
            law = np.zeros_like(target)
            n = 0.0
            for prefix, final, weight in fn(tree):
                add_completed(law, comp, prefix, final, weight)
                n += weight * len(prefix)
            total[name] += prob * law
            length[name][0] += prob * n
            if samples:
                squares[name] += law * law / samples
                pairs[name] += np.square(_pair_marginals(law)) / samples
                length[name][1] += n * n / samples
    rows = []
    for name, (source, _) in verifiers.items():
        tv = total_variation(total[name], target)
        if not samples:
            rows.append(AuditRow(scheme, name, source, tv, float(length[name][0])))
            continue
        se = np.sqrt(np.maximum(squares[name] - total[name] ** 2, 0.0) / (samples - 1))
        mean = _pair_marginals(total[name])
        pair_se = np.sqrt(np.maximum(pairs[name] - mean ** 2, 0.0) / (samples - 1))
        z = np.abs(mean - _pair_marginals(target)) / np.where(pair_se > 0, pair_se, np.inf)
        acc_se = np.sqrt(max(length[name][1] - length[name][0] ** 2, 0.0) / (samples - 1))
        rows.append(AuditRow(scheme, name, source, tv, float(length[name][0]), False, samples,
                             0.5 * float(se.sum()) * np.sqrt(2 / np.pi), float(z.max()), acc_se))
    return rows


def sbs_rows(p, q, width: int = 2, depth: int = 2, names: Sequence[str] | None = None) -> list[AuditRow]:
    """RSD-S (stochastic beam search of `width` for `depth` levels), exactly: every `sbs_verifiers` rule; at width 2,
    depth 2 also the sensitivity case that must fail (a1's second child dropped when it is the likeliest remaining
    token, so its existence depends on its own token). p: depth+1 tables, q: depth tables; names: as
    `sbs_verifiers`."""
    scheme = f"RSD-S beam (width {width}, depth {depth})"
    rows = _sbs_accumulate(scheme, enumerate_sbs_trees(q, width, depth), p, depth, sbs_verifiers(p, q, names))
    if (width, depth) != (2, 2) or names is not None:
        return rows
    v = len(q[0])

    def drop(tree):                                  # a1's second child dropped when it is the likeliest remaining
        if len(tree.children[1]) < 2:
            return tree
        a1, b1, b2 = (tree.tokens[i] for i in (1, *tree.children[1]))
        likeliest = max((b for b in range(v) if b != b1), key=lambda b: q[1][a1, b])
        return without_leaf(tree, tree.children[1][1]) if b2 == likeliest else tree

    trees = ((drop(t), prob) for t, prob in enumerate_sbs_trees(q, 2, 2))
    return rows + _sbs_accumulate("RSD-S beam, 2nd child dropped iff likeliest", trees, p, 2, {
        "RRS w/o replacement at every node": ("sensitivity", lambda t: token_stops(t, p, q))})


def sbs_monte_carlo_rows(p, q, width: int, depth: int, samples: int, seed: int,
                         names: Sequence[str] | None = None) -> list[AuditRow]:
    """RSD-S trees too large to enumerate: `samples` trees of stochastic beam search (`sample_sbs_trees`, numpy
    generator `seed`), each verified exactly by every `sbs_verifiers` rule; the emitted law is their average, with
    its standard error per cell (rows with exact False)."""
    trees = sample_sbs_trees(q, width, depth, samples, np.random.default_rng(seed))
    return _sbs_accumulate(f"RSD-S beam (width {width}, depth {depth}), Monte Carlo", ((t, 1.0 / samples)
                           for t in trees), p, depth, sbs_verifiers(p, q, names), samples)


def chain_set_rows(p, q, k: int) -> list[AuditRow]:
    """K i.i.d. chains: SpecInfer's trie with token-level RRS, GBV, GBV against q instead of q^Γ, traversal on
    separate chains, traversal on a deduplicated trie."""
    depth = len(q)
    sets = list(enumerate_chain_sets(k, depth, q))
    target = completions(p, depth)[0]

    def naive(chains):
        best = tuple(chains[best_chain(chains, p, q, "ratio")])
        pi, final = stop_law("block", along(p, best, depth + 1), along(q, best, depth), best)
        return [(best[:n], final[n], pi[n]) for n in range(depth + 1)]

    verifiers: dict[str, tuple[str, Callable]] = {
        "token-level RRS on the trie (SpecInfer)": ("specjax", lambda c: token_stops(chains_tree(c, "trie_slots"),
                                                                                    p, q)),
        "GBV (ratio ranking, q^Γ)": ("specjax", lambda c: gbv_stops(c, p, q, "ratio")),
        "GBV verified against q": ("misuse", naive),
        "traversal, separate chains": ("specjax", lambda c: traversal_stops(chains_tree(c, "separate"), p, q)),
        "traversal, deduplicated trie": ("port", lambda c: traversal_stops(chains_tree(c, "trie_distinct"), p, q)),
    }
    rows = []
    for name, (source, fn) in verifiers.items():
        stops = [(fn(c), prob) for c, prob in sets]
        rows.append(AuditRow(f"{k} iid chains (depth {depth})", name, source,
                             total_variation(completed_law(stops, p, depth), target), expected_length(stops)))
    return rows


def run_audit(vocab_size: int = 3, seed: int = 0, concentration: float = 0.8, chain_depth: int = 3,
              drafts: int = 2) -> list[AuditRow]:
    """Every audited (scheme, verifier) pair on one random tiny model (V = vocab_size, tables up to depth 4)."""
    rng = np.random.default_rng(seed)
    p, q = _tables(rng, vocab_size, 5, concentration), _tables(rng, vocab_size, 4, concentration)
    return (chain_rows(p[:chain_depth + 1], q[:chain_depth]) + multi_draft_rows(p[0], q[0], drafts)
            + coupled_rows(p[0], q[0], drafts) + tree_rows(p, q) + sbs_rows(p[:3], q[:2]) + chain_set_rows(p[:3], q[:2], drafts))
