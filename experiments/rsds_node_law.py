"""RSD-S on a real model pair: the node law below the root, RRS without replacement (shipped) against the former
point masses, on the same drafted trees (transport/THEORY.md §5.3).

The contexts are cut from the target's own answers (AR at the configured temperature); at each one the decode loop's
own RSD-S round drafts a tree (`TreeSpeculator.propose_and_verify`), and `trees.reward.tree_reward` gives the exact
E[accepted | tree] twice: with the tree's node laws (every node without replacement) and with the nodes below the
root relabelled deterministic (point masses: the former rule). Paired on the same trees, so the difference carries
only the spread of the per-tree differences; the round's sampled acceptance is reported beside (a check of the
reward). τ = 1 + E[accepted] per round.

    python experiments/rsds_node_law.py --prompts 2 --probe-contexts 64 --out results/rsds_node_law
Default: SmolLM2-135M-Instruct with the shipped EAGLE head. Writes `<out>.json` and prints the figures.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tree_ablation import cut_contexts
from specjax.apps.models import load_drafter, load_target
from specjax.bench.decoding import decode_prompts
from specjax.bench.experiment import parse_config, provenance
from specjax.bench.prompts import load_prompts
from specjax.decode.batching import pad_prompts
from specjax.decode.chain import ChainSpeculator
from specjax.decode.loop import needed_capacity, prefill
from specjax.sampling import SamplingConfig
from trees import make_speculator
from trees.reward import tree_reward
from trees.tree import LAW_DET


@dataclass(frozen=True)
class RsdsNodeLawConfig:
    target: str = "smollm2"
    drafter: str = "eagle"
    prompt_set: str = "mt_bench"
    prompts: int = 2
    """prompts whose AR answers give the contexts"""
    max_new_tokens: int = 48
    budget: int = 16
    """RSD-S budget (width max(4, budget // 8), depth budget // width)"""
    temperature: float = 1.0
    probe_contexts: int = 64
    seed: int = 0


CONFIG = RsdsNodeLawConfig

@partial(jax.jit, static_argnames=("spec", "sampling", "capacity"))
def _paired_round(target, drafter, tokens, lengths, pending, key, *, spec, sampling, capacity):
    start = prefill(target, drafter, tokens, lengths, key, sampling, capacity, pending=pending)
    v = spec.propose_and_verify(target=target, drafter=drafter, caches=start.caches, ctx=start.ctx, key=key,
                                sampling=sampling, keep_laws=True)
    tree, depth = v.built.tree, spec.builder.max_depth
    former = tree.replace(law=tree.law.at[:, 1:].set(LAW_DET))       # point masses below the root
    return tree_reward(tree, v.target_probs, depth), tree_reward(former, v.target_probs, depth), v.num_accepted


def run(cfg: RsdsNodeLawConfig, out: Path) -> dict:
    start = time.time()
    target = load_target(cfg.target, cfg.seed)
    drafter = load_drafter(cfg.drafter, target, cfg.seed + 1)
    sampling = SamplingConfig(cfg.temperature)
    prompts = [target.encode_prompt(p) for p in load_prompts(cfg.prompt_set, cfg.prompts)]
    runs = decode_prompts(target.handle, prompts, seed=cfg.seed, method=ChainSpeculator(0),
                          max_new_tokens=cfg.max_new_tokens, sampling=sampling, eos_id=target.eos_id)
    texts, cuts = cut_contexts(prompts, [r.tokens for r in runs], cfg.probe_contexts,
                               np.random.default_rng(cfg.seed))
    tokens, lengths = pad_prompts([t[:c] for t, c in zip(texts, cuts)])
    pending = jnp.asarray([t[c] for t, c in zip(texts, cuts)], jnp.int32)
    spec = make_speculator("rsd-s", budget=cfg.budget)
    new, old, sampled = (np.asarray(x, np.float64) for x in _paired_round(
        target.handle, drafter, jnp.asarray(tokens), jnp.asarray(lengths), pending, jax.random.key(cfg.seed),
        spec=spec, sampling=sampling, capacity=needed_capacity(tokens.shape[1], spec)))
    n = len(new)
    se = lambda x: float(np.std(x, ddof=1) / np.sqrt(n))
    result = {"config": dataclasses.asdict(cfg), "provenance": provenance(),
              "builder": dataclasses.asdict(spec.builder), "contexts": n,
              "tau_wor_every_node": 1 + float(new.mean()), "tau_wor_every_node_se": se(new),
              "tau_point_mass_below_root": 1 + float(old.mean()), "tau_point_mass_below_root_se": se(old),
              "tau_gain": float((new - old).mean()), "tau_gain_se": se(new - old),
              "sampled_tau_wor_every_node": 1 + float(sampled.mean()), "sampled_tau_se": se(sampled),
              "seconds": time.time() - start}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    cfg, out = parse_config(RsdsNodeLawConfig, argv, __doc__, default_out="results/rsds_node_law")
    r = run(cfg, out)
    print(f"RSD-S {r['builder']} at T = {cfg.temperature}, {r['contexts']} contexts, exact E[accepted | tree]:")
    print(f"  RRS w/o replacement at every node: tau {r['tau_wor_every_node']:.3f} ± {r['tau_wor_every_node_se']:.3f}"
          f" (sampled {r['sampled_tau_wor_every_node']:.3f} ± {r['sampled_tau_se']:.3f})")
    print(f"  point masses below the root:       tau {r['tau_point_mass_below_root']:.3f} ± "
          f"{r['tau_point_mass_below_root_se']:.3f}")
    print(f"  paired gain {r['tau_gain']:.3f} ± {r['tau_gain_se']:.3f}; {r['seconds']:.0f}s; wrote {out}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
