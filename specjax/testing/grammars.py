"""Tiny grammars over the tiny pair's 16-token vocabulary, and the exact laws of constrained decoding by
enumeration of every valid prefix (numpy float64).

The vocabulary splits strings more than one way ("()" is one token or two), so a language is spelt by several
token sequences, as with a real tokenizer. Outcomes are token tuples: up to and including EOS, or `budget` tokens
when the row ran out.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from specjax.constrain.automaton import DEAD, DONE, TokenAutomaton, live_states
from specjax.constrain.compile import compile_regex, regex_from_json_schema
from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig, warp_logits

TINY_EOS = 0
TINY_PIECES = ("<eos>", "(", ")", "()", "[", "]", "[]", "{", "}", '"', "a", "b", ":", "1", "2", ",")
TINY_VOCABULARY = (None,) + TINY_PIECES[1:]              # EOS has no bytes

# Dyck words over two bracket pairs, nesting depth at most 2 (a regular language)
_INNER = r"(\(\)|\[\])"
DYCK_REGEX = rf"(\({_INNER}*\)|\[{_INNER}*\])+"
JSON_SCHEMA = '{"type": "object", "properties": {"a": {"enum": [1, 2]}}, "required": ["a"]}'
AB_REGEX = r"a(b|ab)*:(1|2)"
TINY_GRAMMARS = {"dyck": DYCK_REGEX, "json": JSON_SCHEMA, "regex": AB_REGEX}


def tiny_automaton(name: str) -> TokenAutomaton:
    """The masked-mode automaton of TINY_GRAMMARS[name] over the tiny vocabulary (compiled by outlines-core)."""
    grammar = TINY_GRAMMARS[name]
    regex = regex_from_json_schema(grammar) if name == "json" else grammar
    return compile_regex(regex, TINY_VOCABULARY, TINY_EOS, use_cache=False)


def model_law(target: Handle, prompt: list[int], sampling: SamplingConfig) -> Callable:
    """next_law(prefixes) -> `[n, V]` float64: the target's warped, unconstrained law after prompt + each prefix.
    Rows and width are padded to powers of two, so an enumeration compiles a handful of programs, not one per
    frontier."""
    def next_law(prefixes):
        rows = max(16, 1 << (len(prefixes) - 1).bit_length())
        width = max(8, 1 << (len(prompt) + max(len(p) for p in prefixes) - 1).bit_length())
        seqs = np.zeros((rows, width), np.int32)
        last = np.zeros(rows, np.int32)
        for i, p in enumerate(prefixes):
            seqs[i, :len(prompt) + len(p)] = list(prompt) + list(p)
            last[i] = len(prompt) + len(p) - 1
        probs = np.asarray(_next_laws(target, jnp.asarray(seqs), jnp.asarray(last), sampling), np.float64)
        probs = probs[:len(prefixes)]
        return probs / probs.sum(axis=1, keepdims=True)
    return next_law


@partial(jax.jit, static_argnames="sampling")
def _next_laws(target: Handle, seqs: jax.Array, last: jax.Array, sampling: SamplingConfig) -> jax.Array:
    logits = target.score(seqs).logits
    return warp_logits(logits[jnp.arange(seqs.shape[0]), last], sampling)


def constrained_law(automaton: TokenAutomaton, law: np.ndarray, state: int, remaining: int) -> np.ndarray:
    """The law `[V]` a constrained loop draws from in `state` with `remaining` tokens left (this one included):
    `law` (the model's warped law) times h(next state, remaining - 1) on allowed tokens, renormalised (float64)."""
    dense = automaton.transitions()
    h = np.exp(np.asarray(automaton.log_h, np.float64))
    following = dense[state]
    weight = np.where(following != DEAD, h[following, min(max(remaining - 1, 0), h.shape[1] - 1)], 0.0)
    if not weight.any():
        return law
    out = law * weight
    return out / out.sum()


def emitted_law(automaton: TokenAutomaton, next_law: Callable, budget: int) -> dict[tuple[int, ...], float]:
    """The exact law of the outcomes of constrained decoding for `budget` tokens: every token drawn from
    `constrained_law` (masked, or weighted by the automaton's h). next_law as in `model_law`."""
    return _enumerate(automaton, next_law, budget, lambda law, state, left: constrained_law(automaton, law, state,
                                                                                               left), keep_cut=True)


def conditional_law(automaton: TokenAutomaton, next_law: Callable, budget: int) -> dict[tuple[int, ...], float]:
    """μ*: the model's law conditioned on ending with a string of the language within `budget` tokens (EOS
    included), by enumerating every valid prefix."""
    dense = automaton.transitions()
    live = live_states(dense)
    out = _enumerate(automaton, next_law, budget, lambda law, state, left: law * live[dense[state]],
                     keep_cut=False)
    total = sum(out.values())
    return {seq: m / total for seq, m in out.items()}


def _enumerate(automaton: TokenAutomaton, next_law: Callable, budget: int, weights: Callable,
               keep_cut: bool) -> dict[tuple[int, ...], float]:
    """Every token sequence of positive mass, grown prefix by prefix: `weights(law, state, tokens left) -> [V]`
    gives each next token's mass factor; a sequence ends at DONE (EOS in an accepting state), or at the budget,
    where it is kept only if `keep_cut`."""
    dense = automaton.transitions()
    out: dict[tuple[int, ...], float] = {}
    frontier = [((), automaton.initial, 1.0)]
    for depth in range(budget):
        if not frontier:
            break
        grown = []
        for (prefix, state, mass), law in zip(frontier, next_law([prefix for prefix, _, _ in frontier])):
            w = weights(law, state, budget - depth)
            for y in np.flatnonzero(w > 0):
                seq, nxt = prefix + (int(y),), int(dense[state, y])
                if nxt == DONE or depth + 1 == budget:
                    if nxt == DONE or keep_cut:
                        out[seq] = out.get(seq, 0.0) + mass * w[y]
                else:
                    grown.append((seq, nxt, mass * w[y]))
        frontier = grown
    return out


def total_variation(a: dict, b: dict) -> float:
    """TV distance of two laws over outcomes (dicts outcome -> probability)."""
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def outcomes(tokens: np.ndarray, lengths: np.ndarray) -> list[tuple[int, ...]]:
    """The outcome tuple of every row of a `GenerateResult` (tokens `[n, N]`, lengths `[n]`)."""
    return [tuple(int(t) for t in row[:n]) for row, n in zip(np.asarray(tokens), np.asarray(lengths))]
