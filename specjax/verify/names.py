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

CHAIN_VERIFIERS = ("token", "block")           # token by token (Leviathan et al.) or the block rule (Sun et al.)
# chain rules that do NOT emit the target's law, each with the reason: the decode loop runs them only when the caller
# allows lossy verification (`allow_lossy=True`, `--allow-lossy`); their distortion is audited in transport.exact.audit
LOSSY_CHAIN_VERIFIERS = {
    "hsd": "HSD as published (hierarchical speculative decoding, clever variant) accepts the whole draft with the "
           "uncapped joint ratio min(1, P(x)/Q(x)); its emitted law is not the target's (TV 1/9 on the block "
           "verification paper's toy example; transport/THEORY.md §5.5)",
}
TREE_VERIFIERS = ("token", "traversal", "gbv")  # per-node rules, leaf-to-root traversal, greedy multi-path block


def check_name(name: str, known: tuple[str, ...], what: str) -> str:
    """`name` if it is one of `known`, else ValueError naming `what` and the choices."""
    if name not in known:
        raise ValueError(f"unknown {what} {name!r}; known: {known}")
    return name


def check_chain_verifier(name: str, allow_lossy: bool = False) -> str:
    """`name` if it is a chain verifier the caller may use: a lossless one, or a lossy one with `allow_lossy`.
    ValueError otherwise, naming the choices or saying why the rule is lossy and how to allow it."""
    check_name(name, CHAIN_VERIFIERS + tuple(LOSSY_CHAIN_VERIFIERS), "chain verifier")
    if name in LOSSY_CHAIN_VERIFIERS and not allow_lossy:
        raise ValueError(f"verifier {name!r} is lossy: {LOSSY_CHAIN_VERIFIERS[name]}. Pass allow_lossy=True "
                         "(command line: --allow-lossy) to decode with it anyway")
    return name
