"""Benchmark: the cost of each verification rule per round relative to token-level verification, measured in one
run on this machine's default device (the rules alone: target laws are random inputs, no model call).

* chains of K drafts: block verification / `accept_chain`;
* k drafts at one node: Khisti's two-step rule (largest importance weight) / recursive rejection sampling (i.i.d.);
* trees of N nodes: traversal verification / the token-level `walk_tree` on a complete binary i.i.d. tree;
* K i.i.d. chains (a trie of N = K·L nodes): GBV / the token-level `walk_tree` on the same trie.

And, with `--smollm2 N`, τ of each rule in the decode loop on SmolLM2-135M with the shipped EAGLE head at
temperature 1 on N MT-bench prompts (sampled chains and trees): token vs block (chain K=4), token vs traversal
(RSD-C and unmerged SpecInfer, budget 16), token vs GBV (SpecInfer trie, budget 16), same prompts and seeds.

    python experiments/bench_verify.py --batch 1 32 --smollm2 8 --out results/bench_verify.json
Prints tables of ratios (rule time / token-level time; τ of each rule) and writes JSON.
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

from specjax.verify.block import accept_block_unchecked
from specjax.verify.chain import accept_chain_unchecked
from specjax.verify.importance import importance_argmax
from specjax.verify.multi_draft import rrs_iid
from trees.multipath import gbv_walk_unchecked
from trees.traversal import traversal_walk_unchecked
from trees.tree import LAW_IID, DraftTree, children_from_parent
from trees.verify import default_rules, walk_tree


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
    seed: int = 0


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


def run_bench(cfg: BenchConfig) -> dict:
    key = jax.random.key(cfg.seed)
    v, rows = cfg.vocab, []
    rules = default_rules()
    token_walk = jax.jit(lambda key, tree, p, d: walk_tree(key, tree, p, rules, d, (LAW_IID,)), static_argnums=3)

    def record(kind, size, b, base, rule, name):
        rows.append(dict(kind=kind, size=size, batch=b, rule=name, token_s=base, rule_s=rule, ratio=rule / base))
        print(f"{kind:<14} size {size:3d} B={b:3d}: token {base * 1e3:9.2f} ms  {name} {rule * 1e3:9.2f} ms  "
              f"ratio {rule / base:6.2f}", flush=True)

    for b in cfg.batch:
        for k in cfg.drafts:
            kx, kq, kp = jax.random.split(jax.random.fold_in(key, 100 * b + k), 3)
            x = jax.random.randint(kx, (b, k), 0, v)
            q, p = _laws(kq, (b, k, v)), _laws(kp, (b, k + 1, v))
            base = _bench(accept_chain_unchecked, key, x, q, p, repeats=cfg.repeats)
            record("chain", k, b, base, _bench(accept_block_unchecked, key, x, q, p, repeats=cfg.repeats), "block")
            valid = jnp.ones((b, k), bool)
            one = lambda rule: jax.jit(jax.vmap(rule, in_axes=(None, 0, 0, 0, 0)))
            args = (key, p[:, 0], q[:, 0], x, valid)
            base = _bench(one(rrs_iid), *args, repeats=cfg.repeats)
            record("multi-draft", k, b, base, _bench(one(importance_argmax), *args, repeats=cfg.repeats), "khisti")
        for n in cfg.nodes:
            tree, p, depth = _binary_tree(jax.random.fold_in(key, 7 * n + b), b, n, v)
            base = _bench(token_walk, key, tree, p, depth, repeats=cfg.repeats)
            trav = _bench(traversal_walk_unchecked, key, tree, p, depth, repeats=cfg.repeats)
            record("tree", n, b, base, trav, "traversal")
            side = int(round(np.sqrt(n)))
            trie, p_trie = _trie(jax.random.fold_in(key, 11 * n + b), b, side, side, v)
            base = _bench(token_walk, key, trie, p_trie, side, repeats=cfg.repeats)
            record("iid chains", side * side, b, base, _bench(gbv_walk_unchecked, key, trie, p_trie, side,
                                                              repeats=cfg.repeats), "gbv")
    return dict(config=asdict(cfg), device=str(jax.devices()[0]), rows=rows)


SMOLLM2_CASES = (("chain K=4", "chain", dict(num_draft=4), ("token", "block")),
                 ("RSD-C 16", "rsd-c", dict(budget=16), ("token", "traversal")),
                 ("SpecInfer 16 (chains)", "specinfer", dict(budget=16, merge=False), ("token", "traversal")),
                 ("SpecInfer 16 (trie)", "specinfer", dict(budget=16), ("token", "gbv")))


def smollm2_taus(num_prompts: int, max_new_tokens: int = 48, seed: int = 0) -> list[dict]:
    """τ and tokens/s of each (method, verifier) on SmolLM2 + EAGLE at T = 1, same prompts and keys per method."""
    import trees  # noqa: F401  (registers the tree methods)
    from specjax.apps.bench import decode_prompts, summarize
    from specjax.apps.models import load_drafter, load_target
    from specjax.io.prompts import load_prompts
    from specjax.sampling import SamplingConfig
    from specjax.speculators import make_method

    target = load_target("smollm2")
    drafter = load_drafter("eagle", target)
    ids = [target.encode_prompt(q) for q in load_prompts("mt_bench", num_prompts)]
    common = dict(max_new_tokens=max_new_tokens, sampling=SamplingConfig(temperature=1.0), eos_id=target.eos_id,
                  seed=seed, drafter=drafter)
    rows = []
    for label, name, options, verifiers in SMOLLM2_CASES:
        for verifier in verifiers:
            r = summarize(decode_prompts(target.handle, ids, method=make_method(name, **options, verifier=verifier),
                                         **common))
            rows.append(dict(method=label, verifier=verifier, **r))
            print(f"{label:<24}{verifier:<10} tau {r['tau']:.3f}  {r['tokens_per_s']:.1f} tok/s", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = BenchConfig()
    parser.add_argument("--vocab", type=int, default=d.vocab)
    parser.add_argument("--batch", type=int, nargs="+", default=list(d.batch))
    parser.add_argument("--drafts", type=int, nargs="+", default=list(d.drafts))
    parser.add_argument("--nodes", type=int, nargs="+", default=list(d.nodes))
    parser.add_argument("--repeats", type=int, default=d.repeats)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--smollm2", type=int, default=0, metavar="N", help="also τ per rule on N MT-bench prompts")
    parser.add_argument("--skip-rules", action="store_true", help="only the SmolLM2 part")
    parser.add_argument("--out", type=Path, default=Path("results/bench_verify.json"))
    a = parser.parse_args(argv)
    cfg = BenchConfig(vocab=a.vocab, batch=tuple(a.batch), drafts=tuple(a.drafts), nodes=tuple(a.nodes),
                      repeats=a.repeats, seed=a.seed)
    res = dict(config=asdict(cfg), rows=[]) if a.skip_rules else run_bench(cfg)
    if a.smollm2:
        res["smollm2"] = smollm2_taus(a.smollm2, seed=a.seed)
        print(f"\n{'SmolLM2 + EAGLE, T=1':<24}{'verifier':<11}{'tau':>6}{'tok/s':>8}")
        for r in res["smollm2"]:
            print(f"{r['method']:<24}{r['verifier']:<11}{r['tau']:>6.3f}{r['tokens_per_s']:>8.1f}")
    print(f"\n{'kind':<14} {'size':>4} {'B':>4} {'rule':<10} {'rule / token':>12}")
    for r in res["rows"]:
        print(f"{r['kind']:<14} {r['size']:>4} {r['batch']:>4} {r['rule']:<10} {r['ratio']:12.2f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
