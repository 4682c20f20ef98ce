"""The real-law sums of `transport.studies.string_gap` against the exact string-level suite: with every path
expanded they equal the enumerated optimum (`prefix_overlap` of the exact string laws, and HiGHS's LP over them),
TLI's exact accepted
characters and SLEM's; with paths pruned the exact value lies inside [lower, upper]."""
import numpy as np
import pytest

from tests.transport.test_strings import DRAFTER, TARGET, make_round
from transport.exact import strings as S
from transport.optimal import strings as O
from transport.studies import string_gap as G

ALL = dict(eps=0.0, max_nodes=10**6)


def models(rnd):
    """(target rows, drafter rows, TLI rows) of a round, as `string_gap` asks for them."""
    return (lambda paths: np.stack([rnd.p(rnd.history + p) for p in paths]),
            lambda paths: np.stack([rnd.q(rnd.context + p) for p in paths]),
            lambda paths: np.stack([S.tli_row(rnd, p) for p in paths]))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sums_equal_the_exact_suite_when_every_path_is_expanded(seed, temperature):
    rnd, m = make_round(seed, temperature), 3
    p, q, tli = models(rnd)
    spell_p, spell_q = G.spelling(TARGET, m), G.spelling(DRAFTER, m)
    law_p, law_q = G.string_law(p, spell_p, side="p", **ALL), G.string_law(q, spell_q, side="q", **ALL)
    assert law_p.slack == 0 and law_q.slack == 0
    opt = G.optimum(law_p, law_q, m)
    exact = O.prefix_overlap(S.target_string_law(rnd, m), S.drafter_string_law(rnd, m))
    assert opt.lower == pytest.approx(exact, abs=1e-12) and opt.slack == 0
    lp = O.optimal_lcp(S.target_string_law(rnd, m), S.drafter_string_law(rnd, m)).value     # HiGHS, float64
    assert opt.lower == pytest.approx(lp, abs=1e-8)
    accepted = G.tli_accepted(p, tli, spell_p, rnd.depth, **ALL)
    assert accepted.lower == pytest.approx(S.round_law(rnd, "tli").chars_within(m), abs=1e-12)
    segmentation = S.segmentation_law(rnd)               # SLEM's drafts, each weighed by its probability
    drafts = list(segmentation)
    slem = np.array([segmentation[x] for x in drafts]) @ G.exact_match_accepted(p, drafts, spell_p)
    assert slem == pytest.approx(S.round_law(rnd, "slem").chars_within(m), abs=1e-12)
    assert slem <= opt.lower + 1e-12                     # SLEM's drafts follow Q: OPT(Q) bounds it


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("pruned", [dict(eps=0.05, max_nodes=2), dict(eps=0.2, max_nodes=1), dict(eps=0.01)])
def test_pruned_sums_bracket_the_exact_values(seed, pruned):
    rnd, m = make_round(seed), 3
    p, q, tli = models(rnd)
    spell_p, spell_q = G.spelling(TARGET, m), G.spelling(DRAFTER, m)
    opt = G.optimum(G.string_law(p, spell_p, side="p", **pruned), G.string_law(q, spell_q, side="q", **pruned), m)
    exact = O.prefix_overlap(S.target_string_law(rnd, m), S.drafter_string_law(rnd, m))
    assert opt.slack > 0 and opt.lower - 1e-12 <= exact <= opt.upper + 1e-12
    accepted = G.tli_accepted(p, tli, spell_p, rnd.depth, **pruned)
    assert accepted.slack > 0
    assert accepted.lower - 1e-12 <= S.round_law(rnd, "tli").chars_within(m) <= accepted.upper + 1e-12


def test_a_law_against_itself_reaches_the_horizon_and_disjoint_texts_share_nothing():
    rnd, m = make_round(0), 3
    p, _, _ = models(rnd)
    spell = G.spelling(TARGET, m)
    law = G.string_law(p, spell, side="p", **ALL)
    twin = G.StringLaw({s.replace(G.UNEXPANDED["p"], G.UNEXPANDED["q"]): v for s, v in law.law.items()}, 0.0, 0)
    assert G.optimum(law, twin, m).lower == pytest.approx(m, abs=1e-12)       # Q = P: LCP = m surely
    only_b = G.StringLaw({"bbb": 1.0}, 0.0, 0)
    only_a = G.StringLaw({"aaa": 1.0}, 0.0, 0)
    assert G.optimum(only_a, only_b, 3).lower == 0.0
    # a drafter that never drafts (no shared mass) accepts nothing
    zero = G.tli_accepted(p, lambda paths: np.zeros((len(paths), len(TARGET))), spell, 3, **ALL)
    assert zero.lower == 0.0 and zero.slack == 0.0


def test_bad_input_raises():
    with pytest.raises(ValueError, match="horizon"):
        G.spelling(TARGET, 0)
    rnd = make_round(0)
    p, _, tli = models(rnd)
    with pytest.raises(ValueError, match="at least one token"):
        G.tli_accepted(p, tli, G.spelling(TARGET, 3), 0)
