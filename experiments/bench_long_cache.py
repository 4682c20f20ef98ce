"""Benchmark: what one decode step costs as the preallocated cache grows, with attention chunked up to the filled
part (`specjax.model.attention.attend_by_chunks`, used from `CHUNKED_FROM` slots) against attention over every slot
(the path before it), measured in one run.

`generate` sizes the cache by the `max_new_tokens` bucket, so a long generation preallocates thousands of slots
from its first step. Each job is one target forward over one token at position `position` (the cache filled up to
there), `inner` calls per jitted loop, timed in interleaved rounds (`specjax.bench.timing.CallTimer`); every
capacity is measured with both attentions, and each is reported as a ratio to the step in the shortest cache.

    python experiments/bench_long_cache.py --out results/bench_long_cache
    python experiments/bench_long_cache.py --target random:byte-small --capacities 320 2048 --rounds 2   # quick

Writes `<out>.json` (config, provenance, per-job seconds of every round) and prints the table.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import specjax.model.attention as attention
from specjax.apps.models import load_target
from specjax.bench.experiment import parse_config, provenance
from specjax.bench.timing import CallTimer
from specjax.model.block import Block


@dataclass(frozen=True)
class LongCacheConfig:
    target: str = "smollm2"
    """A target name (`specjax generate --target` forms)."""
    position: int = 256
    """Slots already filled when the timed step runs."""
    capacities: tuple[int, ...] = (320, 2048, 8192)
    """Cache slots per row; the first is the baseline (below CHUNKED_FROM: attention over every slot)."""
    inner: int = 8
    """Forward calls per timed loop."""
    rounds: int = 7
    seed: int = 0

    def __post_init__(self):
        if not self.capacities or min(self.capacities) <= self.position or self.rounds < 1 or self.inner < 1:
            raise ValueError("capacities must exceed position; rounds and inner must be positive")


CONFIG = LongCacheConfig


def _step_loop(target, cache, token, position, inner):
    """`inner` one-token forwards at `position` (each reading the last one's output, so none is hoisted)."""
    def body(_, carry):
        cache, token = carry
        out = target.forward(cache, Block.chain(token, position))
        return out.cache, jnp.argmax(out.logits[:, -1:], axis=-1).astype(jnp.int32)
    return jax.lax.fori_loop(0, inner, body, (cache, token))[1]


def jobs(target, cfg: LongCacheConfig) -> dict[str, tuple]:
    """{label: (jitted loop, args)} of every (capacity, attention); each loop is traced under its own attention
    choice (`CHUNKED_FROM` is read when a forward is traced)."""
    token, position = jnp.zeros((1, 1), jnp.int32), jnp.full((1,), cfg.position, jnp.int32)
    out = {}
    for capacity in cfg.capacities:
        # the first `position` slots filled once by a prefill of random ids
        ids = jnp.asarray(np.random.default_rng(cfg.seed).integers(0, target.config.vocab_size, (1, cfg.position)))
        cache = target.score(ids.astype(jnp.int32), capacity=capacity).cache
        for kind, threshold in (("chunked", attention.CHUNKED_FROM), ("full", 10 ** 9)):
            if kind == "chunked" and capacity < attention.CHUNKED_FROM:
                continue                                    # both choices are the same program here
            loop = jax.jit(lambda t, c, x, p, inner: _step_loop(t, c, x, p, inner), static_argnames="inner")
            saved, attention.CHUNKED_FROM = attention.CHUNKED_FROM, threshold
            try:
                jax.block_until_ready(loop(target, cache, token, position, inner=cfg.inner))   # traced here
            finally:
                attention.CHUNKED_FROM = saved
            out[f"S={capacity} {kind}"] = (loop, (target, cache, token, position))
    return out


def run(cfg: LongCacheConfig, out: Path) -> dict:
    target = load_target(cfg.target, seed=cfg.seed).handle
    labelled = jobs(target, cfg)
    timer = CallTimer(list(labelled.values()), cfg.inner)
    for i in range(cfg.rounds):
        timer.round()
        print(f"round {i + 1}/{cfg.rounds}", flush=True)
    seconds = {label: samples for label, samples in zip(labelled, timer.samples)}
    base = float(np.median(seconds[next(iter(labelled))]))
    rows = [dict(job=label, ms=1e3 * float(np.median(s)), ratio=float(np.median(s)) / base)
            for label, s in seconds.items()]
    result = dict(config=asdict(cfg), provenance=provenance(), rows=rows, seconds=seconds)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    print(f"{'job':<18} {'ms/step':>8} {'x shortest':>10}")
    for r in rows:
        print(f"{r['job']:<18} {r['ms']:8.2f} {r['ratio']:10.2f}")
    return result


def main(argv=None) -> int:
    cfg, out = parse_config(LongCacheConfig, argv, __doc__, default_out="results/bench_long_cache")
    run(cfg, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
