"""Speculative decoding across vocabularies (transport/THEORY.md §5.7): TLI, SLEM and SLRS are lossless by exact
enumeration at every temperature, their samplers pass a chi-square test against the target, the negative controls
fail it, and no lossless rule accepts more characters than the LCP optimum across tokenizations."""
import itertools

import numpy as np
import pytest

from specjax.testing.stats import chi_square_pvalue
from transport.exact import strings as S
from transport.exact import tokenizers as T
from transport.exact.chain import chain_acceptance, chain_output_law, total_variation
from transport.optimal import strings as O
from transport.studies.cross_vocab import compare_rules

TARGET = ("a", "b", "ab", "ba", "aab")
DRAFTER = ("a", "b", "aa", "bb", "abb")          # "abb" straddles the target boundary ab|b


def make_round(seed: int = 0, temperature: float = 1.0, drafter_temperature: float | None = None,
               depth: int = 3, history: tuple[int, ...] = (2,)) -> S.Round:
    t = temperature if drafter_temperature is None else drafter_temperature
    return S.Round(T.random_token_model(TARGET, seed, temperature), T.random_token_model(DRAFTER, 100 + seed, t),
                   history, depth)


class StringOracle:
    """A character-level drafter whose stream has the target's string law after `history` (Q = P)."""

    def __init__(self, target: T.TokenModel, history: tuple[int, ...]):
        self.tokenizer = tuple(sorted(set("".join(target.tokenizer))))
        self.target, self.history, self.skip = target, history, len(T.text(target.tokenizer, history))
        self.laws: dict[tuple[int, ...], np.ndarray] = {}

    def __call__(self, context: tuple[int, ...]) -> np.ndarray:
        if context not in self.laws:
            u = T.text(self.tokenizer, context)[self.skip:]
            law = S.path_law(self.target, self.target.tokenizer, self.history,
                             lambda s: s[:len(u) + 1] if len(s) > len(u) else None)
            row = np.array([law.get(u + c, 0.0) for c in self.tokenizer])
            self.laws[context] = row / row.sum()
        return self.laws[context]


class Fixed:
    """A model with one law for every history."""

    def __init__(self, tokenizer, law):
        self.tokenizer, self.law = tuple(tokenizer), np.asarray(law, np.float64)

    def __call__(self, history):
        return self.law


def test_greedy_encoding_pieces_and_determined_segmentation():
    assert T.encode(TARGET, "aabab") == (4, 2)                       # aab|ab
    assert T.encode(DRAFTER, "abb") == (4,) and T.encode(TARGET, "abb") == (2, 1)
    assert T.pieces(DRAFTER, "aab") == (2, 1) and T.pieces(DRAFTER, "ba") == (1, 0)
    assert T.segment(TARGET, "aa", 1) == ()                          # "aab" could still match
    assert T.segment(TARGET, "aaa", 2) == (0,)                       # a, then "aa" is open again
    assert T.segment(TARGET, "abab", 3) == (2, 2)
    rnd = make_round(3)
    assert rnd.context == (0, 1)                                    # h = "ab" is shown to the drafter as a, b
    # the exact stopping rule gives the same draft law as segmenting K·Lmax characters of the stream
    stream = S.drafter_string_law(rnd, rnd.depth * 3)
    pushed = {}
    for s, prob in stream.items():
        x = T.segment(TARGET, s, rnd.depth)
        pushed[x] = pushed.get(x, 0.0) + prob
    law = S.segmentation_law(rnd)
    assert set(law) == set(pushed) and max(abs(law[x] - pushed[x]) for x in law) < 1e-14


