"""α*, the best membership acceptance of any lossless verifier (transport/THEORY.md §1–§2): `acceptance`
(`optimal_acceptance`, the dispatcher), its backends `numpy_backend` (CPU, with the ratio `buckets` and the aggregated
`race` for k >= 3 drafts without replacement) and `jax_backend` (batched), the full-sort `reference` both are checked against, and the set LP (`lp`, small V; its plan is a lossless
optimal verifier). Nothing is imported here: importing one module does not load the others."""
