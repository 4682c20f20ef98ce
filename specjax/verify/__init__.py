"""Acceptance rules, one implementation each: the single-draft chain rule (`chain`), the multi-draft per-node
rules (`multi_draft`), the coupled drafter-invariant rules and their drafter (`coupled`), and the draft samplers whose
laws those rules assume (`draft_laws`)."""
from specjax.verify.chain import PAD_TOKEN, accept_chain, accept_chain_unchecked, residual_distribution
from specjax.verify.coupled import coupled_drafts, disd, gumbel_list, output_races, round_races, target_token
from specjax.verify.draft_laws import sample_greedy_drafts, sample_iid, sample_spechub, sample_without_replacement
from specjax.verify.multi_draft import (greedy_drafts_verifier, kseq, kseq_rho_star, lp_plan_verifier,
                                        point_mass_rule, rrs_iid, rrs_residual, rrs_without_replacement, spechub)

__all__ = ["PAD_TOKEN", "accept_chain", "accept_chain_unchecked", "residual_distribution", "coupled_drafts", "disd",
           "gumbel_list", "output_races", "round_races", "target_token", "sample_greedy_drafts", "sample_iid", "sample_spechub",
           "sample_without_replacement", "greedy_drafts_verifier", "kseq", "kseq_rho_star", "lp_plan_verifier",
           "point_mass_rule", "rrs_iid", "rrs_residual", "rrs_without_replacement", "spechub"]
