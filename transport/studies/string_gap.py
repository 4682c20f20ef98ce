"""Cross-vocabulary rules against the optimum across tokenizations on *real* laws (transport/THEORY.md §5.7): at one
context, the laws of the next m bytes of the target's text and of a drafter's, and the expected bytes a rule accepts
within m, from trees of token paths expanded level by level.

Models are given as `rows(paths) -> [N, V]`: the next-token law after each path of token ids (one batched call per
level: a real model scores a whole level as one tree, `specjax.bench.path_laws`; the tiny suite's tables answer the
same call, which is how these sums are checked against `transport.exact.strings`). Vocabularies are `Spelling`s:
each id's bytes as a latin-1 string (one character per byte), so byte strings of two tokenizers compare directly.

A real vocabulary cannot be walked whole, so every sum comes with a *slack*:
* paths are expanded while their mass is at least `eps`, at most `max_nodes` per level; a path left unexpanded with
  b of its m bytes known, and mass u, can add at most u·(m − b) to any of the sums below (one byte per level);
* strings of one law are kept where they carry more than `DROPPED` mass; the rest joins the unexpanded mass.
A law keeps its unexpanded mass on its own sentinel character after the known bytes, so the closed form
`prefix_overlap` of two such laws is a lower bound on Σ_j (1 − TV_j) and adding both slacks gives an upper bound.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from transport.optimal.strings import prefix_overlap

Path = tuple[int, ...]
Rows = Callable[[list[Path]], np.ndarray]
"""paths -> `[N, V]` next-token laws after each path (non-negative; rows are renormalised in float64 here)."""

END = "\u0102"                   # a special token (end of text, a turn marker): both laws end their string here
STOP = "\u0103"                  # a rule with nothing left to draft: the drafted string stops (matches nothing)
UNEXPANDED = {"p": "\u0100", "q": "\u0101"}    # each law's own sentinel: unexpanded mass never matches the other law
DROPPED = 1e-12                  # a string of less mass joins the unexpanded mass (its slack is counted)


@dataclass(frozen=True, eq=False)
class Spelling:
    """A vocabulary's bytes, indexed for the horizon m: `strings[t]` (latin-1, None for a special token),
    `lengths [V]` (−1 for a special token), and for k = 1..m the id of each token's first k bytes in `tables[k]`
    (`prefix_ids[k] [V]`, −1 where the token is shorter)."""
    strings: tuple[str | None, ...]
    lengths: np.ndarray
    prefix_ids: tuple[np.ndarray, ...]
    tables: tuple[tuple[str, ...], ...]

    @property
    def horizon(self) -> int:
        return len(self.tables) - 1


def spelling(token_bytes: Sequence[bytes | str | None], m: int) -> Spelling:
    """The `Spelling` of a vocabulary given as each id's bytes (or str: the tiny suite's tokens) for horizon m >= 1.
    An empty spelling counts as special."""
    if m < 1:
        raise ValueError(f"the horizon must be at least 1 byte, got {m}")
    strings = tuple((b.decode("latin-1") if isinstance(b, bytes) else b) or None for b in token_bytes)
    lengths = np.array([-1 if s is None else len(s) for s in strings], np.int64)
    prefix_ids, tables = [np.full(len(strings), -1, np.int64)], [()]
    for k in range(1, m + 1):
        index: dict[str, int] = {}
        ids = np.full(len(strings), -1, np.int64)
        for t, s in enumerate(strings):
            if s is not None and len(s) >= k:
                ids[t] = index.setdefault(s[:k], len(index))
        prefix_ids.append(ids)
        tables.append(tuple(index))
    return Spelling(strings, lengths, tuple(prefix_ids), tuple(tables))


def _normalised(row) -> np.ndarray:
    row = np.asarray(row, np.float64)
    total = row.sum()
    return row / total if total > 0 else row


def _add_binned(law: dict, base: str, weights: np.ndarray, ids: np.ndarray, table: tuple[str, ...], suffix: str,
                sentinel: str) -> float:
    """law[base + table[i] + suffix] += Σ of `weights` whose id is i; bins under DROPPED go to base + sentinel.
    Returns the mass dropped so."""
    if ids.size == 0:
        return 0.0
    bins = np.bincount(ids, weights=weights, minlength=len(table))
    keep = np.flatnonzero(bins > DROPPED)
    for i in keep:
        law[base + table[i] + suffix] += float(bins[i])
    dropped = float(bins.sum() - bins[keep].sum())
    if dropped > 0:
        law[base + sentinel] += dropped
    return dropped


@dataclass(frozen=True)
class StringLaw:
    """The law of the first m bytes of a model's text: `law` {string: mass} (unexpanded mass on the law's sentinel
    after its known bytes; strings shorter than m end in END or STOP), and `slack`: Σ over unexpanded mass u of
    u·(m − bytes known), what it can add to any prefix-overlap sum."""
    law: dict[str, float]
    slack: float
    nodes: int
    """paths expanded (model rows asked for)"""


def string_law(rows: Rows, spell: Spelling, *, side: str = "p", eps: float = 1e-3, max_nodes: int = 128
               ) -> StringLaw:
    """The law of the first m bytes (m = spell.horizon) of the text sampled token by token from `rows`, every
    tokenization summed, paths expanded as in the module docstring. `side` "p" or "q" picks the sentinel."""
    m, sentinel = spell.horizon, UNEXPANDED[side]
    law: dict[str, float] = defaultdict(float)
    slack, nodes = 0.0, 0
    frontier: list[tuple[Path, str, float]] = [((), "", 1.0)]
    while frontier:
        laws = rows([path for path, _, _ in frontier])
        nodes += len(frontier)
        candidates = []
        for (path, s, mass), row in zip(frontier, laws):
            w, r = mass * _normalised(row), m - len(s)
            if w.sum() == 0:                             # nothing to draft: the string stops here
                law[s + STOP] += mass
                continue
            special = spell.lengths < 0
            if w[special].sum() > 0:
                law[s + END] += float(w[special].sum())
            long = spell.lengths >= r                        # reaches the horizon: a leaf, keyed by its first r bytes
            slack += r * _add_binned(law, s, w[long], spell.prefix_ids[r][long], spell.tables[r], "", sentinel)
            short = np.flatnonzero((spell.lengths >= 1) & (spell.lengths < r) & (w > 0))
            big = short[w[short] >= eps]
            candidates += [(float(w[t]), path + (int(t),), s + spell.strings[t]) for t in big]
            small = short[w[short] < eps]
            for ell in range(1, r):
                sel = small[spell.lengths[small] == ell]
                dropped = _add_binned(law, s, w[sel], spell.prefix_ids[ell][sel], spell.tables[ell], sentinel,
                                      sentinel)                 # a dropped bin loses its ell known bytes too
                slack += float(w[sel].sum()) * (r - ell) + dropped * ell
        candidates.sort(key=lambda c: -c[0])
        for mass, _, s in candidates[max_nodes:]:
            law[s + sentinel] += mass
            slack += mass * (m - len(s))
        frontier = [(path, s, mass) for mass, path, s in candidates[:max_nodes]]
    return StringLaw(dict(law), slack, nodes)


@dataclass(frozen=True)
class Bounded:
    """A sum known to lie in [lower, lower + slack]."""
    lower: float
    slack: float

    @property
    def upper(self) -> float:
        return self.lower + self.slack


def optimum(p: StringLaw, q: StringLaw, horizon: int) -> Bounded:
    """max E[LCP within m bytes] over couplings of the two string laws (= Σ_j (1 − TV_j), `prefix_overlap`), bounded
    by their unexpanded mass. The lower bound leaves unexpanded mass unmatched. Mass u left unexpanded after known
    bytes s can add, at each of the m − |s| levels past s, no more than u and no more than the other law's mass on
    strings that start with s (its mass known there, plus its own unexpanded mass at prefixes of s): that is the
    slack, tighter than `p.slack + q.slack` wherever the other law puts little mass after s."""
    sentinels = tuple(UNEXPANDED.values())
    laws = (p.law, q.law)
    under: list[dict[str, float]] = [defaultdict(float), defaultdict(float)]   # mass of strings starting with v
    open_: list[dict[str, float]] = [{}, {}]                                   # unexpanded mass by known bytes
    for law, mass_under, unexpanded in zip(laws, under, open_):
        for key, mass in law.items():
            known = key[:-1] if key.endswith(sentinels) else key
            if known is not key:
                unexpanded[known] = unexpanded.get(known, 0.0) + mass
            for j in range(len(known) + 1):
                mass_under[known[:j]] += mass
    slack = 0.0
    for side in (0, 1):
        other_under, other_open = under[1 - side], open_[1 - side]
        for known, mass in open_[side].items():
            reach = other_under.get(known, 0.0) + sum(other_open.get(known[:j], 0.0) for j in range(len(known)))
            slack += (horizon - len(known)) * min(mass, reach)
    return Bounded(prefix_overlap(p.law, q.law), min(slack, p.slack + q.slack))


def tli_accepted(target_rows: Rows, draft_rows: Rows, spell: Spelling, depth: int, *, eps: float = 1e-3,
                 max_nodes: int = 128) -> Bounded:
    """E[min(accepted bytes, m)] of one round of token-level verification drafting `depth` tokens from
    `draft_rows` (TLI: the drafter's law on the shared tokens, renormalised, in target ids): a drafted path
    t_1..t_i is accepted whole with probability Π_j min(p, q)(t_j) after t_<j, so the sum runs over paths of
    target tokens, each adding its bytes up to the horizon. Paths expanded as in `string_law`."""
    if depth < 1:
        raise ValueError(f"a round drafts at least one token, got depth {depth}")
    m = spell.horizon
    gain_of = np.maximum(spell.lengths, 0)               # a special token accepted adds no bytes (and ends the text)
    lower = slack = 0.0
    frontier: list[tuple[Path, int, float]] = [((), 0, 1.0)]
    for d in range(depth):
        if not frontier:
            break
        paths = [path for path, _, _ in frontier]
        candidates = []
        for (path, b, mass), p, q in zip(frontier, target_rows(paths), draft_rows(paths)):
            both = mass * np.minimum(_normalised(p), _normalised(q))
            r = m - b
            lower += float(both @ np.minimum(gain_of, r))
            if d + 1 == depth:
                continue
            short = np.flatnonzero((spell.lengths >= 1) & (spell.lengths < r) & (both > 0))
            big = short[both[short] >= eps]
            candidates += [(float(both[t]), path + (int(t),), b + int(spell.lengths[t])) for t in big]
            small = short[both[short] < eps]
            slack += float(both[small] @ (r - spell.lengths[small]))
        candidates.sort(key=lambda c: -c[0])
        slack += sum(mass * (m - b) for mass, _, b in candidates[max_nodes:])
        frontier = [(path, b, mass) for mass, path, b in candidates[:max_nodes]]
    return Bounded(lower, slack)


def exact_match_accepted(target_rows: Rows, drafts: Sequence[Path], spell: Spelling) -> np.ndarray:
    """`[R]`: for each draft x (target ids), E[min(accepted bytes, m)] under exact-match verification (the target
    samples y_i and the draft is accepted while y_i = x_i: the first i tokens with probability Π_{j≤i} p(x_j)).
    Averaged over drafts sampled from a rule's draft law (SLEM), it is that rule's expectation."""
    m = spell.horizon
    prefixes = sorted({x[:i] for x in drafts for i in range(len(x))})
    at = dict(zip(prefixes, target_rows(prefixes))) if prefixes else {}
    out = np.zeros(len(drafts))
    for k, x in enumerate(drafts):
        alive, b = 1.0, 0
        for i, t in enumerate(x):
            if b >= m:
                break
            alive *= float(_normalised(at[x[:i]])[t])
            gained = min(m, b + max(int(spell.lengths[t]), 0))
            out[k] += alive * (gained - b)
            b = gained
    return out
