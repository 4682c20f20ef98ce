"""Experiment results files: an interrupted run resumes with its records; another configuration starts afresh."""
from specjax.apps.bench import Results


def test_results_resume_and_restart_on_new_config(tmp_path):
    path = tmp_path / "run.json"
    config = {"budgets": (8, 16), "seed": 0}            # tuples come back from JSON as lists: still the same config
    first = Results(path, config)
    first.add("a", {"tau": 1.5})
    again = Results(path, config)
    assert again.done("a") and not again.done("b") and again.records["a"] == {"tau": 1.5}
    other = Results(path, {"budgets": (8, 32), "seed": 0})
    assert not other.done("a")
