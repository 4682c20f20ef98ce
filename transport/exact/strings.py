"""Speculative decoding across vocabularies, exactly (transport/THEORY.md §5.7): tiny tokenizers, tiny
context-dependent token models, and the exact laws of three cross-vocabulary rules by enumeration (numpy float64).

Axes: target vocabulary `V` (target token ids), drafter vocabulary `W`, drafted target tokens `K`, alphabet `Σ`
(2–3 characters), horizon `m` characters. A *tokenizer* is a tuple of distinct non-empty strings over Σ holding every
single character; `encode` is greedy longest match, the canonical encoding of this suite. A *token model* maps a
history (a tuple of its own token ids) to the next-token law `[V]`.

One round (`Round`) drafts K target tokens after the committed target history h and is verified by the target:
* "tli"  — token-level intersection: the drafter's law restricted to the shared tokens, verified by the token rule;
* "slem" — the drafter's own character stream, segmented into target tokens by greedy longest match, verified by
  exact match (sample y ~ p, accept while y = x);
* "slrs" — the same draft verified by the token rule with its exact conditional law ψ (every drafter path summed).
Negative controls: "slrs_canonical" (ψ from the drafter's greedy path of the drafted string only) and "tli_naive"
(TLI verified with the unrestricted, unrenormalised drafter probabilities). Laws are completed with target samples
to K+1 tokens (transport.exact.chain).
"""
from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from transport.exact.chain import add_completed, along, completions, stop_law
from transport.exact.kernels import residual
from transport.exact.tokenizers import Model, check_tokenizer, encode, pieces, segment, text, token_index

RULES = ("tli", "slem", "slrs")
CONTROLS = ("slrs_canonical", "tli_naive")
AUDITED = ("omnidraft",)          # published rules whose exactness the suite measures (OmniDraft's n-gram cache)
_VERIFIER = {"tli": "token", "tli_naive": "token", "slem": "exact_match", "slrs": "token", "slrs_canonical": "token",
             "omnidraft": "token"}


def _checked(law, size: int, who: str) -> np.ndarray:
    law = np.asarray(law, np.float64)
    if law.shape != (size,) or not np.all(np.isfinite(law)) or np.any(law < 0) or abs(law.sum() - 1.0) > 1e-9:
        raise ValueError(f"the {who} law must be a probability vector [{size}] (finite, >= 0, sum 1 within 1e-9)")
    return law


# ---- one round --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Round:
    """One speculative round: K drafted target tokens after the committed target history, verified by the target.
    Validated eagerly (tokenizers over one alphabet, K >= 1, history ids, both laws at the committed context)."""
    target: Model
    """The target model over the target tokenizer (V tokens)."""
    drafter: Model
    """The drafter model over its own tokenizer (W tokens)."""
    history: tuple[int, ...] = ()
    """Committed target token ids h."""
    depth: int = 3
    """K, the number of drafted target-token positions."""

    def __post_init__(self):
        alphabet = "".join(sorted(set("".join(tuple(self.target.tokenizer) + tuple(self.drafter.tokenizer)))))
        check_tokenizer(self.target.tokenizer, alphabet)
        check_tokenizer(self.drafter.tokenizer, alphabet)
        if self.depth < 1:
            raise ValueError(f"a round drafts K >= 1 target tokens, got K = {self.depth}")
        if any(not 0 <= t < len(self.target.tokenizer) for t in self.history):
            raise ValueError(f"history {self.history} holds ids outside the target vocabulary")
        object.__setattr__(self, "history", tuple(int(t) for t in self.history))
        self.p(self.history)                                   # both laws checked at the committed context
        self.q(self.context)

    @functools.cached_property
    def context(self) -> tuple[int, ...]:
        """The drafter's ids of the committed history."""
        return self.drafter_context(self.history)

    @functools.cached_property
    def shared(self) -> np.ndarray:
        """`[V]` int: the drafter id of each target token's string, −1 where the drafter lacks it."""
        index, _ = token_index(tuple(self.drafter.tokenizer))
        return np.array([index.get(t, -1) for t in self.target.tokenizer])

    def drafter_context(self, target_ids: Sequence[int]) -> tuple[int, ...]:
        """Concatenated `pieces` of target tokens: what the drafter sees of them."""
        return sum((pieces(tuple(self.drafter.tokenizer), self.target.tokenizer[t]) for t in target_ids), ())

    def p(self, history: tuple[int, ...]) -> np.ndarray:
        """The target's next-token law `[V]` (checked)."""
        return _checked(self.target(history), len(self.target.tokenizer), "target")

    def q(self, context: tuple[int, ...]) -> np.ndarray:
        """The drafter's next-token law `[W]` (checked)."""
        return _checked(self.drafter(context), len(self.drafter.tokenizer), "drafter")


