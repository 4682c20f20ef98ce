"""`--method auto`: the choice follows the latency model (AR where T-token calls are dear, a chain where they are
nearly free), the acceptance estimate counts the tries and successes of each draft position, and decoding by the
choice is exact (greedy: AR's tokens) while it revises the choice from the rounds it ran."""
import jax
import numpy as np
import pytest

from specjax.costs.choice import AcceptanceEstimate, choose
from specjax.costs.profile import CostCurve, CostProfile
from specjax.decode.auto import generate_auto
from specjax.decode.loop import generate
from specjax.sampling import GREEDY, SamplingConfig
from specjax.testing.pairs import exact_joint_law, tiny_pair
from specjax.testing.stats import chi_square_pvalue_counts

GRID = tuple(range(1, 18))


def profile(target_slope: float, drafter_s: float = 0.1) -> CostProfile:
    """A device whose target call costs 1 + slope·(T − 1) (units of an AR step) and a drafter step `drafter_s`."""
    return CostProfile(CostCurve(GRID, tuple(1.0 + target_slope * (t - 1) for t in GRID), "target"),
                       drafter=CostCurve(GRID, tuple(drafter_s for _ in GRID), "drafter"))


CPU = profile(0.4, drafter_s=0.3)          # like this 2-core CPU: T = 5 costs 2.6 AR steps
GPU = profile(0.01, drafter_s=0.05)        # memory-bound: T = 5 costs about one step


def test_choice_follows_the_latency_model():
    good = AcceptanceEstimate((0.8,), strength=1.0)
    assert choose(CPU, AcceptanceEstimate((0.5,))).method == "ar"
    gpu = choose(GPU, good)
    assert gpu.method == "chain" and gpu.num_draft > 1 and gpu.speedup > 1.05
    assert gpu.tau == pytest.approx(1 + sum(0.8 ** i for i in range(1, gpu.num_draft + 1)))
    # the chosen K is the model's argmax over K
    assert gpu.candidates[f"chain K={gpu.num_draft}"] == max(gpu.candidates.values())
    # the margin: a chain predicted 3% faster is not taken at a 5% margin, and taken at 1%
    slight = AcceptanceEstimate((0.0918,), strength=1.0)        # K = 1: τ 1.0918 over a round of 1.06 AR steps
    assert choose(GPU, slight).candidates["chain K=1"] == pytest.approx(1.03, abs=1e-3)
    assert choose(GPU, slight).method == "ar" and choose(GPU, slight, margin=0.01).num_draft == 1
    assert choose(GPU, AcceptanceEstimate((0.0,))).method == "ar"
    no_drafter = CostProfile(GPU.target)
    assert choose(no_drafter, good).method == "ar" and choose(no_drafter, good).candidates == {}


def test_estimate_counts_tries_and_successes_per_position():
    est = AcceptanceEstimate((0.5,), strength=2.0)
    # rounds: accepted 0, 2, 3 of 3 drafted, and one row that ran no round (-1)
    after = est.update(np.array([[0, 2, 3, -1]]), np.array([[3, 3, 3, 0]]))
    assert after.tried == (3, 2, 2) and after.accepted == (2, 2, 1)
    np.testing.assert_allclose(after.rates(4), [(1 + 2) / 5, (1 + 2) / 4, (1 + 1) / 4, 0.5])
    assert after.chain_tau(2) == pytest.approx(1 + 0.6 + 0.6 * 0.75)
    assert AcceptanceEstimate.from_dict(after.to_dict()) == after
    with pytest.raises(ValueError, match="prior"):
        AcceptanceEstimate((1.5,))
    with pytest.raises(ValueError, match="accepted <= tried"):
        AcceptanceEstimate((0.5,), accepted=(3,), tried=(2,))
    with pytest.raises(ValueError, match="margin"):
        choose(GPU, est, margin=1.0)


def test_auto_decoding_is_greedy_ar_and_revises_its_choice():
    target, drafter = tiny_pair()
    prompts = [[3, 5, 7], [2, 9], [11, 4, 6, 1]]
    # an optimistic prior picks a chain first; the tiny pair's drafter (another random model) rarely agrees, so
    # the observed rounds pull the estimate down until AR wins
    run = generate_auto(target, drafter, prompts, jax.random.key(0), profile=profile(0.25, 0.2),
                        estimate=AcceptanceEstimate((0.95,), strength=1.0), max_draft=4, max_new_tokens=12,
                        sampling=GREEDY)
    for i, prompt in enumerate(prompts):
        ar = generate(target, np.asarray([prompt]), np.asarray([len(prompt)]), jax.random.key(0), max_new_tokens=12,
                      sampling=GREEDY)
        np.testing.assert_array_equal(np.asarray(run.result.tokens[i]), np.asarray(ar.tokens[0]))
    methods = [c["method"] for c in run.choices]
    assert methods[0] == "chain" and methods[-1] == "ar", run.choices
    assert run.choices[0]["observed_tau"] < run.choices[0]["tau_estimate"]
    assert sum(run.estimate.tried) > 0
    with pytest.raises(ValueError, match="prompt"):
        generate_auto(target, drafter, [], jax.random.key(0), profile=GPU, estimate=AcceptanceEstimate())


def test_auto_decoding_samples_the_target_law_while_its_choice_moves():
    """T = 1: the first two tokens of 600 requests (one prompt, each request its own key) decoded by auto, which
    starts on a chain and moves to AR as the tiny drafter disappoints, pass chi-square against the target's exact
    law, and fail it against the law at T = 0.7 (negative control)."""
    target, drafter = tiny_pair()
    prompt = [3, 5, 7]
    run = generate_auto(target, drafter, [prompt] * 600, jax.random.key(1), profile=profile(0.25, 0.2),
                        estimate=AcceptanceEstimate((0.95,), strength=20.0), max_draft=3, max_new_tokens=2)
    methods = [c["method"] for c in run.choices]
    assert "chain" in methods and "ar" in methods, methods
    firsts = np.asarray(run.result.tokens)[:, :2]
    v = target.config.vocab_size

    def counts(law):
        return np.bincount(firsts[:, 0] * v + firsts[:, 1], minlength=v * v).astype(float), law.reshape(-1)

    assert chi_square_pvalue_counts(*counts(exact_joint_law(target, prompt, SamplingConfig(), 2))) > 1e-3
    colder = exact_joint_law(target, prompt, SamplingConfig(temperature=0.7), 2)
    assert chi_square_pvalue_counts(*counts(colder)) < 1e-6
