"""Acceptance rules: the single-draft chain rule here; the multi-draft rules in `multi_draft`."""
from specjax.verify.chain import PAD_TOKEN, accept_chain, accept_chain_unchecked, residual_distribution

__all__ = ["PAD_TOKEN", "accept_chain", "accept_chain_unchecked", "residual_distribution"]