def test_invalid_input_raises_before_any_work():
    good = T.random_token_model(TARGET, 0)
    with pytest.raises(ValueError, match="single characters"):
        S.Round(good, T.random_token_model(("a", "aa", "bb"), 0))
    with pytest.raises(ValueError, match="duplicate"):
        S.Round(good, T.random_token_model(("a", "b", "a"), 0))
    with pytest.raises(ValueError, match="non-empty"):
        S.Round(good, T.random_token_model(("a", "b", ""), 0))
    with pytest.raises(ValueError, match="K >= 1"):
        S.Round(good, T.random_token_model(DRAFTER, 0), depth=0)
    with pytest.raises(ValueError, match="drafter law"):
        S.Round(good, Fixed(DRAFTER, np.full(5, 0.3)))
    with pytest.raises(ValueError, match="target law"):
        S.Round(Fixed(TARGET, [0.5, 0.5, 0.5, 0.0, -0.5]), T.random_token_model(DRAFTER, 0))
    with pytest.raises(ValueError, match="outside the target vocabulary"):
        S.Round(good, T.random_token_model(DRAFTER, 0), history=(7,))
    with pytest.raises(ValueError, match="unknown"):
        S.round_law(make_round(), "slrs_fast")
    with pytest.raises(ValueError, match="horizon"):
        compare_rules(make_round(), m=4)
    with pytest.raises(ValueError, match="law over strings"):
        O.optimal_lcp({"a": 0.5}, {"a": 1.0})


@pytest.mark.parametrize("temperature, drafter_temperature", [(1.0, 1.0), (0.5, 0.5), (2.0, 2.0), (0.0, 0.0),
                                                              (1.0, 0.0), (0.0, 1.0)])
def test_rules_are_lossless_at_every_temperature(temperature, drafter_temperature):
    for seed in range(3):
        rnd = make_round(seed, temperature, drafter_temperature)
        target, target_strings = S.target_law(rnd), S.target_string_law(rnd, rnd.depth + 1)
        for rule in S.RULES:
            law = S.round_law(rnd, rule)
            assert total_variation(law.output, target) < 1e-12, (rule, seed)
            assert S.string_tv(S.string_law(law.output, TARGET, rnd.depth + 1), target_strings) < 1e-12
            assert abs(law.accepted_law.sum() - 1) < 1e-12 and abs(law.char_law.sum() - 1) < 1e-12


def test_negative_controls_are_lossy():
    for seed in range(3):
        rnd = make_round(seed)
        target, target_strings = S.target_law(rnd), S.target_string_law(rnd, rnd.depth + 1)
        for rule in S.CONTROLS:
            law = S.round_law(rnd, rule)
            assert total_variation(law.output, target) > 1e-3, (rule, seed)
            assert S.string_tv(S.string_law(law.output, TARGET, rnd.depth + 1), target_strings) > 1e-3


def test_omnidraft_translation_is_lossy_and_the_audit_says_by_how_much():
    """OmniDraft's n-gram cache: K drafter tokens merged into target tokens (longest cached n-gram first), verified
    with q'(t) = the product of the drafter's conditionals along t's n-gram. q' is not the law the translation
    drafts from (a longest match looks ahead; other paths spell the same text), so the output is not the target's:
    TV > 1e-4 at T = 1 and T = 0.5 on three seeds (0.0005 to 0.08), while TLI on the same rounds is exact."""
    assert T.encode(DRAFTER, "aab") == (2, 1)                        # "aab" is cached as the 2-gram aa|b
    for seed, temperature in itertools.product(range(3), (1.0, 0.5)):
        rnd = make_round(seed, temperature)
        assert S.translate(rnd, (0, 1, 2)) == (2,)                      # a|b -> "ab"; "aa" alone is no n-gram
        assert S.translate(rnd, (2, 1, 4)) == (4,)                      # aa|b -> "aab"; "abb" ends the draft
        target = S.target_law(rnd)
        assert total_variation(S.round_law(rnd, "omnidraft").output, target) > 1e-4, (seed, temperature)
        assert total_variation(S.round_law(rnd, "tli").output, target) < 1e-12
    with pytest.raises(ValueError, match="exact enumeration only"):
        S.sample_outputs(make_round(), "omnidraft", np.random.default_rng(0), 10)


