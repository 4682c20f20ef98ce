"""Runners: the protocol every model the decode loop drives implements (`base`), the model runner with its
wrappers (early exit, exits, fused features: `model`), and every drafter: EAGLE-style heads, prompt lookup,
retrieval, ADED, hybrids, the acceptance-head wrapper."""
