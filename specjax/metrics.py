"""Acceptance statistics, defined once for the whole project.

τ (acceptance length) = tokens emitted per target call = mean over decode rounds of (accepted drafts + 1). The
prefill call, which emits the first token, is not a decode round. Plain autoregressive decoding has τ = 1.

Per-position acceptance (vLLM's convention): entry i = the fraction of rounds whose draft i + 1 was accepted (for a
tree, whose accepted path reached depth i + 1), so τ = 1 + Σ_i entry i, and entry i / entry i - 1 is the acceptance
rate of position i + 1 given that position i was accepted.
"""
from __future__ import annotations

import numpy as np


def acceptance_length(accepted: np.ndarray) -> float:
    """τ from a per-round log `accepted[..., R]` where rounds that did not run hold -1."""
    accepted = np.asarray(accepted)
    ran = accepted >= 0
    rounds = ran.sum()
    return float(((accepted + 1) * ran).sum() / rounds) if rounds else float("nan")


def acceptance_per_position(accepted: np.ndarray, positions: int | None = None) -> list[float]:
    """`[positions]` per-position acceptance (module docstring) from a per-round log `accepted[..., R]` (-1 where no
    round ran); positions defaults to the longest accepted run seen. Empty without rounds."""
    accepted = np.asarray(accepted)
    ran = accepted >= 0
    rounds = ran.sum()
    if not rounds:
        return []
    positions = int(accepted.max(initial=0)) if positions is None else positions
    return [float(((accepted > i) & ran).sum() / rounds) for i in range(positions)]
