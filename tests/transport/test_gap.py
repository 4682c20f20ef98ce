"""The gap experiment (small setting) and the `bounds` subcommand wiring."""
import argparse
import json

import pytest

from specjax.apps.bounds import add_bounds_parser
from specjax.bench.studies_plots import plot_verifier_gap
from transport.studies.gap import GapConfig, run_verifier_gap


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gap")
    result = run_verifier_gap(GapConfig.small(), out)
    plot_verifier_gap(result, out / "verifier_gap.png")       # what `specjax bounds` draws from the result
    return result, out


def test_small_gap_experiment_writes_consistent_results(small_run):
    result, tmp_path = small_run
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


def test_gap_reports_two_step_rules_and_sequence_lengths(small_run):
    result, _ = small_run
    verifiers = {(r["k"], r["verifier"]) for r in result["rows"]}
    assert (2, "khisti_lp") in verifiers and (4, "khisti") in verifiers and (3, "khisti_lp") not in verifiers
    for r in result["rows"]:
        if r["verifier"] == "khisti_lp":
            assert r["worst_gap"] < 1e-8                 # the k <= 2 selection LP is optimal (LP tolerance)
    temps = {r["temperature"] for r in result["rows"]}
    assert temps == set(GapConfig.small().temperatures)
    chains = [r for r in result["lengths"] if r["scheme"] == "chain"]
    assert chains and all(r["block"] >= r["token"] - 1e-12 for r in chains)       # a theorem (Sun et al.)
    assert any(r["scheme"] == "tree" for r in result["lengths"])
    assert all(r["gbv"] > 0 for r in result["lengths"] if r["scheme"] == "iid chains")
