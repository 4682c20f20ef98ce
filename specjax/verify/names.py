"""The one vocabulary of draft laws and verifiers, shared by `specjax.verify`, `trees` and `transport`.

A draft law says how the drafts of one node are drawn from the drafter's law q; a verifier (rule) assumes one.
Theory and proofs: transport/THEORY.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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
# rules whose slots follow their law's own k-slot layout, so padding masks slots of one k-slot sample (transport/
# THEORY.md §3.10); every other rule reads its valid slots, in slot order, as a sample of its law with fewer drafts
POSITIONAL_RULES = ("greedy", "spechub")
# the optimum α* a rule's acceptance is compared with: that of its own draft law, except SpecHub's, whose set law
# is greedy(q, 2)'s (transport/THEORY.md §2.2), so the greedy optimum is its bound
OPTIMUM_LAW = {rule: GREEDY if law == SPECHUB else law for rule, law in RULE_LAWS.items() if law != DETERMINISTIC}

# coupled (drafter-invariant) rules, `specjax.verify.coupled` -> the law of their drafts: the drafts and the target's
# token share one race drawn from the PRNG key, so the output is a function of the key alone, whatever the drafter
# (transport/THEORY.md §3.11). Lossless for any drafts; their acceptance (`transport.exact.coupled`) assumes the
# coupled drafts from the same key, a without-replacement sample of q (DISD: one draw). Kept apart from RULE_LAWS:
# a coupled rule is no kernel K(y | drafts) with private uniforms.
COUPLED_RULE_LAWS = {"disd": WITHOUT_REPLACEMENT, "gumbel_list": WITHOUT_REPLACEMENT}
COUPLED_RULES = tuple(COUPLED_RULE_LAWS)

# token by token (Leviathan et al.), the block rule (Sun et al.), or DISD at every position (Daliri et al.: the drafts
# and the emitted tokens are winners of one race per output position drawn from the run's key, so the output is a
# function of the key alone, whatever the drafter; specjax.verify.coupled)
CHAIN_VERIFIERS = ("token", "block", "disd")
COUPLED_CHAIN_VERIFIERS = ("disd",)             # the drafter must draw from the verifier's races (keys by position)
# chain rules that do NOT emit the target's law, each with the reason: the decode loop runs them only when the caller
# allows lossy verification (`allow_lossy=True`, `--allow-lossy`); their distortion is audited in transport.exact.audit
LOSSY_CHAIN_VERIFIERS = {
    "hsd": "HSD as published (hierarchical speculative decoding, clever variant) accepts the whole draft with the "
           "uncapped joint ratio min(1, P(x)/Q(x)); its emitted law is not the target's (TV 1/9 on the block "
           "verification paper's toy example; transport/THEORY.md §5.5)",
    "typical": "Medusa's typical acceptance passes any draft the target finds likely enough, whatever the draft law",
    "fuzzy": "fuzzy speculative decoding passes every draft where the two laws are closer than its threshold",
    "ears": "EARS adds a tolerance to the acceptance ratio where the target is unsure",
    "topm": "a lenient rule passes any draft among the target's M likeliest tokens",
    "fly": "FLy passes a rejected draft when the next drafts pass and the target is unsure",
}
# parameters of the lossy rules written NAME[:V1,V2]: name -> (parameter names, defaults); formulas in
# specjax.verify.lossy_rules
LOSSY_PARAMS = {
    "hsd": ((), ()),
    "typical": (("eps", "delta"), (0.09, 0.3)),       # Medusa's posterior_threshold and posterior_alpha
    "fuzzy": (("threshold",), (0.1,)),
    "ears": (("beta",), (0.2,)),
    "topm": (("m",), (2.0,)),
    "fly": (("window", "theta"), (3.0, 0.3)),
}
# per-node rules, leaf-to-root traversal, greedy multi-path block, the coupled Gumbel list at every node of a coupled
# RSD-C tree (drafter-invariant: the output a function of the key)
TREE_VERIFIERS = ("token", "traversal", "gbv", "gumbel_list")
COUPLED_TREE_VERIFIERS = ("gumbel_list",)


def check_name(name: str, known: tuple[str, ...], what: str) -> str:
    """`name` if it is one of `known`, else ValueError naming `what` and the choices."""
    if name not in known:
        raise ValueError(f"unknown {what} {name!r}; known: {known}")
    return name


@dataclass(frozen=True)
class LossyRule:
    """A parsed lossy chain rule: its name (a key of LOSSY_CHAIN_VERIFIERS) and its parameters in LOSSY_PARAMS
    order, defaults filled in."""

    name: str
    params: tuple[float, ...] = ()


def parse_lossy(spec: str) -> LossyRule:
    """"NAME" or "NAME:V1,V2" -> LossyRule. ValueError for an unknown name, too many values, or a value out of range
    (finite and >= 0; M and W integers >= 1)."""
    name, _, values = spec.partition(":")
    if name not in LOSSY_PARAMS:
        raise ValueError(f"unknown lossy rule {name!r}; known: {sorted(LOSSY_PARAMS)}")
    keys, defaults = LOSSY_PARAMS[name]
    try:
        given = tuple(float(v) for v in values.split(",")) if values else ()
    except ValueError:
        raise ValueError(f"{spec!r}: the values after ':' must be numbers ({', '.join(keys)})") from None
    if len(given) > len(keys):
        raise ValueError(f"{spec!r}: {name} takes at most {len(keys)} values ({', '.join(keys) or 'none'})")
    params = given + defaults[len(given):]
    if not all(math.isfinite(v) and v >= 0 for v in params):
        raise ValueError(f"{spec!r}: every value must be finite and >= 0")
    if name in ("topm", "fly") and (params[0] < 1 or params[0] != int(params[0])):
        raise ValueError(f"{spec!r}: {keys[0]} must be an integer >= 1")
    return LossyRule(name, params)


def is_lossy_chain_verifier(spec: str) -> bool:
    """Whether `spec` names a lossy chain rule (its parameters unchecked)."""
    return spec.partition(":")[0] in LOSSY_CHAIN_VERIFIERS


def check_chain_verifier(name: str, allow_lossy: bool = False) -> str:
    """`name` if it is a chain verifier the caller may use: a lossless one, or a lossy one (NAME[:values], parsed
    here) with `allow_lossy`. ValueError otherwise, naming the choices or saying why the rule is lossy and how to
    allow it."""
    if not is_lossy_chain_verifier(name):
        return check_name(name, CHAIN_VERIFIERS + tuple(LOSSY_CHAIN_VERIFIERS), "chain verifier")
    rule = parse_lossy(name)
    if not allow_lossy:
        raise ValueError(f"verifier {name!r} is lossy: {LOSSY_CHAIN_VERIFIERS[rule.name]}. Pass allow_lossy=True "
                         "(command line: --allow-lossy) to decode with it anyway")
    return name
