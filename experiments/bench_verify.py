"""Benchmark: the cost of each verification rule per round relative to token-level verification, measured in one
run on this machine's default device (the rules alone: target laws are random inputs, no model call).

* chains of K drafts: block verification / `accept_chain`, and DISD along the chain (drawing the round's
  full-vocabulary races, one per position, included) / `accept_chain`;
* k drafts at one node: Khisti's two-step rule (largest importance weight) / recursive rejection sampling (i.i.d.);
* trees of N nodes: traversal verification / the token-level `walk_tree` on a complete binary i.i.d. tree;
* K i.i.d. chains (a trie of N = K·L nodes): GBV / the token-level `walk_tree` on the same trie.

And, with `--smollm2 N`, τ of each rule in the decode loop on SmolLM2-135M with the shipped EAGLE head at each of
`smollm2_temperatures` on N MT-bench prompts (sampled chains and trees): token vs block vs DISD (chain K=4), token vs
traversal (RSD-C and unmerged SpecInfer, budget `smollm2_budget`), token vs GBV (SpecInfer trie), same prompts and
seeds. (The lossy chain rules, with their distortion: experiments/lossy_tradeoff.py.)

    python experiments/bench_verify.py --batch 1 32 --smollm2 8 --out results/bench_verify
Prints tables of ratios (rule time / token-level time, measured in the same cell; τ of each rule) and writes
`<out>.json` (config, software versions, one record per cell; resumable) and `<out>.csv`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from specjax.bench.decoding import Results
from specjax.bench.experiment import parse_config, progress, write_csv
from specjax.verify.block import accept_block_unchecked
from specjax.verify.chain import accept_chain_unchecked
from specjax.verify.coupled import accept_coupled_chain_unchecked, round_races
from specjax.verify.importance import importance_argmax
from specjax.verify.multi_draft import rrs_iid
from trees.multipath import gbv_walk_unchecked
from trees.traversal import traversal_walk_unchecked
from trees.tree import LAW_IID, DraftTree, children_from_parent
from trees.walk import default_rules, walk_tree


@dataclass(frozen=True)
class BenchConfig:
    vocab: int = 49_152
    """vocabulary size V"""
    batch: tuple[int, ...] = (1, 32)
    """rows per round B"""
    drafts: tuple[int, ...] = (4, 8)
    """K for chains, k for one-node multi-draft rules"""
    nodes: tuple[int, ...] = (16, 64)
    """tree sizes N (complete binary trees; tries of sqrt(N) chains of sqrt(N) tokens)"""
    repeats: int = 5
    """timed calls per rule (the median is reported), after one compiling call"""
    skip_rules: bool = False
    """only the SmolLM2 part"""
    smollm2: int = 0
    """with N > 0, also τ of each rule on N MT-bench prompts of SmolLM2 + EAGLE"""
    smollm2_budget: int = 16
    """tree nodes per round in the SmolLM2 part"""
    smollm2_temperatures: tuple[float, ...] = (1.0,)
    """temperatures of the SmolLM2 part"""
    smollm2_methods: tuple[str, ...] = ()
    """the SmolLM2 cases to run, by method name (chain, rsd-c, specinfer); default: all"""
    max_new_tokens: int = 48
    """tokens per prompt in the SmolLM2 part"""
    seed: int = 0


CONFIG = BenchConfig


def _bench(fn, *args, repeats: int) -> float:
    """Median seconds of fn(*args) over `repeats` runs after one warm-up (compile) run."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _laws(key, shape):
    return jax.nn.softmax(2.0 * jax.random.normal(key, shape), -1)