def check_rule(rule: str) -> str:
    """`rule` if it is one of RULES or CONTROLS; ValueError otherwise."""
    if rule not in _VERIFIER:
        raise ValueError(f"unknown cross-vocabulary rule {rule!r}; expected one of {RULES + CONTROLS + AUDITED}")
    return rule


def path_law(law: Callable, tokenizer: Sequence[str], context: tuple, key: Callable) -> dict:
    """Σ of path probabilities by key `{key: mass}`: walk every token path of `law` (history -> law) from `context`,
    extending a path until key(its string) is not None."""
    out: dict = defaultdict(float)
    stack = [(tuple(context), "", 1.0)]
    while stack:
        ctx, s, prob = stack.pop()
        for i, qi in enumerate(law(ctx)):
            if qi > 0:
                k = key(s + tokenizer[i])
                if k is None:
                    stack.append((ctx + (i,), s + tokenizer[i], prob * qi))
                else:
                    out[k] += prob * qi
    return dict(out)


def target_string_law(rnd: Round, m: int) -> dict[str, float]:
    """Law of the first m characters of the target's text after h (every target tokenization summed)."""
    return path_law(rnd.p, rnd.target.tokenizer, rnd.history, lambda s: s[:m] if len(s) >= m else None)


def drafter_string_law(rnd: Round, m: int) -> dict[str, float]:
    """Law Q of the first m characters of the drafter's own stream after its context (tokenization-free)."""
    return path_law(rnd.q, rnd.drafter.tokenizer, rnd.context, lambda s: s[:m] if len(s) >= m else None)


def segmentation_law(rnd: Round) -> dict[tuple[int, ...], float]:
    """Law of the draft of SLEM / SLRS: the first K determined greedy target tokens of the drafter's stream."""
    tok, k = tuple(rnd.target.tokenizer), rnd.depth
    return path_law(rnd.q, rnd.drafter.tokenizer, rnd.context,
                    lambda s: x if len(x := segment(tok, s, k)) == k else None)


def conditional_tables(law: dict[tuple[int, ...], float], v: int, depth: int) -> list[np.ndarray]:
    """ψ tables `[V]*(i+1)` (i < depth) of a law over V^depth: ψ_i(t | x_<i); uniform rows at unreachable prefixes."""
    joint = np.zeros((v,) * depth)
    for x, prob in law.items():
        joint[x] += prob
    tables = []
    for i in range(depth):
        marginal = joint.sum(axis=tuple(range(i + 1, depth)))
        total = marginal.sum(-1, keepdims=True)
        tables.append(np.where(total > 0, marginal / np.where(total > 0, total, 1.0), 1.0 / v))
    return tables


def target_tables(rnd: Round) -> list[np.ndarray]:
    """p_tables[i] `[V]*(i+1)` (i = 0..K): the target's law after h and i drafted tokens (transport.exact.chain)."""
    v = len(rnd.target.tokenizer)
    return [np.array([rnd.p(rnd.history + x) for x in itertools.product(range(v), repeat=i)]).reshape((v,) * (i + 1))
            for i in range(rnd.depth + 1)]


def target_law(rnd: Round) -> np.ndarray:
    """The target's joint law `[V]*(K+1)` of the next K+1 tokens."""
    return completions(target_tables(rnd), rnd.depth)[0]


def tli_row(rnd: Round, prefix: tuple[int, ...], naive: bool = False) -> np.ndarray:
    """q_TLI(· | h, prefix) `[V]`: the drafter's law on the shared target tokens, renormalised (zeros if they have no
    mass: the round drafts no more); `naive` keeps the unrenormalised drafter probabilities (negative control)."""
    law = rnd.q(rnd.drafter_context(rnd.history + prefix))
    row = np.where(rnd.shared >= 0, law[np.maximum(rnd.shared, 0)], 0.0)
    return row if naive or row.sum() == 0 else row / row.sum()


def canonical_row(rnd: Round, prefix: tuple[int, ...]) -> np.ndarray:
    """ψ̃(t | prefix) `[V]` ∝ the probability of the drafter's greedy path of text(prefix + t) alone (control)."""
    tok, dtok = rnd.target.tokenizer, tuple(rnd.drafter.tokenizer)
    u = text(tok, prefix)
    row = np.array([_path_probability(rnd, encode(dtok, u + t)) for t in tok])
    return row / row.sum() if row.sum() > 0 else np.full(len(tok), 1.0 / len(tok))


def _path_probability(rnd: Round, ids: tuple[int, ...]) -> float:
    prob, ctx = 1.0, rnd.context
    for w in ids:
        prob *= rnd.q(ctx)[w]
        ctx += (w,)
    return prob


Draft = tuple[tuple[int, ...], float, np.ndarray]   # (x `[k ≤ K]`, probability, verifier's q rows `[k, V]`)


