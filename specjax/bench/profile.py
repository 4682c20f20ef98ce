"""`specjax profile`: the cost profile of a target/drafter pair on this device (or a roofline of a named
accelerator), written as JSON for the latency model (`specjax.costs.latency`, `specjax.costs.profile`).

Measured, at each context S (cache slots) and batch size B:
- target:     a target forward over T new tokens per row (a chain block);
- drafter:    a chain drafter step over T tokens (forward, warp of the last row, sample);
- tree_level: one tree level over a frontier of T nodes (`trees.pool.draft_level`, the ranking softmax, the
              top-4 children of each node written into the pool), i.e. what a builder pays per depth;
and once, from AR `generate` runs of two lengths in the same compiled bucket, interleaved: the AR round (their
time difference over the rounds between), whence the fixed per-round overhead (AR round - target(1)) and per-run
overhead (the rest of a run beyond its rounds and the target's prefill).
Each cost is a statistic (median, or min: `ProfileConfig.stat`) over `repeats` of a jitted `lax.fori_loop` of
`inner` calls divided by `inner` (so host dispatch is amortised, as inside the decode loop, and the loop carries the
cache so no call is hoisted), the repeats taken in rounds over a curve's points. Costs that fall as T grows (noise,
or a kernel switch) are smoothed to a non-decreasing curve by isotonic regression; every raw sample is kept in
`meta` (`restat` rebuilds the profile under the other statistic).

    specjax profile --target smollm2 --drafter eagle --contexts 256 512 1024 --batches 1 4 --out results/cpu.json
    specjax profile --roofline h200 --out results/profile_h200.json
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from specjax.bench.timing import STATS, call_samples

DEFAULT_TOKENS = tuple(range(1, 17)) + (20, 24, 32, 40, 48, 64, 96, 128)


DEFAULT_LEVEL_TOKENS = tuple(range(1, 17)) + (24, 32, 48, 64)


CHILDREN = 4            # children ranked per tree-level node (EAGLE-2's and the default static tree's top-k)


@dataclass(frozen=True)
class ProfileConfig:
    """What to measure."""

    contexts: tuple[int, ...] = (256, 512, 1024)
    """Cache capacities S to measure at (specjax's forward attends over every slot of its cache)."""
    batches: tuple[int, ...] = (1,)
    """Batch sizes B."""
    tokens: tuple[int, ...] = DEFAULT_TOKENS
    """T grid of the target and drafter curves (a prefill over W tokens needs W on it)."""
    level_tokens: tuple[int, ...] = DEFAULT_LEVEL_TOKENS
    """Frontier sizes of the tree-level curve."""
    temperature: float = 0.0
    """Sampling temperature of the warps measured (0: greedy, the benchmark's)."""
    inner: int = 3
    """Calls per timed loop."""
    repeats: int = 5
    """Timed loops per point (the median is kept)."""
    overhead_prompt: int = 48
    """Prompt length of the AR runs that measure the overheads."""
    overhead_runs: int = 3
    """Repeats of each AR run."""
    stat: str = "median"
    """How a point's repeats become its cost: 'median' or 'min' (`STATS`); every sample is kept."""

    def __post_init__(self):
        from specjax.validation import check_int

        for name in ("contexts", "batches", "tokens", "level_tokens"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must not be empty")
            object.__setattr__(self, name, tuple(check_int(name, v, low=1) for v in values))
        for name in ("inner", "repeats", "overhead_prompt", "overhead_runs"):
            check_int(name, getattr(self, name), low=1)
        if self.stat not in STATS:
            raise ValueError(f"unknown statistic {self.stat!r}; known: {sorted(STATS)}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        # a call writes its T tokens into the cache, a tree level its frontier plus prev and the root
        small = min(self.contexts)
        if max(self.tokens) > small or max(self.level_tokens) + 3 > small:
            raise ValueError(f"the smallest context ({small} slots) cannot hold a call over T = {max(self.tokens)} "
                             f"or a tree level over {max(self.level_tokens)} nodes (+3): profile larger contexts")


def isotonic(values) -> np.ndarray:
    """The non-decreasing sequence closest to `values` in least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []                   # [mean, weight]
    for v in np.asarray(values, np.float64):
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2), (m1, w1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    return np.concatenate([np.full(int(w), m) for m, w in blocks])


def _bump(logits: jax.Array) -> jax.Array:
    """A `[B, 1]` zero that depends on a call's output, so the next call of the loop depends on this one."""
    return (logits[:, :1, 0] > 1e30).astype(jnp.int32)


@partial(jax.jit, static_argnames=("inner",))
def _target_loop(target, cache, tokens, start, inner):
    from specjax.model.block import Block

    def body(_, carry):
        cache, bump = carry
        out = target.forward(cache, Block.chain(tokens + bump, start))
        return out.cache, _bump(out.logits)
    return jax.lax.fori_loop(0, inner, body, (cache, jnp.zeros_like(tokens[:, :1])))[1]


@partial(jax.jit, static_argnames=("inner", "sampling"))
def _drafter_loop(drafter, cache, tokens, start, features, key, inner, sampling):
    from specjax.model.block import Block
    from specjax.sampling import sample_token, warp_logits

    def body(i, carry):
        cache, bump = carry
        out = drafter.forward(cache, Block.chain(tokens + bump, start, features))
        nxt = sample_token(jax.random.fold_in(key, i), warp_logits(out.logits[:, -1], sampling))
        return out.cache, (nxt[:, None] < 0).astype(jnp.int32)
    return jax.lax.fori_loop(0, inner, body, (cache, jnp.zeros_like(tokens[:, :1])))[1]


@partial(jax.jit, static_argnames=("inner", "frontier"))
def _level_loop(drafter, cache, ctx, pool, inner, frontier):
    from trees.pool import draft_level

    b = ctx.pending.shape[0]
    idx = jnp.broadcast_to(jnp.arange(1, frontier + 1, dtype=jnp.int32), (b, frontier))
    parents = jnp.repeat(idx, CHILDREN, axis=1)

    def body(_, carry):
        cache, pool = carry
        out = draft_level(drafter, cache, ctx, pool, idx, first=False)
        pool = pool.drafted(idx, None, out.hidden)
        best, tok = jax.lax.top_k(jax.nn.softmax(out.logits, axis=-1), CHILDREN)
        pool = pool.put(frontier + 1, tok.reshape(b, -1), parents, (best > 0).reshape(b, -1))
        return out.cache, pool
    return jax.lax.fori_loop(0, inner, body, (cache, pool))[1].token


def _level_args(drafter, batch: int, context: int, frontier: int):
    """A decode context and a pool whose nodes 1..frontier are the root's children (the frontier to expand)."""
    from specjax.decode.state import DecodeContext
    from trees.pool import Pool

    d, size = drafter.config.d_model, frontier * (CHILDREN + 1)
    if context < frontier + 3:
        raise ValueError(f"a tree level over {frontier} nodes needs a context of at least {frontier + 3} slots")
    # the drafter writes prev and the frontier (pool slots 1..frontier); children stay in the pool
    position = jnp.full((batch,), min(context // 2, context - frontier - 2), jnp.int32)
    zeros = jnp.zeros((batch,), jnp.int32)
    ctx = DecodeContext(prev=zeros, pending=zeros, position=position, features=jnp.zeros((batch, 2, d)))
    pool = Pool.init(zeros, size, 1, d)
    kids = jnp.broadcast_to(jnp.arange(frontier, dtype=jnp.int32) + 7, (batch, frontier))
    pool = pool.put(1, kids, jnp.zeros((batch, frontier), jnp.int32), jnp.ones((batch, frontier), bool))
    return ctx, pool


def _chain_args(batch: int, context: int, t: int):
    start = jnp.full((batch,), max(0, min(context // 2, context - t)), jnp.int32)
    return jnp.zeros((batch, t), jnp.int32) + 3, start


def curve_jobs(target, drafter, cfg: ProfileConfig, context: int, batch: int,
               parts=("target", "drafter", "tree_level")) -> dict:
    """The timing jobs (see `CallTimer`) of the curves in `parts` (the drafter's only with a drafter) at one
    (context, batch): {name: (T grid, [job per T])}."""
    from specjax.sampling import SamplingConfig

    sampling = SamplingConfig(temperature=cfg.temperature)
    feats = lambda t: (jnp.zeros((batch, t, drafter.config.d_model)) if drafter.runner.reads_features else None)
    jobs = {
        "target": (cfg.tokens, lambda t: (_target_loop, (target, target.init_cache(batch, context),
                                                         *_chain_args(batch, context, t)))),
        "drafter": (cfg.tokens, lambda t: (partial(_drafter_loop, sampling=sampling),
                                           (drafter, drafter.init_cache(batch, context),
                                            *_chain_args(batch, context, t), feats(t), jax.random.key(0)))),
        "tree_level": (cfg.level_tokens, lambda t: (partial(_level_loop, frontier=t),
                                                    (drafter, drafter.init_cache(batch, context),
                                                     *_level_args(drafter, batch, context, t))))}
    return {name: (jobs[name][0], [jobs[name][1](t) for t in jobs[name][0]]) for name in parts
            if name == "target" or drafter is not None}


def measure_curves(target, drafter, cfg: ProfileConfig, context: int, batch: int, log=print,
                   parts=("target", "drafter", "tree_level")) -> dict:
    """Samples of seconds per call of the curves in `parts` (the drafter's only with a drafter) at one (context,
    batch): {name: (tokens, samples `[G][repeats]`)}."""
    stat = STATS[cfg.stat]
    curves = {}
    for name, (grid, jobs) in curve_jobs(target, drafter, cfg, context, batch, parts).items():
        curves[name] = (grid, call_samples(jobs, cfg.inner, cfg.repeats))
        log(f"  S={context} B={batch} {name}: " + ", ".join(f"{t}: {1e3 * stat(x):.2f}" for t, x in
                                                            zip(*curves[name])) + f" ms ({cfg.stat} of {cfg.repeats})")
    return curves


def measure_overheads(target, vocab_size: int, cfg: ProfileConfig, log=print) -> dict:
    """Samples of AR runs of two lengths (one compiled loop) and of the target's T = 1 and prefill calls at that
    loop's capacity, from which `overheads` derives the per-round and per-run overheads."""
    from specjax.bench.timing import timed
    from specjax.decode.batching import bucket_size
    from specjax.decode.loop import generate
    from specjax.sampling import SamplingConfig

    rng = np.random.default_rng(0)
    prompt = rng.integers(0, vocab_size, (1, cfg.overhead_prompt)).astype(np.int32)
    lengths = np.array([cfg.overhead_prompt], np.int32)
    short, long = 65, 128                           # one max_new_tokens bucket: one compiled loop, 63 rounds apart
    kw = dict(sampling=SamplingConfig(temperature=cfg.temperature))
    run = lambda n, r: timed(generate, target, prompt, lengths, jax.random.key(r), max_new_tokens=n, **kw)[1]
    run(short, 0)                                   # compiles
    times = [(run(short, r), run(long, r)) for r in range(cfg.overhead_runs)]     # interleaved against drift
    width = bucket_size(cfg.overhead_prompt)
    capacity = width + bucket_size(long) + 2           # AR's cache (`generate`: margin 1, plus 1)
    one = dataclasses.replace(cfg, contexts=(capacity,), tokens=(1, width), level_tokens=(1,))
    c1, cw = measure_curves(target, None, one, capacity, 1, lambda *_: None, ("target",))["target"][1]
    raw = {"short": short, "long": long, "generate_short_s": [a for a, _ in times],
           "generate_long_s": [b for _, b in times], "target_1_s": c1, "target_prefill_s": cw,
           "prompt_width": width, "capacity": capacity}
    out = overheads(raw, cfg.stat)
    log(f"  AR round {out['ar_round_s'] * 1e3:.1f} ms (target T=1 {out['target_1_s'] * 1e3:.1f} ms): round "
        f"overhead {out['round_overhead_raw_s'] * 1e3:.2f} ms, run overhead {out['run_overhead_raw_s'] * 1e3:.1f} ms")
    return raw


def overheads(raw: dict, stat: str) -> dict:
    """The AR round and the overheads (raw: may be negative from noise) from the samples of `measure_overheads`."""
    f = STATS[stat]
    short, long = raw["short"], raw["long"]
    t_short, t_long = f(raw["generate_short_s"]), f(raw["generate_long_s"])
    c1, cw = f(raw["target_1_s"]), f(raw["target_prefill_s"])
    ar_round = (t_long - t_short) / (long - short)
    return {"ar_round_s": float(ar_round), "target_1_s": float(c1), "target_prefill_s": float(cw),
            "round_overhead_raw_s": float(ar_round - c1),
            "run_overhead_raw_s": float(t_short - (short - 1) * ar_round - cw)}


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform}: {d.device_kind} ({os.cpu_count()} cores visible)" if d.platform == "cpu" else \
        f"{d.platform}: {d.device_kind}"


def measure_profile(target, drafter, cfg: ProfileConfig, labels: dict | None = None, log=print):
    """The measured `DeviceProfile` of the pair (handles) on this device; every sample is kept in its `meta`."""
    load = [os.getloadavg()]
    raw = []
    for batch in cfg.batches:
        for context in cfg.contexts:
            curves = measure_curves(target, drafter, cfg, context, batch, log)
            raw.append({"context": context, "batch": batch,
                        **{k: {"tokens": list(t), "samples": s} for k, (t, s) in curves.items()}})
    over = measure_overheads(target, target.config.vocab_size, cfg, log)
    load.append(os.getloadavg())
    meta = {**(labels or {}), "config": asdict(cfg), "raw": raw, "raw_overheads": over, "load_avg": load,
            "jax": jax.__version__}
    return build_profile(device_name(), meta, cfg.stat)


def fit_curve(tokens, samples, stat: str, name: str):
    """The `CostCurve` of one measured grid: each point's statistic (`STATS`) of its samples `[G][repeats]`, made
    non-decreasing in T by isotonic regression (a dip is noise or a kernel switch, never less work)."""
    from specjax.costs.profile import CostCurve

    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; known: {sorted(STATS)}")
    return CostCurve(tuple(tokens), tuple(isotonic([STATS[stat](s) for s in samples])), name)


def build_profile(device: str, meta: dict, stat: str):
    """The `DeviceProfile` of raw samples (`meta["raw"]`, `meta["raw_overheads"]`) under `stat`: each point's
    statistic, curves made non-decreasing by isotonic regression, overheads clamped at 0."""
    from specjax.costs.profile import DeviceProfile, ProfileEntry

    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; known: {sorted(STATS)}")
    entries = []
    for e in meta["raw"]:
        fit = {k: fit_curve(e[k]["tokens"], e[k]["samples"], stat, k) for k in ("target", "drafter", "tree_level")
               if k in e}
        entries.append(ProfileEntry(e["context"], e["batch"], fit["target"], fit.get("drafter"),
                                    fit.get("tree_level")))
    over = overheads(meta["raw_overheads"], stat)
    return DeviceProfile(device, "measured", tuple(entries), max(over["round_overhead_raw_s"], 0.0),
                         max(over["run_overhead_raw_s"], 0.0), {**meta, "stat": stat, "overheads": over})


def restat(profile, stat: str):
    """The same measured profile under another statistic of its samples."""
    return build_profile(profile.device, dict(profile.meta), stat)


def chain_break_even(target, drafters: dict, num_draft: int, context: int, repeats: int = 5, inner: int = 3
                     ) -> dict:
    """On this device at cache capacity S = `context`, batch 1: the cost ratio c(K+1)/c(1) of a chain's
    verification call, and for each drafter (name -> handle) the τ a chain of K = `num_draft` drafts needs to match
    AR (`specjax.costs.latency.break_even_tau`). The per-round overhead is left out: both methods pay it, so it only
    pulls τ* toward 1, and the figure printed is the conservative one. Each point is the median of `repeats`
    timed loops of `inner` calls. ValueError for K < 1 or S too small, before anything is measured."""
    from specjax.costs.latency import break_even_tau, chain_plan
    from specjax.costs.profile import CostProfile

    plan = chain_plan(num_draft)

    def curve(drafter, part, tokens):
        cfg = ProfileConfig(contexts=(context,), tokens=tokens, level_tokens=(1,), inner=inner, repeats=repeats)
        return fit_curve(*measure_curves(target, drafter, cfg, context, 1, lambda *_: None, (part,))[part],
                         "median", part)
    tcurve = curve(None, "target", (1, plan.verify_tokens))
    out = {"verify_tokens": plan.verify_tokens, "cost_ratio": tcurve.ratio(plan.verify_tokens), "context": context,
           "target_1_s": tcurve(1), "target_verify_s": tcurve(plan.verify_tokens), "draft_s": {},
           "break_even_tau": {}}
    for name, handle in drafters.items():
        cost = CostProfile(tcurve, curve(handle, "drafter", tuple(sorted(set(plan.drafter_steps)))))
        out["draft_s"][name] = sum(cost.drafter(t) for t in plan.drafter_steps)
        out["break_even_tau"][name] = break_even_tau(cost, plan)
    return out


def roofline(target, drafter, accelerator: str, contexts, batches, tokens):
    """The roofline `DeviceProfile` of a target handle and drafter handle (None, an EAGLE-style head or a model)."""
    from specjax.costs.roofline import eagle_shape, model_shape, roofline_profile
    from specjax.runners.eagle import EagleRunner
    from specjax.runners.model import EarlyExitRunner, model_runner

    shape = None
    if drafter is not None:
        runner = drafter.runner
        if isinstance(runner, EagleRunner):
            keep = drafter.params.keep_ids
            shape = eagle_shape(target.config, None if keep is None else int(keep.shape[0]))
        elif model_runner(runner) is not None:
            layers = runner.num_layers if isinstance(runner, EarlyExitRunner) else drafter.config.n_layers
            shape = model_shape(drafter.config.replace(n_layers=layers))
        else:
            raise ValueError(f"no roofline for drafter {runner.name}: it is no model")
    return roofline_profile(target.config, shape, accelerator, contexts=tuple(contexts), batches=tuple(batches),
                            tokens=tuple(tokens))
