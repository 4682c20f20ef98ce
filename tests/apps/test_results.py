"""Experiment results files: an interrupted run resumes with its records; another configuration starts afresh.
Interleaved timing of several decoding configurations gives each what it gets alone."""
from specjax.bench.decoding import Results


def test_results_resume_and_restart_on_new_config(tmp_path):
    path = tmp_path / "run.json"
    config = {"budgets": (8, 16), "seed": 0}            # tuples come back from JSON as lists: still the same config
    first = Results(path, config)
    first.add("a", {"tau": 1.5})
    again = Results(path, config)
    assert again.done("a") and not again.done("b") and again.records["a"] == {"tau": 1.5}
    other = Results(path, {"budgets": (8, 32), "seed": 0})
    assert not other.done("a")


def test_interleaved_decoding_runs_every_configuration_on_every_prompt(tiny_pair):
    """`decode_interleaved` gives each configuration what `decode_prompts` gives it alone (tokens, τ) and one timed
    sample per repeat and prompt, and calls `between` once after each round; greedy speculation reproduces AR's
    tokens."""
    from specjax.bench.decoding import decode_interleaved, decode_prompts
    from specjax.sampling import GREEDY
    from specjax.methods import make_method

    target, draft = tiny_pair
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]
    configs = {"ar": dict(max_new_tokens=6, sampling=GREEDY),
               "chain": dict(method=make_method("chain", num_draft=2), drafter=draft, max_new_tokens=6,
                             sampling=GREEDY)}
    rounds = []
    runs = decode_interleaved(target, prompts, configs, repeats=3, between=lambda: rounds.append(1))
    assert len(rounds) == 3
    alone = decode_prompts(target, prompts, **configs["chain"])
    assert [r.tokens for r in runs["chain"]] == [r.tokens for r in runs["ar"]] == [r.tokens for r in alone]
    assert [r.tau for r in runs["chain"]] == [r.tau for r in alone]
    assert all(len(r.samples) == 3 and r.seconds == sorted(r.samples)[1] for rs in runs.values() for r in rs)
