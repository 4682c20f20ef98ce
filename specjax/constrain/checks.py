"""The eager checks of a constrained run: an automaton that can end within the budget, for the sampling it was
computed for, with the run's end-of-sequence token."""
from __future__ import annotations

from typing import Any

import numpy as np

from specjax.constrain.automaton import TokenAutomaton, live_states
from specjax.sampling import SamplingConfig


def check_constraint(automaton: Any, sampling: SamplingConfig, max_new_tokens: int, eos_id: int | None,
                     mesh: Any = None) -> None:
    """ValueError, before anything is traced, unless `automaton` can constrain this run: a `TokenAutomaton` whose
    initial state can still end validly (within the budget, for an h computed for one), whose EOS is the run's,
    whose h was computed for this temperature and max_new_tokens, without top-k/top-p under a faithful h (the Doob
    transform of a truncated law is not what warping a transformed one gives), on one device."""
    if not isinstance(automaton, TokenAutomaton):
        raise ValueError(f"constraint must be a specjax.constrain.TokenAutomaton, got {type(automaton).__name__}")
    if eos_id is not None and eos_id != automaton.eos_id:
        raise ValueError(f"eos_id ({eos_id}) differs from the automaton's end-of-sequence token "
                         f"({automaton.eos_id})")
    if mesh is not None:
        raise ValueError("constrained decoding runs on one device (mesh=None)")
    if automaton.mode == "masked":
        if not live_states(np.asarray(automaton.next_state))[automaton.initial]:
            raise ValueError("the grammar is unsatisfiable over this vocabulary: no token sequence spells a string "
                             "of it")
        return
    if automaton.budget is not None and automaton.budget != max_new_tokens:
        raise ValueError(f"the automaton's h was computed for max_new_tokens = {automaton.budget}, the run asks for "
                         f"{max_new_tokens}")
    if sampling.temperature != automaton.temperature:
        raise ValueError(f"the automaton's h was computed at temperature {automaton.temperature}, the run samples "
                         f"at {sampling.temperature}")
    if sampling.top_k or sampling.top_p < 1.0:
        raise ValueError(f"a faithful constraint (mode {automaton.mode!r}) takes no top-k or top-p")
    column = min(max_new_tokens, automaton.log_h.shape[1] - 1)
    if not np.isfinite(float(automaton.log_h[automaton.initial, column])):
        raise ValueError(f"no string of the grammar fits in {max_new_tokens} tokens with positive probability")