def _tli_drafts(rnd: Round, naive: bool) -> Iterator[Draft]:
    v, stack = len(rnd.target.tokenizer), [((), 1.0, ())]
    while stack:
        x, prob, rows = stack.pop()
        row = tli_row(rnd, x) if len(x) < rnd.depth else None
        if row is None or row.sum() == 0:
            yield x, prob, np.array(rows).reshape(len(x), v)
            continue
        shown = tli_row(rnd, x, naive=True) if naive else row
        for t in np.flatnonzero(row):
            stack.append((x + (int(t),), prob * row[t], rows + (shown,)))


def _segmentation_drafts(rnd: Round, canonical: bool) -> Iterator[Draft]:
    law = segmentation_law(rnd)
    psi = conditional_tables(law, len(rnd.target.tokenizer), rnd.depth)
    for x, prob in law.items():
        rows = np.stack([canonical_row(rnd, x[:i]) for i in range(rnd.depth)]) if canonical else along(psi, x, len(x))
        yield x, prob, rows


def omnidraft_row(rnd: Round, prefix: tuple[int, ...]) -> np.ndarray:
    """q'(t | prefix) `[V]`, OmniDraft's translated draft probability: the product of the drafter's conditionals
    along t's cached n-gram `pieces(t)` after the pieces of the prefix (one path, not renormalised)."""
    dtok = tuple(rnd.drafter.tokenizer)
    context = rnd.drafter_context(rnd.history + prefix)
    row = np.ones(len(rnd.target.tokenizer))
    for t, string in enumerate(rnd.target.tokenizer):
        ctx = context
        for w in pieces(dtok, string):
            row[t] *= rnd.q(ctx)[w]
            ctx += (w,)
    return row


def translate(rnd: Round, drafted: tuple[int, ...]) -> tuple[int, ...]:
    """OmniDraft's translation of K drafter tokens: left to right, the longest run of them that is some target
    token's cached n-gram `pieces(t)` becomes t; the draft ends at the first run that is none (or a cut n-gram)."""
    dtok, cache = tuple(rnd.drafter.tokenizer), {}
    for t, string in enumerate(rnd.target.tokenizer):
        cache[pieces(dtok, string)] = t
    out, i = [], 0
    while i < len(drafted):
        n = next((n for n in range(len(drafted) - i, 0, -1) if drafted[i:i + n] in cache), 0)
        if not n:
            break
        out.append(cache[drafted[i:i + n]])
        i += n
    return tuple(out)


def _omnidraft_drafts(rnd: Round) -> Iterator[Draft]:
    """Every K-token drafter sequence from the drafter's own law, translated; verified with q' rows."""
    v, k = len(rnd.target.tokenizer), rnd.depth
    stack = [(rnd.context, (), 1.0)]
    merged: dict[tuple[int, ...], float] = defaultdict(float)
    while stack:
        ctx, drafted, prob = stack.pop()
        if len(drafted) == k:
            merged[translate(rnd, drafted)] += prob
            continue
        for w, qw in enumerate(rnd.q(ctx)):
            if qw > 0:
                stack.append((ctx + (w,), drafted + (w,), prob * qw))
    for x, prob in merged.items():
        yield x, prob, np.array([omnidraft_row(rnd, x[:i]) for i in range(len(x))]).reshape(len(x), v)


@dataclass(frozen=True)
class RoundLaw:
    """The exact law of one round of a rule."""
    output: np.ndarray
    """`[V]*(K+1)`: the emitted tokens (accepted drafts, the verifier's token), completed with target samples."""
    accepted_law: np.ndarray
    """`[K+1]`: P(n drafts accepted)."""
    char_law: np.ndarray
    """`[K·Lmax+1]`: P(the accepted drafts hold c characters)."""
    drafted: dict[str, float]
    """The law of the drafted string text(x)."""

    @property
    def accepted(self) -> float:
        """E[accepted drafts] per round (the verifier's token not counted)."""
        return float(np.arange(len(self.accepted_law)) @ self.accepted_law)

    @property
    def chars(self) -> float:
        """E[accepted characters] per round."""
        return float(np.arange(len(self.char_law)) @ self.char_law)

    def chars_within(self, m: int) -> float:
        """E[min(accepted characters, m)]: accepted characters on an m-character horizon."""
        return float(np.minimum(np.arange(len(self.char_law)), m) @ self.char_law)


