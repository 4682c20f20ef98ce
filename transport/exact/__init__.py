"""Exact acceptance and output laws of the verifier rules by enumeration, numpy float64 (transport/THEORY.md §3–§7):
one-step `kernels`, Khisti's two-step rule (`importance`, built on them), the by-name `dispatch` above both,
closed-form acceptance of each rule (`verifiers`), chains (`chain`), GBV on i.i.d. chains (`multipath`), drafted tree
laws (`tree_laws`) and tree verifiers (`tree_kernels`), and the exactness `audit`. Nothing is imported here."""
