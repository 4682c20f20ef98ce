"""Cross-vocabulary rules against the optimum across tokenizations (transport/THEORY.md §5.7): each rule's exact
expected accepted characters within an m-character horizon (`transport.exact.strings`) beside the LCP optimum of
the drafter's own string law against the target's (`transport.optimal.strings`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from transport.exact.strings import RULES, Round, drafter_string_law, round_law, target_string_law
from transport.optimal.strings import full_match_bound, optimal_lcp, prefix_overlap, truncate


@dataclass(frozen=True)
class RuleScore:
    """One rule's round on the m-character horizon."""
    accepted: float
    """E[accepted drafts] (target tokens)."""
    chars: float
    """E[accepted characters], no horizon."""
    chars_within: float
    """E[min(accepted characters, m)]: what the optimum bounds."""
    bound: float
    """The LCP optimum for the rule's own drafted-string law (its prefix of m characters) against P."""


@dataclass(frozen=True)
class HorizonComparison:
    """The rules against the optimum across tokenizations on an m-character horizon (m ≤ K)."""
    m: int
    optimum: float
    """max E[LCP] for the drafter's own string law Q (HiGHS): bounds SLEM and SLRS, whose drafts follow Q."""
    closed_form: float
    """`prefix_overlap(P, Q)`, equal to `optimum`."""
    full_match: float
    """Σ_s min(P(s), Q(s)) over Σ^m."""
    rules: dict[str, RuleScore] = field(default_factory=dict)


def compare_rules(rnd: Round, m: int | None = None, rules=RULES) -> HorizonComparison:
    """Exact E[accepted characters within m] of each rule against the LCP optimum (m defaults to K; 1 ≤ m ≤ K so
    that every SLEM / SLRS draft covers the horizon and its first m characters follow Q)."""
    m = rnd.depth if m is None else m
    if not 1 <= m <= rnd.depth:
        raise ValueError(f"the horizon must satisfy 1 <= m <= K = {rnd.depth}, got {m}")
    p_law, q_law = target_string_law(rnd, m), drafter_string_law(rnd, m)
    scores = {}
    for rule in rules:
        law = round_law(rnd, rule)
        scores[rule] = RuleScore(law.accepted, law.chars, law.chars_within(m),
                                 prefix_overlap(p_law, truncate(law.drafted, m)))
    return HorizonComparison(m, optimal_lcp(p_law, q_law).value, prefix_overlap(p_law, q_law),
                             full_match_bound(p_law, q_law), scores)
