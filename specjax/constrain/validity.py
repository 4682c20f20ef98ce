"""Future validity Φ and the Doob transform: which h a constrained loop weights tokens by (constrain/THEORY.md).

A run that must end with a string of the language within `budget` tokens (EOS included) samples the
grammar-conditional law μ*(x) ∝ p(x)·1[x ∈ L, |x| <= budget] exactly when every step draws
p(y | x) · Φ(x y) / Φ(x), with Φ(x) = P_p[a valid end within the tokens left | x]: the Doob transform of the model
with h = Φ. Masking is h = 1 (the *locally projected* law, what engines sample); the estimators between the two:

- `onestep`: h(s) = π(tokens allowed in s), the mass a surrogate token law π leaves one step ahead;
- `dp`: H[s, r] = the probability that π, run through the automaton from state s, ends validly within r tokens
  (dynamic programming over states and tokens left: exact if the model were π in every context);
- `exact`: Φ itself, for a small model on an enumerable language: the automaton becomes the trie of every valid
  prefix (one state per prefix), whose h is the true probability under the model (`exact_trie`).

The surrogate π `[V]` is a token law the caller picks (the target's mean law over the prompt is the default of the
command line). Each function returns a new `TokenAutomaton`; the decode loop takes any of them.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable

import jax.numpy as jnp
import numpy as np

from specjax.constrain.automaton import DEAD, DONE, TokenAutomaton, from_dense, live_states
from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig, warp_logits

ESTIMATORS = ("masked", "onestep", "dp", "exact")


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(x)


def check_surrogate(surrogate: np.ndarray, vocab: int) -> np.ndarray:
    law = np.asarray(surrogate, np.float64)
    if law.shape != (vocab,) or not np.all(np.isfinite(law)) or law.min() < 0 or abs(law.sum() - 1) > 1e-6:
        raise ValueError(f"the surrogate law must be a probability vector [{vocab}] (finite, >= 0, sum 1)")
    return law


def onestep(automaton: TokenAutomaton, surrogate: np.ndarray, temperature: float = 1.0) -> TokenAutomaton:
    """h(s) = surrogate mass of the tokens that keep a valid end reachable from s (no budget)."""
    dense = automaton.transitions()
    law = check_surrogate(surrogate, dense.shape[1])
    live = live_states(dense)
    h = ((live[dense] & (dense != DEAD)) * law).sum(axis=1)
    h = np.where(live, h, 0.0)
    h[DONE] = 1.0
    return dataclasses.replace(automaton, log_h=_as_log(h[:, None]), temperature=float(temperature), mode="onestep")


def dp(automaton: TokenAutomaton, surrogate: np.ndarray, budget: int, temperature: float = 1.0) -> TokenAutomaton:
    """H[s, r]: the probability that the surrogate law, run through the automaton from s, ends validly (reaches DONE)
    within r tokens; columns r = 0..budget."""
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1 (max_new_tokens), got {budget!r}")
    dense = automaton.transitions()
    law = check_surrogate(surrogate, dense.shape[1])
    h = np.zeros((dense.shape[0], budget + 1))
    h[DONE] = 1.0
    for r in range(1, budget + 1):
        h[:, r] = (h[dense, r - 1] * (dense != DEAD) * law).sum(axis=1)
        h[DONE, r] = 1.0
    return dataclasses.replace(automaton, log_h=_as_log(h), temperature=float(temperature), mode="dp")


def _as_log(h: np.ndarray) -> np.ndarray:
    h = np.asarray(h, np.float64)
    h[DEAD] = 0.0
    return _log(h).astype(np.float32)


def exact_trie(automaton: TokenAutomaton, next_law: Callable[[list[tuple[int, ...]]], np.ndarray], budget: int,
               temperature: float = 1.0) -> TokenAutomaton:
    """The exact Doob transform for a model whose laws can be enumerated: states are the valid prefixes of at most
    budget - 1 tokens (so V^budget contexts at most: tiny vocabularies only), and h of a prefix is the exact
    probability Φ that the model ends it validly within the budget.

    next_law(prefixes) -> `[n, V]` float64: the model's (warped, unconstrained) law after each generated prefix.
    """
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1 (max_new_tokens), got {budget!r}")
    dense = automaton.transitions()
    v, eos = dense.shape[1], automaton.eos_id
    live = live_states(dense)
    levels: list[list[tuple[tuple[int, ...], int]]] = [[((), automaton.initial)]]    # (prefix, grammar state)
    for depth in range(1, budget):
        levels.append([(prefix + (y,), int(dense[s, y])) for prefix, s in levels[-1] for y in range(v)
                       if y != eos and live[dense[s, y]]])
    nodes = list(itertools.chain.from_iterable(levels))
    index = {prefix: 2 + i for i, (prefix, _) in enumerate(nodes)}
    laws = np.asarray(next_law([prefix for prefix, _ in nodes]), np.float64)
    phi = np.zeros(len(nodes) + 2)
    phi[DONE] = 1.0
    table = np.zeros((len(nodes) + 2, v), np.int32)
    table[DONE, eos] = DONE
    for i in reversed(range(len(nodes))):                  # children after parents: deepest first
        prefix, s = nodes[i]
        for y in range(v):
            child = DONE if y == eos and dense[s, y] == DONE else index.get(prefix + (y,), DEAD)
            table[2 + i, y] = child
        phi[2 + i] = float((laws[i] * phi[table[2 + i]] * (table[2 + i] != DEAD)).sum())
    log_h = np.repeat(_as_log(phi)[:, None], budget + 1, axis=1)
    return from_dense(table, index[()], eos, log_h=log_h, temperature=temperature, mode="exact")


def prompt_surrogate(target: Handle, tokens: np.ndarray, lengths: np.ndarray, sampling: SamplingConfig) -> np.ndarray:
    """A surrogate token law `[V]` for `onestep` and `dp`: the target's warped law averaged over every position of
    the prompts (tokens `[B, L]` right-padded, lengths `[B]`), at the run's temperature (greedy: the softmax)."""
    out = target.score(jnp.asarray(tokens, jnp.int32))
    warp = SamplingConfig() if sampling.greedy else SamplingConfig(sampling.temperature)
    probs = np.asarray(warp_logits(out.logits, warp), np.float64)                    # [B, L, V]
    valid = np.arange(tokens.shape[1])[None, :] < np.asarray(lengths)[:, None]
    law = probs[valid].mean(axis=0)
    return law / law.sum()
