"""Exact chain verification in numpy float64 (transport/THEORY.md §5.1): the law of what a chain verifier emits and its
expected number of accepted drafts, by enumerating every drafted chain over context-dependent tables (small V, K).

Tables: `p_tables[i]` has shape `[V]*i + [V]`, the target law of position i+1 after the i-token prefix (i = 0..K);
`q_tables[i]` likewise for the draft (i = 0..K-1). A verifier's behaviour on one drafted chain x_1..x_K is its
*stop law*: π[n] = P(n drafts accepted) and final[n] `[V]` = the law of the token emitted after them. The emitted
tokens are compared with the target by *completion*: continue them with target samples up to K+1 tokens; a verifier
is lossless iff the completed law equals the target's joint law over V^(K+1).
"""
from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import numpy as np

from specjax.verify import names
from specjax.verify.lossy_rules import FALLBACK_TARGET, loosen, pass_probability
from transport.exact.coupled import disd_joint
from transport.exact.kernels import residual

CHAIN_VERIFIERS = names.CHAIN_VERIFIERS + ("traversal",)    # traversal on a chain is block verification
LOSSY_CHAIN_VERIFIERS = tuple(names.LOSSY_CHAIN_VERIFIERS)  # rules the decode loop runs only when allowed,
# written NAME[:values] (specjax.verify.names.parse_lossy)
# published variants, audited in transport.exact.audit: a block rule whose weights are token-wise products (a port's
# bug), sample-then-compare ("exact match") at T > 0, compare-with-argmax
CHAIN_VARIANTS = ("block_tokenwise", "exact_match", "exact_match_argmax")
CHAIN_RULE_NAMES = CHAIN_VERIFIERS + LOSSY_CHAIN_VERIFIERS + CHAIN_VARIANTS


def check_chain_rule(verifier: str) -> str:
    """`verifier` if the exact chain machinery knows it (a name of CHAIN_RULE_NAMES, lossy ones with their
    parameters, e.g. "fuzzy:0.3"); ValueError otherwise."""
    if names.is_lossy_chain_verifier(verifier):
        names.parse_lossy(verifier)
    elif verifier not in CHAIN_RULE_NAMES:
        raise ValueError(f"unknown chain verifier {verifier!r}; expected one of {CHAIN_RULE_NAMES}")
    return verifier


def check_tables(p_tables: Sequence, q_tables: Sequence, depth: int | None = None) -> tuple[list, list]:
    """Validate chain tables (shapes `[V]*i + [V]`, rows summing to 1 within 1e-9); return float64 copies.

    depth: the number of drafted positions K (default len(q_tables)); p needs K+1 tables. ValueError otherwise.
    """
    k = len(q_tables) if depth is None else depth
    if k < 1 or len(q_tables) < k or len(p_tables) < k + 1:
        raise ValueError(f"a depth-{k} chain needs q_tables[0..{k - 1}] and p_tables[0..{k}] "
                         f"(got {len(q_tables)} and {len(p_tables)})")
    v = np.shape(p_tables[0])[-1]
    out = []
    for name, tables, count in (("p", p_tables, k + 1), ("q", q_tables, k)):
        rows = []
        for i in range(count):
            t = np.asarray(tables[i], np.float64)
            if t.shape != (v,) * (i + 1):
                raise ValueError(f"{name}_tables[{i}] must have shape {(v,) * (i + 1)}, got {t.shape}")
            if not np.all(np.isfinite(t)) or np.any(t < 0) or np.abs(t.sum(-1) - 1).max() > 1e-9:
                raise ValueError(f"{name}_tables[{i}] must hold probability rows (finite, >= 0, sum 1 within 1e-9)")
            rows.append(t / t.sum(-1, keepdims=True))
        out.append(rows)
    return out[0], out[1]


def draft_sequences(q_tables: Sequence[np.ndarray], depth: int) -> Iterator[tuple[tuple[int, ...], float]]:
    """Every drafted chain x_1..x_depth with its probability Π q(x_i|x_<i) > 0."""
    v = q_tables[0].shape[-1]
    for x in itertools.product(range(v), repeat=depth):
        prob = float(np.prod([q_tables[i][x[:i] + (x[i],)] for i in range(depth)]))
        if prob > 0:
            yield x, prob


def along(tables: Sequence[np.ndarray], x: Sequence[int], count: int) -> np.ndarray:
    """The laws `[count, V]` after the prefixes x_<1, ..., x_<count+1 (tables[i][x_1..x_i])."""
    return np.stack([tables[i][tuple(x[:i])] for i in range(count)])


