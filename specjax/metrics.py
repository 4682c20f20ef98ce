"""Acceptance statistics, defined once for the whole project.

τ (acceptance length) = tokens emitted per target call = mean over decode rounds of (accepted drafts + 1). The
prefill call, which emits the first token, is not a decode round. Plain autoregressive decoding has τ = 1.
"""
from __future__ import annotations

import numpy as np


def acceptance_length(accepted: np.ndarray) -> float:
    """τ from a per-round log `accepted[..., R]` where rounds that did not run hold -1."""
    accepted = np.asarray(accepted)
    ran = accepted >= 0
    rounds = ran.sum()
    return float(((accepted + 1) * ran).sum() / rounds) if rounds else float("nan")
