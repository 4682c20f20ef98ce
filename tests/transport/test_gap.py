"""The gap experiment (small setting) and the `bounds` subcommand wiring."""
import argparse
import json

from specjax.apps.bounds import add_bounds_parser
from transport.gap import GapConfig, run_verifier_gap


def test_small_gap_experiment_writes_consistent_results(tmp_path):
    result = run_verifier_gap(GapConfig.small(), 0, tmp_path)
    saved = json.loads((tmp_path / "verifier_gap.json").read_text())
    assert (tmp_path / "verifier_gap.png").stat().st_size > 0
    assert saved["rows"] == result["rows"]
    for row in result["rows"]:
        assert row["min_gap"] >= -1e-12              # no verifier above its α*
        if row["verifier"] in ("spechub", "greedy") or row["k"] == 1:
            assert row["worst_gap"] < 1e-12          # optimal verifiers (and k = 1) have no gap
    stars = {(s["k"], s["law"]): s["mean_alpha_star"] for s in result["alpha_star"]}
    assert all(stars[k, "without_replacement"] >= stars[k, "iid"] - 1e-12 for k in GapConfig.small().ks)


def test_bounds_subcommand_parses():
    parser = argparse.ArgumentParser()
    add_bounds_parser(parser.add_subparsers())
    args = parser.parse_args(["bounds", "--out", "x", "--small"])
    assert args.out == "x" and args.small and args.func.__name__ == "run_bounds"
