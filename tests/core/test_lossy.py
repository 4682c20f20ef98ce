"""Lossy chain rules (typical acceptance, fuzzy SD, EARS, top-M, FLy): their exact laws by enumeration (lossy at
their published defaults, and the token rule or the draft law at the extremes of their parameters), the jitted rules
against those exact laws (chi-square, the token rule's law as negative control), per-row draft lengths, temperature 0
(exact: greedy equals AR), and the gate that refuses them unless lossy rules are allowed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.decode.loop import generate
from specjax.methods import make_method
from specjax.sampling import GREEDY
from specjax.testing.pairs import tiny_pair
from specjax.testing.stats import chi_square_pvalue_counts
from specjax.verify.lossy import accept_lossy_unchecked, lossy_decision
from specjax.verify.names import check_chain_verifier, parse_lossy
from tests.exact_tables import laws_along, pattern_index, random_tables, sample_chains
from transport.exact.chain import (along, chain_acceptance, chain_output_law, chain_pattern_law, check_tables,
                                   completions, draft_sequences, pattern_offsets, stop_law, total_variation)

P_MIN = 1e-4
DEFAULTS = ("typical", "fuzzy", "ears", "topm", "fly")


def _case(seed, v=3, k=3, conc=0.8):
    rng = np.random.default_rng(seed)
    return check_tables(random_tables(rng, v, k + 1, conc), random_tables(rng, v, k, conc))


@pytest.mark.parametrize("spec", DEFAULTS + ("fly:2,0.3",))
def test_published_defaults_are_lossy(spec):
    """At its defaults every rule emits a law measurably away from the target's (completed, seeds 1-3)."""
    worst = 0.0
    for seed in (1, 2, 3):
        p, q = _case(seed)
        worst = max(worst, total_variation(chain_output_law(p, q, spec), completions(p, 3)[0]))
    assert worst > 0.01, (spec, worst)


@pytest.mark.parametrize("relaxed, strict", [("fuzzy:0", "token"), ("ears:0", "token"), ("fly:2,50", "token"),
                                             ("fly:3,0", "fly:3,0")])
def test_parameter_extremes_give_the_token_rule_back(relaxed, strict):
    """Threshold 0 (fuzzy, EARS) or a gate no law passes (FLy, top-3 entropy <= log 3 < 50): the token rule's stop
    law on every drafted chain, so the rule is exact there; FLy with THETA = 0 still needs its window to pass."""
    p, q = _case(4)
    for x, _ in draft_sequences(q, 3):
        p_seq, q_seq = along(p, x, 4), along(q, x, 3)
        for got, want in zip(stop_law(relaxed, p_seq, q_seq, x), stop_law(strict, p_seq, q_seq, x)):
            np.testing.assert_allclose(got, want, atol=1e-14)
    if strict == "token":
        assert total_variation(chain_output_law(p, q, relaxed), completions(p, 3)[0]) < 1e-14


@pytest.mark.parametrize("spec", ["typical:0,0", "topm:3", "fly:1,0"])
def test_parameter_extremes_that_pass_every_draft(spec):
    """No threshold (typical), M = V (top-M) or a one-draft window with no gate (FLy): every draft passes."""
    p, q = _case(5)
    assert chain_acceptance(p, q, spec) == pytest.approx(3.0, abs=1e-14)


def test_relaxing_a_threshold_accepts_more():
    p, q = _case(6)
    for family in (["fuzzy:0", "fuzzy:0.05", "fuzzy:0.2", "fuzzy:1"], ["ears:0", "ears:0.2", "ears:0.5", "ears:1"],
                   ["fly:2,1", "fly:2,0.5", "fly:2,0.1", "fly:2,0"]):
        accepted = [chain_acceptance(p, q, spec) for spec in family]
        assert all(b >= a - 1e-14 for a, b in zip(accepted, accepted[1:])) and accepted[-1] > accepted[0], family


@pytest.mark.parametrize("spec", DEFAULTS + ("fly:2,0.3", "fuzzy:0.3"))
def test_jax_rule_matches_its_exact_law(spec):
    """The jitted rule emits the enumerated law of its own rule (chi-square) and not the token rule's (power)."""
    p, q = _case(7, conc=1.5)
    k, v = 3, 3
    rng = np.random.default_rng(0)
    x = sample_chains(rng, q, 20_000)
    num, tokens = jax.jit(accept_lossy_unchecked, static_argnums=0)(
        spec, jax.random.key(1), jnp.asarray(x, jnp.int32), jnp.asarray(laws_along(q, x, k), jnp.float32),
        jnp.asarray(laws_along(p, x, k + 1), jnp.float32))
    counts = np.bincount(pattern_index(np.asarray(tokens), np.asarray(num), v, k), minlength=pattern_offsets(v, k)[-1])
    assert chi_square_pvalue_counts(counts, chain_pattern_law(p, q, spec)) > P_MIN
    assert chi_square_pvalue_counts(counts, chain_pattern_law(p, q, "token")) < P_MIN


