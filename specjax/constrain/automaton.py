"""Token automata: a regular language over a model's vocabulary as arrays the jitted loop can index.

A `TokenAutomaton` says, for every automaton state and token, which state the token leads to. Tokens whose columns
agree in every state share a *class* (most tokens of a 49k vocabulary are never allowed by a JSON schema, or allowed
in the same states), so the table is `[S, C]` with C classes instead of `[S, V]`.

Two states are reserved: DEAD (0), where no token is allowed (a disallowed token leads there; a row never reaches it
on an emitted path), and DONE (1), reached by the end-of-sequence token from an accepting state, where only EOS is
allowed. The language's own states start at 2.

`log_h [S, R]` is the Doob transform's h: the log of the estimated probability that a row in state s with r tokens
still to generate ends with a valid string (constrain/THEORY.md). Masked decoding is h = 1 on live states (those from
which a valid end is reachable) and 0 elsewhere (one column, R = 1, no budget); faithful decoding weights every allowed token y by h(δ(s, y), r - 1), where R - 1 is the
run's max_new_tokens.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

DEAD, DONE = 0, 1
FIRST_STATE = 2


@struct.dataclass
class TokenAutomaton:
    """token_class `[V]` int32; next_state `[S, C]` int32 (the state token class c leads to from state s, DEAD if the
    token is not allowed); log_h `[S, R]` float32 (R = 1: no budget); initial (static): the state before the first
    generated token; eos_id (static); temperature (static): the sampling temperature log_h was computed for (faithful
    logits are `logits + temperature * log h`, so the warped law is `p_T · h`); mode (static): "masked" or the
    estimator that made log_h."""

    token_class: jax.Array
    next_state: jax.Array
    log_h: jax.Array
    initial: int = struct.field(pytree_node=False, default=FIRST_STATE)
    eos_id: int = struct.field(pytree_node=False, default=0)
    temperature: float = struct.field(pytree_node=False, default=1.0)
    mode: str = struct.field(pytree_node=False, default="masked")

    @property
    def vocab_size(self) -> int:
        return self.token_class.shape[0]

    @property
    def num_states(self) -> int:
        return self.next_state.shape[0]

    @property
    def budget(self) -> int | None:
        """The max_new_tokens log_h was computed for, or None (h does not depend on the tokens left)."""
        return None if self.log_h.shape[1] == 1 else self.log_h.shape[1] - 1

    def transitions(self) -> np.ndarray:
        """The dense table `[S, V]` (numpy; for tests and exact laws on small vocabularies)."""
        return np.asarray(self.next_state)[:, np.asarray(self.token_class)]


def from_transitions(transitions: Mapping[int, Mapping[int, int]], initial: int, finals, vocab_size: int,
                     eos_id: int) -> TokenAutomaton:
    """The automaton of a transition map `{state: {token: next_state}}` over any hashable state names (an
    outlines-core `Index.get_transitions()`, or a hand-written one): states renumbered from FIRST_STATE, EOS allowed
    exactly in `finals` (leading to DONE), masked mode. ValueError for a token outside the vocabulary or an EOS
    transition written by hand that disagrees with `finals`."""
    finals = set(finals)
    # the initial state first: every automaton starts in FIRST_STATE, so grammars padded to one shape
    # (`pad_automaton`) share one compiled loop
    others = set(transitions) | finals | {t for m in transitions.values() for t in m.values()}
    names = [initial] + sorted(others - {initial}, key=repr)
    index = {name: FIRST_STATE + i for i, name in enumerate(names)}
    dense = np.zeros((FIRST_STATE + len(names), vocab_size), np.int32)         # DEAD everywhere
    dense[DONE, eos_id] = DONE
    for state, moves in transitions.items():
        for token, target in moves.items():
            if not 0 <= token < vocab_size:
                raise ValueError(f"token {token} of the automaton lies outside the vocabulary [0, {vocab_size})")
            if token == eos_id:
                if state not in finals:
                    raise ValueError(f"EOS ({eos_id}) leaves non-accepting state {state!r}")
                continue
            dense[index[state], token] = index[target]
    for state in finals:
        dense[index[state], eos_id] = DONE
    return from_dense(dense, index[initial], eos_id)


def from_dense(dense: np.ndarray, initial: int, eos_id: int, log_h: np.ndarray | None = None,
               temperature: float = 1.0, mode: str = "masked") -> TokenAutomaton:
    """The automaton of a dense table `[S, V]` (rows DEAD and DONE included), tokens grouped into classes of equal
    columns."""
    columns, token_class = np.unique(dense, axis=1, return_inverse=True)
    return from_classes(columns, token_class.reshape(-1), initial, eos_id, log_h, temperature, mode)


def from_classes(columns: np.ndarray, token_class: np.ndarray, initial: int, eos_id: int,
                 log_h: np.ndarray | None = None, temperature: float = 1.0, mode: str = "masked") -> TokenAutomaton:
    """The automaton of a class table `columns [S, C]` and `token_class [V]`; log_h None: masked mode (h = 1 where
    a valid end is still reachable, 0 elsewhere)."""
    if log_h is None:
        log_h = np.where(live_states(columns), 0.0, -np.inf)[:, None]
    return TokenAutomaton(jnp.asarray(token_class, jnp.int32), jnp.asarray(columns, jnp.int32),
                          jnp.asarray(log_h, jnp.float32), int(initial), int(eos_id), float(temperature), mode)


def pad_automaton(automaton: TokenAutomaton, num_states: int, num_classes: int) -> TokenAutomaton:
    """The same automaton with `num_states` states and `num_classes` token classes (unreachable DEAD states and
    unused classes added): automata of one shape (and one initial state, EOS, temperature and mode) share one
    compiled decode loop, so a new grammar need not recompile it. ValueError if it is already larger."""
    s, c = automaton.next_state.shape
    if num_states < s or num_classes < c:
        raise ValueError(f"cannot pad an automaton of {s} states and {c} classes to {num_states} and {num_classes}")
    table = np.full((num_states, num_classes), DEAD, np.int32)
    table[:s, :c] = np.asarray(automaton.next_state)
    log_h = np.full((num_states, automaton.log_h.shape[1]), -np.inf, np.float32)
    log_h[:s] = np.asarray(automaton.log_h)
    return automaton.replace(next_state=jnp.asarray(table), log_h=jnp.asarray(log_h))


def live_states(table: np.ndarray) -> np.ndarray:
    """`[S]` bool: the states of a transition table `[S, C]` (or `[S, V]`) from which DONE can be reached."""
    table = np.asarray(table)
    live = np.zeros(table.shape[0], bool)
    live[DONE] = True
    while True:
        grown = live | np.any(live[table] & (table != DEAD), axis=1)
        grown[DEAD] = False
        if (grown == live).all():
            return live
        live = grown


def next_states(automaton: TokenAutomaton, states: jax.Array) -> jax.Array:
    """`[..., V]` int32: the state every token leads to from `states [...]`."""
    return automaton.next_state[states][..., automaton.token_class]


def advance(automaton: TokenAutomaton, states: jax.Array, tokens: jax.Array) -> jax.Array:
    """The states `[...]` after `tokens [...]` from `states [...]` (DEAD for a disallowed token)."""
    return automaton.next_state[states, automaton.token_class[tokens]]


def constrain_logits(automaton: TokenAutomaton, logits: jax.Array, states: jax.Array,
                     remaining: jax.Array) -> jax.Array:
    """Logits `[..., V]` of the law a row in `states [...]` with `remaining [...]` tokens left (this one included)
    draws from: disallowed tokens (and, faithfully, tokens whose h is 0) at -inf, the others shifted by
    `temperature * log h(next state, remaining - 1)`, so warping at that temperature gives the masked law
    (h = 1) or its Doob transform. A row with nothing allowed (a DEAD state: padding, or a rejected draft's
    descendants) keeps its logits, so no law is ever NaN."""
    following = next_states(automaton, states)                                  # [..., V]
    column = jnp.clip(remaining - 1, 0, automaton.log_h.shape[1] - 1)[..., None]
    log_h = automaton.log_h[following, column]                                  # [..., V]
    allowed = (following != DEAD) & (log_h > -jnp.inf)
    shift = jnp.where(allowed, automaton.temperature * log_h if automaton.temperature > 0 else 0.0, 0.0)
    masked = jnp.where(allowed, logits + shift, -jnp.inf)
    return jnp.where(jnp.any(allowed, axis=-1, keepdims=True), masked, logits)
