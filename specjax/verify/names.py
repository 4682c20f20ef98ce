"""The one vocabulary of draft laws and verifiers, shared by `specjax.verify`, `trees` and `transport`.

A draft law says how the drafts of one node are drawn from the drafter's law q; a verifier (rule) assumes one.
Theory and proofs: transport/THEORY.md.
"""
from __future__ import annotations

DETERMINISTIC = "deterministic"              # chosen, not sampled (top-k, n-gram proposals): point-mass verification
IID = "iid"                                  # k independent draws from q (SpecInfer, SpecTr)
WITHOUT_REPLACEMENT = "without_replacement"  # sequential draws without replacement = Gumbel-top-k (RSD)
GREEDY = "greedy"                            # the top-(k-1) of q, then one draw outside them (Hu et al.)
SPECHUB = "spechub"                          # k = 2: one draw and the hub argmax q (Sun et al.)

DRAFT_LAWS = (DETERMINISTIC, IID, WITHOUT_REPLACEMENT, GREEDY, SPECHUB)
TREE_LAWS = (DETERMINISTIC, IID, WITHOUT_REPLACEMENT)     # a DraftTree node's law code is its index here
OPTIMAL_LAWS = (IID, WITHOUT_REPLACEMENT, GREEDY)          # laws with a fast exact optimum at full vocabulary

# multi-draft rules -> the draft law each is lossless for
RULE_LAWS = {
    "point_mass": DETERMINISTIC,
    "rrs": IID,
    "kseq": IID,
    "khisti": IID,
    "khisti_lp": IID,
    "rrs_without_replacement": WITHOUT_REPLACEMENT,
    "greedy": GREEDY,
    "spechub": SPECHUB,
}
RULES = tuple(RULE_LAWS)
# the optimum α* a rule's acceptance is compared with: that of its own draft law, except SpecHub's, whose set law
# is greedy(q, 2)'s (transport/THEORY.md §2.2), so the greedy optimum is its bound
OPTIMUM_LAW = {rule: GREEDY if law == SPECHUB else law for rule, law in RULE_LAWS.items() if law != DETERMINISTIC}

# coupled (drafter-invariant) rules, `specjax.verify.coupled` -> the law of their drafts: the drafts and the target's
# token share one race drawn from the PRNG key, so the output is a function of the key alone, whatever the drafter
# (transport/THEORY.md §3.10). Lossless for any drafts; their acceptance (`transport.exact.coupled`) assumes the
# coupled drafts from the same key, a without-replacement sample of q (DISD: one draw). Kept apart from RULE_LAWS:
# a coupled rule is no kernel K(y | drafts) with private uniforms.
COUPLED_RULE_LAWS = {"disd": WITHOUT_REPLACEMENT, "gumbel_list": WITHOUT_REPLACEMENT}
COUPLED_RULES = tuple(COUPLED_RULE_LAWS)

CHAIN_VERIFIERS = ("token", "block")           # token by token (Leviathan et al.) or the block rule (Sun et al.)
TREE_VERIFIERS = ("token", "traversal", "gbv")  # per-node rules, leaf-to-root traversal, greedy multi-path block


def check_name(name: str, known: tuple[str, ...], what: str) -> str:
    """`name` if it is one of `known`, else ValueError naming `what` and the choices."""
    if name not in known:
        raise ValueError(f"unknown {what} {name!r}; known: {known}")
    return name