def test_slrs_and_slem_are_chain_rules_over_the_segmentation_law():
    """ψ tables feed transport.exact.chain unchanged; the token rule accepts at least as much as exact match."""
    for seed, temperature in itertools.product(range(3), (0.5, 1.0)):
        rnd = make_round(seed, temperature)
        p_tables = S.target_tables(rnd)
        psi = S.conditional_tables(S.segmentation_law(rnd), len(TARGET), rnd.depth)
        slrs, slem = S.round_law(rnd, "slrs"), S.round_law(rnd, "slem")
        assert np.abs(chain_output_law(p_tables, psi, "token") - slrs.output).max() < 1e-14
        assert np.abs(chain_output_law(p_tables, psi, "exact_match") - slem.output).max() < 1e-14
        assert abs(chain_acceptance(p_tables, psi, "token") - slrs.accepted) < 1e-12
        assert slrs.accepted >= slem.accepted - 1e-12 and slrs.chars >= slem.chars - 1e-12
        for m in range(1, rnd.depth + 2):
            assert S.string_tv(S.string_law(S.target_law(rnd), TARGET, m), S.target_string_law(rnd, m)) < 1e-12


def test_samplers_pass_chi_square_and_the_controls_fail():
    rnd = make_round(0)
    target = S.target_law(rnd).ravel()
    for i, rule in enumerate(S.RULES + S.CONTROLS):
        samples = S.sample_outputs(rnd, rule, np.random.default_rng(10 + i), 3000)
        own = chi_square_pvalue(samples, S.round_law(rnd, rule).output.ravel())
        against_target = chi_square_pvalue(samples, target)
        assert own > 1e-3, rule
        assert (against_target > 1e-3) if rule in S.RULES else (against_target < 1e-6), rule


def test_equal_models_on_one_tokenizer():
    """TLI with drafter = target accepts every draft; SLRS does only when re-segmentation cannot change the tokens."""
    model = T.random_token_model(TARGET, 4)
    rnd = S.Round(model, model, (2,), 3)
    assert abs(S.round_law(rnd, "tli").accepted - 3) < 1e-12
    slrs = S.round_law(rnd, "slrs")
    assert slrs.accepted < 3 - 1e-3                                  # the target emits non-canonical tokenizations
    chars = T.random_token_model(("a", "b"), 4)
    rnd = S.Round(chars, chars, (0, 1), 3)
    for rule in ("tli", "slrs"):
        assert abs(S.round_law(rnd, rule).accepted - 3) < 1e-12


def test_drafter_without_shared_mass_drafts_nothing():
    rnd = S.Round(T.random_token_model(TARGET, 0), Fixed(DRAFTER, np.eye(5)[2]), (2,), 3)      # always "aa"
    tli = S.round_law(rnd, "tli")
    assert tli.accepted_law[0] == 1.0 and tli.drafted == {"": 1.0}
    assert total_variation(tli.output, S.target_law(rnd)) < 1e-12
    samples = S.sample_outputs(rnd, "tli", np.random.default_rng(0), 500)
    assert chi_square_pvalue(samples, S.target_law(rnd).ravel()) > 1e-3
    assert S.segmentation_law(rnd) == {(0, 0, 0): 1.0}              # "aaaaaa…" -> a|a|a


def test_one_hot_drafter_makes_slem_and_slrs_the_same_rule():
    for seed in range(3):
        rnd = make_round(seed, 1.0, drafter_temperature=0.0)
        assert len(S.segmentation_law(rnd)) == 1
        slem, slrs = S.round_law(rnd, "slem"), S.round_law(rnd, "slrs")
        assert np.abs(slem.output - slrs.output).max() < 1e-15 and abs(slem.accepted - slrs.accepted) < 1e-15