def round_law(rnd: Round, rule: str) -> RoundLaw:
    """Exact law of one round of `rule` (RULES or CONTROLS), enumerating every draft (exponential: tiny cases)."""
    verifier = _VERIFIER[check_rule(rule)]
    drafts = (_tli_drafts(rnd, rule == "tli_naive") if rule.startswith("tli") else _omnidraft_drafts(rnd)
              if rule == "omnidraft" else _segmentation_drafts(rnd, rule == "slrs_canonical"))
    tok, k = rnd.target.tokenizer, rnd.depth
    p_tables = target_tables(rnd)
    comp = completions(p_tables, k)
    out, accepted = np.zeros_like(comp[0]), np.zeros(k + 1)
    chars, drafted = np.zeros(k * token_index(tuple(tok))[1] + 1), defaultdict(float)
    with np.errstate(divide="ignore"):                  # a control's q may miss a draft: p/0 = inf passes it
        for x, prob, rows in drafts:
            pi, final = stop_law(verifier, along(p_tables, x, len(x) + 1), rows, x)
            for n in range(len(x) + 1):
                add_completed(out, comp, x[:n], final[n], prob * pi[n])
                accepted[n] += prob * pi[n]
                chars[len(text(tok, x[:n]))] += prob * pi[n]
            drafted[text(tok, x)] += prob
    return RoundLaw(out, accepted, chars, dict(drafted))


def string_law(output: np.ndarray, tokenizer: Sequence[str], m: int) -> dict[str, float]:
    """Law of the first m characters of the tokens of a law `[V]*n` (m ≤ n: n tokens hold ≥ n characters)."""
    if not 1 <= m <= output.ndim:
        raise ValueError(f"a law over {output.ndim} tokens fixes at most {output.ndim} characters, asked {m}")
    out: dict[str, float] = defaultdict(float)
    for flat in np.flatnonzero(output):
        out[text(tokenizer, np.unravel_index(flat, output.shape))[:m]] += float(output.flat[flat])
    return dict(out)


def string_tv(a: dict[str, float], b: dict[str, float]) -> float:
    """TV distance ½ Σ |a − b| between two laws over strings."""
    return 0.5 * sum(abs(a.get(s, 0.0) - b.get(s, 0.0)) for s in set(a) | set(b))


# ---- Monte Carlo ------------------------------------------------------------------------------------------------

def _draw(rng: np.random.Generator, law: np.ndarray) -> int:
    cdf = np.cumsum(law)
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return i if i < len(law) else int(np.flatnonzero(law)[-1])


def sample_outputs(rnd: Round, rule: str, rng: np.random.Generator, count: int) -> np.ndarray:
    """`[count]` sampled rounds of `rule`, each completed with target samples to K+1 tokens and given as its flat
    index in the `[V]*(K+1)` layout of `round_law(...).output`. The rounds are simulated step by step (stream,
    segmentation, sample-and-compare or accept-reject); only SLRS's ψ comes from `segmentation_law`."""
    if check_rule(rule) in AUDITED:
        raise ValueError(f"{rule} is audited by exact enumeration only (round_law)")
    v, k = len(rnd.target.tokenizer), rnd.depth
    psi = conditional_tables(segmentation_law(rnd), v, k) if rule == "slrs" else None

    @functools.cache
    def shown(x: tuple[int, ...]) -> np.ndarray:
        return along(psi, x, len(x)) if rule == "slrs" else np.stack([canonical_row(rnd, x[:i]) for i in range(len(x))])

    out = np.empty(count, np.int64)
    for j in range(count):
        y = _sample_round(rnd, rule, rng, shown)
        while len(y) < k + 1:
            y += (_draw(rng, rnd.p(rnd.history + y)),)
        out[j] = np.ravel_multi_index(y, (v,) * (k + 1))
    return out


def _sample_round(rnd: Round, rule: str, rng: np.random.Generator, shown: Callable) -> tuple[int, ...]:
    """The emitted tokens of one round (accepted drafts, then the verifier's token); shown(x) `[K, V]`: the rows the
    token rule verifies a segmentation draft x with."""
    x, rows = (), []
    if rule.startswith("tli"):
        while len(x) < rnd.depth and (row := tli_row(rnd, x)).sum() > 0:
            rows.append(tli_row(rnd, x, naive=True) if rule == "tli_naive" else row)
            x += (_draw(rng, row),)
    else:
        ctx, stream, tok = rnd.context, "", tuple(rnd.target.tokenizer)
        while len(x := segment(tok, stream, rnd.depth)) < rnd.depth:
            w = _draw(rng, rnd.q(ctx))
            ctx, stream = ctx + (w,), stream + rnd.drafter.tokenizer[w]
        rows = None if rule == "slem" else shown(x)
    for i, xi in enumerate(x):
        p = rnd.p(rnd.history + x[:i])
        if rule == "slem":
            if (y := _draw(rng, p)) != xi:
                return x[:i] + (y,)
        elif rng.random() * rows[i][xi] >= p[xi]:          # accept iff u · q < p
            return x[:i] + (_draw(rng, residual(p, rows[i])),)
    return x + (_draw(rng, rnd.p(rnd.history + x)),)
