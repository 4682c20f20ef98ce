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


def acceptance_rate(accepted: np.ndarray, drafted: np.ndarray) -> float:
    """Fraction of drafted tokens accepted, over rounds that ran (`accepted >= 0`)."""
    accepted, drafted = np.asarray(accepted), np.asarray(drafted)
    ran = accepted >= 0
    total = (drafted * ran).sum()
    return float((accepted * ran).sum() / total) if total else float("nan")