def stop_law(verifier: str, p_seq: np.ndarray, q_seq: np.ndarray, x: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(π `[K+1]`, final `[K+1, V]`) of a chain verifier on drafts x `[K]` with p_seq `[K+1, V]`, q_seq `[K, V]`."""
    k = len(x)
    ratio = np.array([p_seq[i, x[i]] / q_seq[i, x[i]] for i in range(k)])
    final = np.zeros((k + 1, p_seq.shape[1]))
    final[k] = p_seq[k]
    if verifier in ("block", "traversal", "block_tokenwise", "hsd"):
        w = np.ones(k + 1)
        for i in range(k):
            w[i + 1] = min(1.0, w[i] * ratio[i]) if verifier != "block_tokenwise" else w[i] * min(1.0, ratio[i])
        h = np.ones(k + 1)                                            # h_0 = 1: n = 0 when every later index fails
        for i in range(1, k):
            z = np.maximum(w[i] * p_seq[i] - q_seq[i], 0.0).sum()
            h[i] = z / (z + 1.0 - w[i]) if z + 1.0 - w[i] > 0 else 1.0
        # HSD's step-back probabilities are block's 1 - h_i; it differs only here: the whole draft passes with the
        # uncapped joint ratio min(1, Π p/q) instead of the capped weight p_K (transport/THEORY.md §5.5)
        h[k] = min(1.0, float(np.prod(ratio))) if verifier == "hsd" else w[k]
        pi = np.array([h[n] * np.prod(1.0 - h[n + 1:]) for n in range(k + 1)])
        for n in range(k):
            final[n] = residual(w[n] * p_seq[n], q_seq[n])
        return pi, final
    if verifier == "disd":
        return _coupled_stop_law(p_seq, q_seq, x)
    if verifier == "token":
        accept = np.minimum(1.0, ratio)
    elif verifier == "exact_match":                                   # y ~ p, accept while y == x
        accept = np.array([p_seq[i, x[i]] for i in range(k)])
    elif verifier == "exact_match_argmax":
        accept = np.array([float(np.argmax(p_seq[i]) == x[i]) for i in range(k)])
    elif names.is_lossy_chain_verifier(verifier):
        return _lossy_stop_law(names.parse_lossy(verifier), p_seq, q_seq, x)
    else:
        raise ValueError(f"unknown chain verifier {verifier!r}; expected one of {CHAIN_RULE_NAMES}")
    pi = np.array([np.prod(accept[:n]) * (1.0 - accept[n] if n < k else 1.0) for n in range(k + 1)])
    for n in range(k):
        if verifier == "token":
            final[n] = residual(p_seq[n], q_seq[n])
        elif verifier == "exact_match":                               # the mismatching target sample
            final[n] = np.where(np.arange(p_seq.shape[1]) == x[n], 0.0, p_seq[n])
            final[n] /= final[n].sum() if final[n].sum() > 0 else 1.0
        else:
            final[n] = np.eye(p_seq.shape[1])[np.argmax(p_seq[n])]
    if verifier == "exact_match_argmax":
        final[k] = np.eye(p_seq.shape[1])[np.argmax(p_seq[k])]
    return pi, final


def _coupled_stop_law(p_seq: np.ndarray, q_seq: np.ndarray, x: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(π, final) of DISD at every position (`specjax.verify.coupled`, THEORY §3.11) on drafts x: position i's draft
    and target token are the two winners of one race, independent across positions, so given x_i the draft is
    accepted with P(X = Y = x_i) / q(x_i), and a rejected one emits the target's winner Y ≠ x_i by the joint law's
    row x_i."""
    k, v = len(x), p_seq.shape[1]
    accept = np.zeros(k)
    final = np.zeros((k + 1, v))
    final[k] = p_seq[k]
    for i in range(k):
        row = disd_joint(p_seq[i], q_seq[i])[x[i]] / q_seq[i, x[i]]        # P(Y = · | X = x_i)
        accept[i] = row[x[i]]
        row[x[i]] = 0.0
        final[i] = row / row.sum() if row.sum() > 0 else row
    pi = np.array([np.prod(accept[:n]) * (1.0 - accept[n] if n < k else 1.0) for n in range(k + 1)])
    return pi, final


def _lossy_stop_law(rule: names.LossyRule, p_seq: np.ndarray, q_seq: np.ndarray,
                    x: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(π, final) of a lossy rule of specjax.verify.lossy_rules on one drafted chain: each draft passes on its own
    with probability a_i (independently), FLy loosens the pattern, n = the first draft that does not count as
    passed. Every pattern of own passes is enumerated (2^K), so FLy's look-ahead is exact too."""
    k, v = len(x), p_seq.shape[1]
    a = pass_probability(rule, p_seq[None, :k], q_seq[None], np.asarray(x)[None])[0]
    pi = np.zeros(k + 1)
    for own in itertools.product((False, True), repeat=k):
        own = np.array(own)
        weight = float(np.prod(np.where(own, a, 1.0 - a)))
        if weight > 0:
            counted = loosen(rule, own[None], p_seq[None, :k], np.array([k]))[0]
            pi[int(np.cumprod(counted).sum())] += weight
    final = np.zeros((k + 1, v))
    final[k] = p_seq[k]
    for n in range(k):
        final[n] = p_seq[n] if rule.name in FALLBACK_TARGET else residual(p_seq[n], q_seq[n])
    return pi, final


def completions(p_tables: Sequence[np.ndarray], depth: int) -> list[np.ndarray]:
    """S[m] `[V]*(depth+1)`: the target's law of tokens m+1..depth+1 given tokens 1..m (S[0] = the joint law)."""
    v = p_tables[0].shape[-1]
    s = [np.ones((v,) * (depth + 1))]
    for i in range(depth, -1, -1):
        s.insert(0, p_tables[i].reshape(p_tables[i].shape + (1,) * (depth - i)) * s[0])
    return s


def add_completed(out: np.ndarray, comp: list[np.ndarray], prefix: Sequence[int], final: np.ndarray,
                  weight: float) -> None:
    """out += weight · (prefix, y ~ final, then target samples) as a law over V^(depth+1)."""
    prefix = tuple(prefix)
    if weight == 0:
        return
    lead = final.reshape(final.shape + (1,) * (out.ndim - len(prefix) - 1))
    out[prefix] += weight * lead * comp[len(prefix) + 1][prefix]


def chain_output_law(p_tables, q_tables, verifier: str) -> np.ndarray:
    """Law `[V]*(K+1)` of the emitted tokens, completed with target samples, summed over the exact draft law."""
    p_tables, q_tables = check_tables(p_tables, q_tables)
    k = len(q_tables)
    comp = completions(p_tables, k)
    out = np.zeros_like(comp[0])
    for x, prob in draft_sequences(q_tables, k):
        pi, final = stop_law(verifier, along(p_tables, x, k + 1), along(q_tables, x, k), x)
        for n in range(k + 1):
            add_completed(out, comp, x[:n], final[n], prob * pi[n])
    return out


def pattern_offsets(v: int, depth: int) -> np.ndarray:
    """Offsets `[depth+2]` of the emitted-pattern layout: the pattern (n accepted, then one token) has id
    offsets[n] + (its n+1 tokens read as base-V digits); offsets[-1] is the number of patterns."""
    return np.concatenate([[0], np.cumsum([v ** (m + 1) for m in range(depth + 1)])]).astype(np.int64)


def add_pattern(out: np.ndarray, offsets: np.ndarray, prefix: Sequence[int], final: np.ndarray,
                weight: float) -> None:
    """out (the `pattern_offsets` layout) += weight · (prefix, then y ~ final `[V]`)."""
    v = len(final)
    start = offsets[len(prefix)] + (np.ravel_multi_index(tuple(prefix), (v,) * len(prefix)) * v if prefix else 0)
    out[start:start + v] += weight * final


def chain_pattern_law(p_tables, q_tables, verifier: str) -> np.ndarray:
    """Exact law of the emitted pattern (n accepted drafts, then one token) in the `pattern_offsets` layout."""
    p_tables, q_tables = check_tables(p_tables, q_tables)
    k, v = len(q_tables), p_tables[0].shape[-1]
    offsets = pattern_offsets(v, k)
    out = np.zeros(offsets[-1])
    for x, prob in draft_sequences(q_tables, k):
        pi, final = stop_law(verifier, along(p_tables, x, k + 1), along(q_tables, x, k), x)
        for n in range(k + 1):
            add_pattern(out, offsets, x[:n], final[n], prob * pi[n])
    return out


def chain_acceptance(p_tables, q_tables, verifier: str = "token") -> float:
    """Exact E[number of accepted drafts] (bonus token not counted) of a chain verifier, float64.

    p_tables[i] `[V]*i + [V]` (i = 0..K), q_tables[i] (i = 0..K-1); verifier in CHAIN_RULE_NAMES: CHAIN_VERIFIERS
    ("traversal" on a chain is block verification), LOSSY_CHAIN_VERIFIERS or CHAIN_VARIANTS. Cost O(V^K · K V): small V and K only. ValueError on bad input.
    """
    check_chain_rule(verifier)
    p_tables, q_tables = check_tables(p_tables, q_tables)
    k = len(q_tables)
    total = 0.0
    for x, prob in draft_sequences(q_tables, k):
        pi, _ = stop_law(verifier, along(p_tables, x, k + 1), along(q_tables, x, k), x)
        total += prob * float(np.arange(k + 1) @ pi)
    return total


def kl_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """KL(a ‖ b) in nats between two laws of the same shape (0 log 0 = 0; inf where a puts mass b does not)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    on = a > 0
    if np.any(b[on] <= 0):
        return float("inf")
    return float(np.sum(a[on] * np.log(a[on] / b[on])))


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """TV distance between two laws of the same shape: ½ Σ |a − b|."""
    return 0.5 * float(np.abs(np.asarray(a) - np.asarray(b)).sum())
