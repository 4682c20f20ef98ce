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
from typing import Callable

import numpy as np

from transport.exact import dispatch
from transport.exact.coupled import disd_joint, gumbel_list_law
from transport.exact.kernels import residual
from transport.exact.chain import (along, chain_acceptance, chain_output_law, completions, kl_divergence, stop_law,
                                   total_variation)
from transport.exact.multipath import best_chain, gbv_stops
from transport.exact.tree_kernels import completed_law, expected_length, token_stops, traversal_stops, verify_all
from transport.exact.tree_laws import (ConcreteTree, chains_tree, enumerate_chain_sets, enumerate_sbs_trees,
                                       enumerate_trees)

# the lossy chain rules at their defaults (transport/THEORY.md §5.6), FLy with a window that fits a 3-draft chain
LOSSY_DEFAULTS = ("typical", "fuzzy", "ears", "topm", "fly:2,0.3")
IRREGULAR = ((((),), ()), ((),), ())          # leaves at depths 1-3: post-order, deepest-first and level order differ
BINARY2 = (((), ()), ((), ()))


@dataclass(frozen=True)
class AuditRow:
    """One (scheme, verifier) pair: TV to the target law, E[accepted drafts], source tag, exact (always True here),
    and for chains KL(emitted ‖ target) of the completed laws (None where not computed)."""

    scheme: str
    verifier: str
    source: str
    tv: float
    accepted: float
    exact: bool = True
    kl: float | None = None


def _tables(rng: np.random.Generator, v: int, count: int, conc: float) -> list:
    return [rng.dirichlet(np.full(v, conc), size=(v,) * i) for i in range(count)]


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


def sbs_rows(p, q) -> list[AuditRow]:
    """RSD-S (stochastic beam search, width 2, depth 2): specjax's point masses below the root, the RSD paper's
    recursive rejection without replacement at every node, and the sensitivity case (a1's second child dropped when
    it is the likeliest remaining token, so its existence depends on its own token) that must fail."""
    trees = list(enumerate_sbs_trees(q))
    rows = _tree_rows("RSD-S beam (width 2, depth 2)", trees, p, 2, {
        "RRS w/o replacement at root, point mass below": ("specjax", lambda t: token_stops(
            _with_laws(t, "without_replacement", "deterministic"), p, q)),
        "RRS w/o replacement at every node (RSD paper)": ("paper", lambda t: token_stops(t, p, q)),
    })
    v = len(q[0])

    def keep(a1, b1, b2):                             # drop a1's second child when it is the likeliest remaining token
        return b2 != max((b for b in range(v) if b != b1), key=lambda b: q[1][a1, b])

    drop = list(enumerate_sbs_trees(q, keep))
    rows += _tree_rows("RSD-S beam, 2nd child dropped iff likeliest", drop, p, 2, {
        "RRS w/o replacement at every node": ("sensitivity", lambda t: token_stops(t, p, q))})
    return rows


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
