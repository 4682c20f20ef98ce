"""α*, the best acceptance of any lossless verifier, exact at full vocabulary size, float64 (transport/THEORY.md §2).

By the prefix theorem (§2.3) the minimum cut is a prefix of the tokens sorted by p/q, so α* = min_m [p(V∖H_m) +
f(H_m)] with f the hit function of the draft law. Two backends behind one dispatch table:
`transport.optimal.numpy_backend` (CPU: ratio buckets without a full sort, O(V) greedy, the aggregated race) and
`transport.optimal.jax_backend` (batched jax, for accelerators); both agree with the full-sort reference
`transport.optimal.reference` to rounding.
"""
from __future__ import annotations

import jax
import numpy as np

from specjax.verify import names
from transport.optimal import jax_backend, numpy_backend, reference
from transport.validate import check_draft_law, checked_rows

OPTIMAL_LAWS = names.OPTIMAL_LAWS
BACKENDS = ("auto", "numpy", "jax")

# (backend, draft law) -> fn(rows...) -> (α* [N], H [N, V] or None). numpy functions take raw rows and their sums
# (bucketing works on unnormalised rows); jax functions take normalised float64 rows.
_NUMPY = {"iid": numpy_backend.iid, "without_replacement": numpy_backend.without_replacement,
          "greedy": numpy_backend.greedy}
_JAX = {"iid": jax_backend.iid, "without_replacement": jax_backend.without_replacement, "greedy": jax_backend.greedy}


def optimal_acceptance(p, q, k: int, drafts: str = "iid", *, return_set: bool = False, backend: str = "auto",
                       nodes_per_decade: int = reference.NODES_PER_DECADE):
    """α*(p, draft law of q with k drafts): the best membership acceptance P(Y ∈ X) of any lossless verifier.

    p, q: `[V]` or `[N, V]` probability rows (float32: sum within 1e-4; float64: within 1e-9; renormalised in float64).
    drafts: "iid" | "without_replacement" (k_eff = min(k, |supp q|) drafts) | "greedy" (needs |supp q| >= k).
    Returns α* as a float (one pair) or `[N]` float64; with `return_set`, also the minimising token set H
    (`[V]` / `[N, V]` bool) of α* = p(V∖H) + P(X hits H).
    Cost (numpy backend): O(V) for iid and without replacement with k_eff <= 2 (ratio buckets + exact pruning, no
    full sort; equal to the full-sort reference to ~1e-15), O(V) for greedy (top-(k-1) by partition), one sort plus
    O(V·moments) for without replacement with k_eff >= 3 (the aggregated exponential-race quadrature of
    `transport.optimal.race`, THEORY.md §2.4; `nodes_per_decade` Gauss–Legendre nodes per decade of time, 20 agrees
    with exact enumeration to ~1e-15; compare with twice as many to bound the error).
    backend: "numpy" (fastest on CPU: XLA's CPU sort is ~10x slower than numpy's), "jax" (the race as a jax scan
    over V), or "auto" (numpy when jax's default backend is the CPU). All float64; x64 is enabled only
    around the jax calls. Raises ValueError on malformed inputs, k < 1, or an unknown draft law.
    """
    k, (p_raw, p_sum), (q_raw, q_sum) = checked_rows(p, q, k)
    check_draft_law(drafts, OPTIMAL_LAWS)
    check_draft_law(backend, BACKENDS, "backend")
    use_jax = backend == "jax" or (backend == "auto" and jax.default_backend() != "cpu")
    if drafts == "greedy" and k > 1:
        n_supp = np.count_nonzero(q_raw, axis=1)
        if np.any(n_supp < k):
            raise ValueError(f"greedy drafts need |supp q| >= k = {k} (got a row with {n_supp.min()})")
    law = "iid" if drafts == "greedy" and k == 1 else drafts
    if use_jax:
        alpha, mask = _JAX[law](p_raw / p_sum[:, None], q_raw / q_sum[:, None], k, return_set, nodes_per_decade)
    else:
        alpha, mask = _NUMPY[law](p_raw, q_raw, p_sum, q_sum, k, return_set, nodes_per_decade)
    if np.ndim(p) == 1:
        return (float(alpha[0]), mask[0]) if return_set else float(alpha[0])
    return (alpha, mask) if return_set else alpha
