"""What the lossy chain rules cost and buy, exactly (transport/THEORY.md §5.6): on random context-dependent tables,
the TV and KL of each rule's completed emitted law to the target's and its expected accepted drafts against the
token rule's; on stored real laws, the per-token distortion of the rules without look-ahead (`one_step_law`).
Computation and JSON-ready rows only; the figure lives in experiments/lossy_tradeoff.py."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from specjax.verify.lossy_rules import one_step_law, pass_probabilities
from specjax.verify.names import parse_lossy
from transport.studies.law_file import softmax64
from transport.exact.chain import (chain_acceptance, chain_output_law, check_tables, completions, kl_divergence,
                                   total_variation)


def random_tables(rng: np.random.Generator, v: int, count: int, concentration: float) -> list[np.ndarray]:
    """count context-dependent laws: tables[i] `[V]*i + [V]`, each row Dirichlet(concentration)."""
    return [rng.dirichlet(np.full(v, concentration), size=(v,) * i) for i in range(count)]


def tradeoff_row(spec: str, p_tables: Sequence, q_tables: Sequence, token_accepted: float) -> dict:
    """Exact TV and KL(emitted ‖ target) of the completed law, E[accepted drafts] and the τ gain
    (1 + E[acc]) / (1 + E[acc of the token rule]) of chain rule `spec` on one model."""
    p, q = check_tables(p_tables, q_tables)
    law, target = chain_output_law(p, q, spec), completions(p, len(q))[0]
    accepted = chain_acceptance(p, q, spec)
    return {"rule": spec, "tv": total_variation(law, target), "kl": kl_divergence(law, target),
            "accepted": accepted, "tau_gain": (1 + accepted) / (1 + token_accepted)}


def tradeoff_table(specs: Sequence[str], models: int, vocab: int, depth: int, concentrations: Sequence[float],
                   seed: int) -> list[dict]:
    """Per rule and concentration: mean and max TV, mean KL, mean E[accepted] and mean τ gain over `models` random
    models (V = vocab, K = depth drafts), every figure exact."""
    rows = []
    for conc in concentrations:
        rng = np.random.default_rng([seed, int(conc * 1000)])
        cases = [(random_tables(rng, vocab, depth + 1, conc), random_tables(rng, vocab, depth, conc))
                 for _ in range(models)]
        tokens = [chain_acceptance(p, q, "token") for p, q in cases]
        for spec in specs:
            per = [tradeoff_row(spec, p, q, t) for (p, q), t in zip(cases, tokens)]
            rows.append({"rule": spec, "concentration": conc, "models": models,
                         "tv_mean": float(np.mean([r["tv"] for r in per])), "tv_max": max(r["tv"] for r in per),
                         "kl_mean": float(np.mean([r["kl"] for r in per])),
                         "accepted_mean": float(np.mean([r["accepted"] for r in per])),
                         "tau_gain_mean": float(np.mean([r["tau_gain"] for r in per]))})
    return rows


def per_token_distortion(spec: str, target_logits: np.ndarray, drafter_logits: np.ndarray,
                         temperature: float) -> dict:
    """On stored logits `[N, V]` (float64 softmax at `temperature`): the mean and 90th percentile TV between a rule's
    one-step emitted law and p, and its mean one-step pass probability Σ q·a against the token rule's 1 − TV(p, q)."""
    rule = parse_lossy(spec)
    p, q = softmax64(target_logits, temperature), softmax64(drafter_logits, temperature)
    tv = 0.5 * np.abs(one_step_law(rule, p, q) - p).sum(-1)
    passed = (q * pass_probabilities(rule, p, q)).sum(-1)
    return {"rule": spec, "temperature": temperature, "contexts": len(p), "tv_mean": float(tv.mean()),
            "tv_p90": float(np.quantile(tv, 0.9)), "pass_mean": float(passed.mean()),
            "token_pass_mean": float((1 - 0.5 * np.abs(p - q).sum(-1)).mean())}

