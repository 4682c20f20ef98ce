"""`--method auto`: each request decoded by what the latency model says is fastest on this device, revised as
acceptance is observed.

Requests (prompts) are decoded one after another. Before each, `specjax.costs.choice.choose` picks AR or a chain of K
drafts from the device's cost profile and the current acceptance estimate; after a chain, the estimate is updated
from the rounds it ran, so the next request is chosen on what this drafter actually achieved. Every choice is a
function of what was decoded before, and every method samples the target's law given the text so far, so the
output law is the target's (greedy: AR's tokens) whatever is chosen.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import jax
import numpy as np

from specjax.costs.choice import AcceptanceEstimate, choose
from specjax.costs.profile import CostProfile
from specjax.decode.chain import ChainSpeculator
from specjax.decode.loop import GenerateResult, generate
from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig


@dataclass(frozen=True)
class AutoRun:
    """The requests' results as one `GenerateResult` (rows in request order), each request's choice (its
    predictions and the τ it then observed), and the estimate after the last request."""

    result: GenerateResult
    choices: list[dict]
    estimate: AcceptanceEstimate


def generate_auto(target: Handle, drafter: Handle | None, prompts: Sequence[Sequence[int]], key: jax.Array, *,
                  profile: CostProfile, estimate: AcceptanceEstimate, max_draft: int = 8, margin: float = 0.05,
                  max_new_tokens: int = 32, sampling: SamplingConfig = SamplingConfig(),
                  eos_id: int | None = None) -> AutoRun:
    """Decode each prompt (target ids) by its chosen method (module docstring); request i uses key fold_in(key, i).
    Without a drafter every request is AR. ValueError for no prompts or an empty one."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("auto decoding needs at least one prompt, none of them empty")
    rows, choices = [], []
    for i, prompt in enumerate(prompts):
        choice = choose(profile if drafter is not None else _ar_only(profile), estimate, max_draft, margin)
        method = ChainSpeculator(choice.num_draft)
        res = generate(target, np.asarray([prompt], np.int32), np.asarray([len(prompt)], np.int32),
                       jax.random.fold_in(key, i), method=method, drafter=drafter if choice.num_draft else None,
                       max_new_tokens=max_new_tokens, sampling=sampling, eos_id=eos_id)
        if choice.num_draft:
            estimate = estimate.update(res.accepted, res.drafted)
        choices.append({**choice.to_dict(), "observed_tau": res.acceptance_length,
                        "estimate_after": estimate.to_dict()})
        rows.append(res)
    return AutoRun(_stack(rows, max_new_tokens), choices, estimate)


def _ar_only(profile: CostProfile) -> CostProfile:
    return replace(profile, drafter=None, tree_level=None)


def _stack(rows: list[GenerateResult], max_new_tokens: int) -> GenerateResult:
    """One-row results stacked into one (round logs padded with -1)."""
    rounds = max(np.asarray(r.accepted).shape[1] for r in rows)

    def pad(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        return np.pad(a, ((0, 0), (0, rounds - a.shape[1])), constant_values=-1)

    return GenerateResult(tokens=np.concatenate([np.asarray(r.tokens) for r in rows]),
                          lengths=np.concatenate([np.asarray(r.lengths) for r in rows]),
                          accepted=np.concatenate([pad(r.accepted) for r in rows]),
                          drafted=np.concatenate([pad(r.drafted) for r in rows]),
                          num_rounds=np.concatenate([np.asarray(r.num_rounds) for r in rows]))