@pytest.mark.parametrize("spec", DEFAULTS + ("fly:2,0",))
def test_a_shorter_block_is_decided_on_its_own_drafts(spec):
    """With num_drafted = L the decision equals the one on the first L drafts alone (same uniforms)."""
    rng = np.random.default_rng(8)
    b, k, v = 256, 4, 5
    q = rng.dirichlet(np.ones(v), size=(b, k)).astype(np.float32)
    p = rng.dirichlet(np.ones(v), size=(b, k + 1)).astype(np.float32)
    x = np.array([[rng.choice(v, p=q[i, j] / q[i, j].sum()) for j in range(k)] for i in range(b)], np.int32)
    u = rng.random((b, k)).astype(np.float32)
    rule = parse_lossy(spec)
    for length in (1, 2, 3):
        n, law = lossy_decision(rule, jnp.asarray(u), jnp.asarray(x), jnp.asarray(q), jnp.asarray(p),
                                jnp.full((b,), length))
        n_short, law_short = lossy_decision(rule, jnp.asarray(u[:, :length]), jnp.asarray(x[:, :length]),
                                            jnp.asarray(q[:, :length]), jnp.asarray(p[:, :length + 1]))
        np.testing.assert_array_equal(np.asarray(n), np.asarray(n_short))
        np.testing.assert_allclose(np.asarray(law), np.asarray(law_short), atol=1e-6)


def test_specs_are_checked_and_lossy_rules_refused_unless_allowed():
    for bad, message in [("fuzzy:-1", ">= 0"), ("topm:1.5", "integer"), ("fly:0", "integer"),
                         ("fly:2,0.3,1", "at most 2"), ("ears:x", "numbers"), ("hsd:1", "at most 0")]:
        with pytest.raises(ValueError, match=message):
            check_chain_verifier(bad, allow_lossy=True)
    for spec in DEFAULTS + ("fuzzy:0.3",):
        with pytest.raises(ValueError, match="is lossy.*--allow-lossy"):
            make_method("chain", num_draft=2, verifier=spec)
        assert check_chain_verifier(spec, allow_lossy=True) == spec


def test_greedy_decoding_with_every_lossy_rule_equals_ar(ragged_prompts):
    """At temperature 0 each rule passes exactly the drafts equal to the target's argmax — FLy only with a gate
    THETA > 0 (a one-hot law has entropy 0): with THETA = 0 it passes mismatches, and greedy decoding changes."""
    target, draft = tiny_pair(13, 23)
    tokens, lengths = ragged_prompts
    key = jax.random.key(4)
    ar = np.asarray(generate(target, tokens, lengths, key, max_new_tokens=12, sampling=GREEDY).tokens)
    method = make_method("chain", num_draft=3)
    for spec in DEFAULTS + ("fly:2,0.01", "fly:2,0"):
        sd = generate(target, tokens, lengths, key, method=method, drafter=draft, verifier=spec, allow_lossy=True,
                      max_new_tokens=12, sampling=GREEDY)
        assert np.array_equal(np.asarray(sd.tokens), ar) == (spec != "fly:2,0"), spec


@pytest.mark.parametrize("spec", DEFAULTS + ("ears:0",))
def test_one_step_law_is_the_first_token_of_a_one_draft_round(spec):
    """`one_step_law` (the per-token distortion used on real laws) = the exact first-token marginal of a K = 1
    chain round; with EARS at 0 (the token rule) it is p itself."""
    from specjax.verify.lossy_rules import one_step_law

    p, q = _case(9, v=4, k=1)
    first = chain_output_law(p, q, spec).sum(axis=1)
    np.testing.assert_allclose(one_step_law(parse_lossy(spec), p[0], q[0]), first, atol=1e-14)
    if spec == "ears:0":
        np.testing.assert_allclose(first, p[0], atol=1e-14)


def test_tradeoff_experiment_writes_its_table(tmp_path):
    """The exact part of experiments/lossy_tradeoff.py: lossless references at TV ~ 0 and τ gain >= 1 (block), the
    defaults' TV > 0, and its JSON, CSV and PNG."""
    import json

    from experiments.lossy_tradeoff import main

    out = tmp_path / "lossy"
    assert main(["--models", "2", "--rules", "token", "block", "fuzzy", "fly:2,0.3", "--out", str(out)]) == 0
    rows = {(r["rule"], r["concentration"]): r for r in json.loads(out.with_suffix(".json").read_text())["records"]["exact"]}
    for conc in (0.5, 2.0):
        assert rows["token", conc]["tv_max"] < 1e-13 and rows["token", conc]["tau_gain_mean"] == pytest.approx(1.0)
        assert rows["block", conc]["tv_max"] < 1e-13 and rows["block", conc]["tau_gain_mean"] >= 1.0
        assert rows["fly:2,0.3", conc]["tv_mean"] > 1e-3
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".csv").read_text().startswith("part,")