def test_lcp_lp_against_brute_force_and_closed_form():
    rng = np.random.default_rng(0)
    for m in (1, 2):                                                  # atoms of mass 1/6: max over 6! assignments
        strings = ["".join(s) for s in itertools.product("ab", repeat=m)]
        for _ in range(5):
            p_atoms, q_atoms = rng.choice(strings, 6), rng.choice(strings, 6)
            p_law = {s: float(np.mean(p_atoms == s)) for s in set(p_atoms)}
            q_law = {s: float(np.mean(q_atoms == s)) for s in set(q_atoms)}
            brute = max(np.mean([O.lcp(x, y) for x, y in zip(q_atoms, perm)])
                        for perm in itertools.permutations(p_atoms))
            assert abs(O.optimal_lcp(p_law, q_law).value - brute) < 1e-9
            assert abs(O.prefix_overlap(p_law, q_law) - brute) < 1e-12
    for alphabet, m in (("ab", 3), ("ab", 4), ("abc", 2)):
        strings = ["".join(s) for s in itertools.product(alphabet, repeat=m)]
        for conc in (0.2, 1.0):
            p_law = dict(zip(strings, rng.dirichlet(np.full(len(strings), conc))))
            q_law = dict(zip(strings, rng.dirichlet(np.full(len(strings), conc))))
            sol = O.optimal_lcp(p_law, q_law)
            assert abs(sol.value - O.prefix_overlap(p_law, q_law)) < 1e-9
            assert np.abs(sol.plan.sum(1) - [q_law[x] for x in sol.drafts]).max() < 1e-9
            assert np.abs(sol.plan.sum(0) - [p_law[y] for y in sol.targets]).max() < 1e-9
            full = sum(sol.plan[i, j] for i, x in enumerate(sol.drafts) for j, y in enumerate(sol.targets) if x == y)
            assert full <= O.full_match_bound(p_law, q_law) + 1e-9
            assert abs(O.optimal_lcp(p_law, p_law).value - m) < 1e-9
            assert abs(O.full_match_bound(p_law, p_law) - 1) < 1e-12


def test_no_rule_beats_the_optimum_across_tokenizations():
    for seed, temperature in itertools.product(range(4), (0.5, 1.0, 2.0)):
        cmp = compare_rules(make_round(seed, temperature))
        assert abs(cmp.optimum - cmp.closed_form) < 1e-9
        for rule, score in cmp.rules.items():
            assert score.chars_within <= score.bound + 1e-12, (rule, seed, temperature)
        for rule in ("slem", "slrs"):
            assert abs(cmp.rules[rule].bound - cmp.closed_form) < 1e-12   # their drafted strings follow Q
            assert cmp.rules[rule].chars_within <= cmp.optimum + 1e-12


def test_a_drafter_with_the_target_string_law_reaches_the_optimum_only_up_to_tokenization():
    """Q = P: the optimum is all m characters, yet SLRS (lossless) accepts fewer: the target spreads mass over
    non-canonical tokenizations that the greedy segmentation never drafts."""
    target = T.random_token_model(TARGET, 0)
    rnd = S.Round(target, StringOracle(target, (2,)), (2,), 3)
    cmp = compare_rules(rnd)
    assert abs(cmp.optimum - 3) < 1e-9 and abs(cmp.full_match - 1) < 1e-12
    assert total_variation(S.round_law(rnd, "slrs").output, S.target_law(rnd)) < 1e-12
    assert cmp.rules["slrs"].chars_within < 3 - 0.1


def test_tli_is_not_bounded_by_the_drafter_stream_optimum():
    """TLI drafts from the restricted law q_TLI, not from the drafter's stream: only its own bound applies."""
    cmp = compare_rules(make_round(22, 0.5), m=2)
    tli = cmp.rules["tli"]
    assert tli.chars_within > cmp.optimum + 0.5 and tli.chars_within <= tli.bound + 1e-12
