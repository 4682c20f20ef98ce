"""Benchmark: the cost of verifying a draft tree of N nodes in one target call, against verifying a chain of N
drafts and against one autoregressive step, on this machine's default device.

Each verification is jitted end to end: the tree = one target forward over N+1 nodes (ancestor mask, depth
positions) + the acceptance walk + committing the path (`gather_path`); the chain = one forward over N+1 tokens +
the chain rule; AR = one forward over 1 token + sampling. Inputs are random: the cost does not depend on them.

    python experiments/bench_tree.py --nodes 8 16 32 64 128 --batch 8 --out results/bench_tree.json
Prints a ratio table (tree / chain, tree / AR) from one run and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from specjax.config import named_config
from specjax.decode import DecodeContext, verify_chain
from specjax.drafters import causal_mask, model_runner
from specjax.model import init_model
from specjax.sampling import SamplingConfig, sample_token, warp_logits
from trees.tree import LAW_WOR, DraftTree, children_from_parent
from trees.verify import commit_path, default_rules, score_tree, walk_tree


@dataclass(frozen=True)
class BenchConfig:
    model: str = "byte-small"
    nodes: tuple[int, ...] = (8, 16, 32, 64, 128)
    batch: int = 8
    context: int = 256
    repeats: int = 10
    branching: int = 2          # the benchmark tree: a complete tree of this branching, cut at N nodes
    seed: int = 0


def _bench(fn, *args, repeats: int) -> float:
    """Median seconds of `fn(*args)` over `repeats` runs after one warm-up (compile) run."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _tree(b: int, n: int, branching: int, vocab: int, key) -> tuple[DraftTree, int]:
    parent = np.array([-1] + [(i - 1) // branching for i in range(1, n + 1)], np.int32)
    depth = np.zeros(n + 1, np.int32)
    for i in range(1, n + 1):                   # host-side construction of the static benchmark shape
        depth[i] = depth[parent[i]] + 1
    k1, k2 = jax.random.split(key)
    par = jnp.broadcast_to(jnp.asarray(parent), (b, n + 1))
    valid = jnp.ones((b, n + 1), bool)
    probs = jax.nn.softmax(jax.random.normal(k2, (b, n + 1, vocab)), -1)
    tree = DraftTree(token=jax.random.randint(k1, (b, n + 1), 0, vocab), parent=par,
                     depth=jnp.broadcast_to(jnp.asarray(depth), (b, n + 1)), valid=valid,
                     children=children_from_parent(par, valid, branching), law=jnp.full((b, n + 1), LAW_WOR),
                     probs=probs)
    return tree, int(depth.max())


def run_bench(cfg: BenchConfig) -> dict:
    model = init_model(named_config(cfg.model), cfg.seed)
    runner, params = model_runner(model)
    vocab, b = model.config.vocab_size, cfg.batch
    sampling = SamplingConfig(temperature=1.0)
    rules = default_rules()
    cap = cfg.context + max(cfg.nodes) + 2
    cache = runner.init_cache(params, b, cap)
    position = jnp.full((b,), cfg.context, jnp.int32)
    key = jax.random.key(cfg.seed)
    rows = []

    @jax.jit
    def ar_step(params, cache, tok, key):
        logits, _, cache = runner.forward(params, cache, tok[:, None], position[:, None], position, causal_mask(b, 1))
        return sample_token(key, warp_logits(logits[:, 0], sampling)), cache

    t_ar = _bench(ar_step, params, cache, jnp.zeros((b,), jnp.int32), key, repeats=cfg.repeats)
    for n in cfg.nodes:
        tree, dmax = _tree(b, n, cfg.branching, vocab, key)

        @jax.jit
        def tree_verify(params, cache, tree, key):
            probs, hidden, cache = score_tree(runner, params, cache, tree, position, sampling, dmax)
            path, acc, toks = walk_tree(key, tree, probs, rules, dmax, (LAW_WOR,))
            return commit_path(cache, position, path, acc), toks

        @jax.jit
        def chain_verify(params, cache, drafts, probs, key):
            ctx = DecodeContext(prev=drafts[:, 0], pending=drafts[:, 0], position=position,
                                features=jnp.zeros((b, 2, model.config.d_model)))
            cache, acc, toks, _ = verify_chain(runner, params, cache, ctx, drafts, probs, key, sampling)
            return cache, toks

        drafts = jax.random.randint(key, (b, n), 0, vocab)
        dprobs = jax.nn.softmax(jax.random.normal(key, (b, n, vocab)), -1)
        t_tree = _bench(tree_verify, params, cache, tree, key, repeats=cfg.repeats)
        t_chain = _bench(chain_verify, params, cache, drafts, dprobs, key, repeats=cfg.repeats)
        rows.append(dict(nodes=n, tree_depth=dmax, tree_s=t_tree, chain_s=t_chain, ar_s=t_ar,
                         tree_over_chain=t_tree / t_chain, tree_over_ar=t_tree / t_ar, chain_over_ar=t_chain / t_ar))
        print(f"N={n:4d} (tree depth {dmax}): tree {t_tree * 1e3:8.2f} ms  chain {t_chain * 1e3:8.2f} ms  "
              f"AR step {t_ar * 1e3:7.2f} ms | tree/chain {t_tree / t_chain:5.2f}  tree/AR {t_tree / t_ar:6.2f}",
              flush=True)
    return dict(config=asdict(cfg), device=str(jax.devices()[0]), model_config=asdict(model.config), rows=rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = BenchConfig()
    p.add_argument("--model", default=d.model)
    p.add_argument("--nodes", type=int, nargs="+", default=list(d.nodes))
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--context", type=int, default=d.context)
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=Path("results/bench_tree.json"))
    a = p.parse_args(argv)
    cfg = BenchConfig(model=a.model, nodes=tuple(a.nodes), batch=a.batch, context=a.context, repeats=a.repeats,
                      seed=a.seed)
    res = run_bench(cfg)
    print("\n  N | tree/chain | tree/AR | chain/AR")
    for r in res["rows"]:
        print(f"{r['nodes']:4d} | {r['tree_over_chain']:10.2f} | {r['tree_over_ar']:7.2f} | {r['chain_over_ar']:8.2f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
