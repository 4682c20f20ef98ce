"""transport: exact optimal multi-draft acceptance (LP, min-cut, prefix theorem), exact acceptance of the verifier
rules (token-level, block, traversal, GBV, Khisti's two-step), the exactness audit and the verifier-vs-optimum gap.
float64 throughout; never imports model code. The theory, and which test confirms each claim: transport/THEORY.md."""
from transport.chain import chain_acceptance
from transport.lp import LPPlan, lp_optimum, lp_optimum_table, solve_set_lp
from transport.optimal import OPTIMAL_LAWS, optimal_acceptance
from transport.verifiers import VERIFIERS, verifier_acceptance

__all__ = ["LPPlan", "OPTIMAL_LAWS", "VERIFIERS", "chain_acceptance", "lp_optimum", "lp_optimum_table", "optimal_acceptance",
           "solve_set_lp", "verifier_acceptance"]
