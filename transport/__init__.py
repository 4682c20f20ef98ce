"""transport: exact optimal multi-draft acceptance (LP, min-cut, prefix theorem), exact acceptance of the verifier
rules (token-level, block, traversal, GBV, Khisti's two-step), the exactness audit and the verifier-vs-optimum gap.
float64 throughout; never imports model code. The theory, and which test confirms each claim: transport/THEORY.md.

Layout (each layer imports only the ones below it; tests/test_layering.py checks there is no cycle):
  laws, validate    shared leaves: draft-law tables (tuples -> sets -> hit function); eager input checks
  optimal/          α*: the full-sort reference, the numpy and jax backends, ratio buckets, the set LP, and
                    `optimal_acceptance` (acceptance.py) dispatching to a backend; the speed-of-light caps of
                    deterministic trees and chains and their entropy bounds (speed_of_light.py)
  exact/            exact acceptance and output laws of the verifier rules by enumeration: one-step kernels, Khisti's
                    two-step rule, the by-name dispatch, closed-form acceptance (verifiers.py), chains, multipath,
                    tree laws and tree kernels, the audit
  studies/          the gap studies on synthetic and stored real laws (computation and JSON; figures live in
                    specjax.bench.studies_plots)
"""
from transport.exact.chain import chain_acceptance
from transport.exact.verifiers import VERIFIERS, verifier_acceptance
from transport.optimal.acceptance import OPTIMAL_LAWS, optimal_acceptance
from transport.optimal.lp import LPPlan, lp_optimum, lp_optimum_table, solve_set_lp
from transport.optimal.speed_of_light import chain_cap, tree_cap

__all__ = ["LPPlan", "OPTIMAL_LAWS", "VERIFIERS", "chain_acceptance", "chain_cap", "lp_optimum", "lp_optimum_table",
           "optimal_acceptance", "solve_set_lp", "tree_cap", "verifier_acceptance"]