def _binary_tree(key, b: int, n: int, v: int) -> tuple[DraftTree, jax.Array, int]:
    parent = np.array([-1] + [(i - 1) // 2 for i in range(1, n + 1)], np.int32)
    depth = np.zeros(n + 1, np.int32)
    for i in range(1, n + 1):                        # host-side construction of the static benchmark shape
        depth[i] = depth[parent[i]] + 1
    k1, k2, k3 = jax.random.split(key, 3)
    par = jnp.broadcast_to(jnp.asarray(parent), (b, n + 1))
    valid = jnp.ones((b, n + 1), bool)
    tree = DraftTree(token=jax.random.randint(k1, (b, n + 1), 0, v), parent=par,
                     depth=jnp.broadcast_to(jnp.asarray(depth), (b, n + 1)), valid=valid,
                     children=children_from_parent(par, valid, 2), law=jnp.full((b, n + 1), LAW_IID),
                     probs=_laws(k2, (b, n + 1, v)))
    return tree, _laws(k3, (b, n + 1, v)), int(depth.max())


def _trie(key, b: int, chains: int, depth: int, v: int) -> tuple[DraftTree, jax.Array]:
    """K disjoint chains in the SpecInfer trie layout (slot j of every node on chain j points down chain j)."""
    n1 = 1 + chains * depth
    node = lambda d, j: 1 + d * chains + j
    parent = np.array([-1] + [0 if d == 0 else node(d - 1, j) for d in range(depth) for j in range(chains)], np.int32)
    dep = np.array([0] + [d + 1 for d in range(depth) for _ in range(chains)], np.int32)
    children = np.full((n1, chains), -1, np.int32)
    children[0] = [node(0, j) for j in range(chains)]
    for d in range(depth - 1):
        for j in range(chains):
            children[node(d, j), j] = node(d + 1, j)
    k1, k2, k3 = jax.random.split(key, 3)
    bc = lambda a: jnp.broadcast_to(jnp.asarray(a), (b,) + a.shape)
    tree = DraftTree(token=jax.random.randint(k1, (b, n1), 0, v), parent=bc(parent), depth=bc(dep),
                     valid=jnp.ones((b, n1), bool), children=bc(children), law=jnp.full((b, n1), LAW_IID),
                     probs=_laws(k2, (b, n1, v)))
    return tree, _laws(k3, (b, n1, v))


def rule_cells(cfg: BenchConfig) -> list[tuple[str, str, int, int]]:
    """(key, kind, size, batch) of every rule-vs-token timing."""
    cells = []
    for b in cfg.batch:
        cells += [(f"{kind}/{k}/B={b}", kind, k, b) for k in cfg.drafts
                  for kind in ("chain", "chain-disd", "multi-draft")]
        cells += [(f"{kind}/{n}/B={b}", kind, n, b) for n in cfg.nodes for kind in ("tree", "iid chains")]
    return cells


def rule_row(cfg: BenchConfig, kind: str, size: int, b: int) -> dict:
    """Median seconds of the token-level rule and of the other rule on the same random inputs, and their ratio."""
    key, v, repeats = jax.random.key(cfg.seed), cfg.vocab, cfg.repeats
    if kind in ("chain", "chain-disd", "multi-draft"):
        kx, kq, kp = jax.random.split(jax.random.fold_in(key, 100 * b + size), 3)
        x = jax.random.randint(kx, (b, size), 0, v)
        q, p = _laws(kq, (b, size, v)), _laws(kp, (b, size + 1, v))
        if kind == "chain":
            rule, base = "block", _bench(accept_chain_unchecked, key, x, q, p, repeats=repeats)
            seconds = _bench(accept_block_unchecked, key, x, q, p, repeats=repeats)
        elif kind == "chain-disd":                  # one full-vocabulary race per position (THEORY §3.11)
            # the round's races drawn inside (once a round; the drafter's draws reuse them)
            disd = jax.jit(lambda key, x, q, p: accept_coupled_chain_unchecked(
                round_races(key, jnp.zeros((b,), jnp.int32), size + 1, v), x, q, p))
            rule, base = "disd", _bench(accept_chain_unchecked, key, x, q, p, repeats=repeats)
            seconds = _bench(disd, key, x, q, p, repeats=repeats)
        else:
            one = lambda accept: jax.jit(jax.vmap(accept, in_axes=(None, 0, 0, 0, 0)))
            args = (key, p[:, 0], q[:, 0], x, jnp.ones((b, size), bool))
            rule, base = "khisti", _bench(one(rrs_iid), *args, repeats=repeats)
            seconds = _bench(one(importance_argmax), *args, repeats=repeats)
    else:
        rules = default_rules()
        token_walk = jax.jit(lambda key, tree, p, d: walk_tree(key, tree, p, rules, d, (LAW_IID,)), static_argnums=3)
        if kind == "tree":
            tree, p, depth = _binary_tree(jax.random.fold_in(key, 7 * size + b), b, size, v)
            rule, walk = "traversal", traversal_walk_unchecked
        else:
            depth = int(round(np.sqrt(size)))
            tree, p = _trie(jax.random.fold_in(key, 11 * size + b), b, depth, depth, v)
            rule, walk, size = "gbv", gbv_walk_unchecked, depth * depth
        base = _bench(token_walk, key, tree, p, depth, repeats=repeats)
        seconds = _bench(walk, key, tree, p, depth, repeats=repeats)
    return dict(kind=kind, size=size, batch=b, rule=rule, token_s=base, rule_s=seconds, ratio=seconds / base)


def smollm2_cases(budget: int) -> tuple:
    """(label, method, options, verifiers) of the SmolLM2 part."""
    return (("chain K=4", "chain", dict(num_draft=4), ("token", "block", "disd")),
            (f"RSD-C {budget}", "rsd-c", dict(budget=budget), ("token", "traversal")),
            (f"SpecInfer {budget} (chains)", "specinfer", dict(budget=budget, merge=False), ("token", "traversal")),
            (f"SpecInfer {budget} (trie)", "specinfer", dict(budget=budget), ("token", "gbv")))


def smollm2_cells(cfg: BenchConfig, results: Results) -> None:
    """τ and tokens/s of each (temperature, method, verifier) on SmolLM2 + EAGLE on `cfg.smollm2` MT-bench prompts,
    same prompts and keys per method; every cell not yet in `results`."""
    from specjax.bench.decoding import decode_prompts, summarize
    from specjax.apps.models import load_drafter, load_target
    from specjax.bench.prompts import load_prompts
    from specjax.sampling import SamplingConfig
    from specjax.methods import make_method

    cells = [(t, label, name, options, verifier) for t in cfg.smollm2_temperatures
             for label, name, options, verifiers in smollm2_cases(cfg.smollm2_budget) for verifier in verifiers
             if not cfg.smollm2_methods or name in cfg.smollm2_methods]
    todo = [c for c in cells if not results.done(f"smollm2/{c[0]}/{c[1]}/{c[4]}")]
    if not todo:
        return
    target = load_target("smollm2")
    drafter = load_drafter("eagle", target)
    ids = [target.encode_prompt(q) for q in load_prompts("mt_bench", cfg.smollm2)]
    common = dict(max_new_tokens=cfg.max_new_tokens, eos_id=target.eos_id, seed=cfg.seed, drafter=drafter)
    for t, label, name, options, verifier in progress(todo, len(todo), "SmolLM2 τ per rule"):
        r = summarize(decode_prompts(target.handle, ids, method=make_method(name, **options, verifier=verifier),
                                     sampling=SamplingConfig(temperature=t), **common))
        results.add(f"smollm2/{t}/{label}/{verifier}", dict(temperature=t, method=label, verifier=verifier, **r))


def run(cfg: BenchConfig, out: Path) -> Results:
    """Every rule timing (unless `skip_rules`) and, with `smollm2` > 0, every SmolLM2 τ not yet in `<out>.json`."""
    results = Results(out.with_suffix(".json"), asdict(cfg))
    cells = [] if cfg.skip_rules else rule_cells(cfg)
    for key, kind, size, b in progress(cells, len(cells), "rule timings"):
        if not results.done(key):
            results.add(key, rule_row(cfg, kind, size, b))
    if cfg.smollm2:
        smollm2_cells(cfg, results)
    return results


def main(argv=None) -> int:
    cfg, out = parse_config(BenchConfig, argv, __doc__, default_out="results/bench_verify")
    records = run(cfg, out).records
    taus = [r for key, r in records.items() if key.startswith("smollm2/")]
    rows = [r for key, r in records.items() if not key.startswith("smollm2/")]
    if taus:
        print(f"\n{'SmolLM2 + EAGLE':<24}{'T':>5} {'verifier':<11}{'tau':>6}{'tok/s':>8}")
        for r in taus:
            print(f"{r['method']:<24}{r.get('temperature', 1.0):>5.2f} {r['verifier']:<11}{r['tau']:>6.3f}"
                  f"{r['tokens_per_s']:>8.1f}")
    print(f"\n{'kind':<14} {'size':>4} {'B':>4} {'rule':<10} {'token ms':>9} {'rule ms':>9} {'rule / token':>12}")
    for r in rows:
        print(f"{r['kind']:<14} {r['size']:>4} {r['batch']:>4} {r['rule']:<10} {r['token_s'] * 1e3:9.2f} "
              f"{r['rule_s'] * 1e3:9.2f} {r['ratio']:12.2f}")
    write_csv(out.with_suffix(".csv"), rows + taus)
    print(f"wrote {out}.json and {out}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
