"""Tree ablation: τ and tokens/s against tree budget for every tree builder (each with its matching verifier:
point-mass RRS for deterministic EAGLE-2 / static children, RRS without replacement for RSD-C and RSD-S's root,
RRS i.i.d. for SpecInfer) at temperatures 0 and 1, with GTO's reward prediction beside the measured τ.

The prediction: one probe round at `probe_rows` contexts cut from the decoded text; for each drafted tree the exact
E[accepted | tree] (`trees.reward.tree_reward`, = DTR for deterministic trees); predicted τ = 1 + its mean. The
probe's own measured acceptance on the same trees is reported too (same contexts, so it checks the reward), and the
decode run's τ beside them (different contexts: the whole generation).

    python experiments/tree_ablation.py --budgets 8 16 32 64 128 --out results/tree_ablation
Writes `<out>.json` and `<out>.png`. Random-weight models (no trained pair installed): the numbers show the machinery.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from specjax.apps.bench import timed
from specjax.config import named_config
from specjax.decode import generate, prefill
from specjax.model import init_model
from specjax.runners import model_handle
from specjax.sampling import SamplingConfig, warp_logits
from trees import TREE_METHODS, make_speculator
from trees.reward import tree_reward
from trees.verify import default_rules, score_tree, walk_tree


@dataclass(frozen=True)
class AblationConfig:
    """target/draft: named configs; budgets: tree node budgets; methods: tree methods; temperatures."""

    target: str = "tiny"
    draft: str = "tiny-draft"
    budgets: tuple[int, ...] = (8, 16, 32, 64, 128)
    methods: tuple[str, ...] = TREE_METHODS
    temperatures: tuple[float, ...] = (0.0, 1.0)
    batch: int = 32
    prompt_len: int = 8
    max_new_tokens: int = 48
    probe_rows: int = 256
    seed: int = 0


def _probe(spec, target, draft, texts: np.ndarray, sampling: SamplingConfig, key) -> tuple[float, float]:
    """One round at contexts `texts[R, L]` (the last token is pending): (mean E[L | tree], mean measured L)."""
    rows, length = texts.shape
    cap = length + spec.capacity_margin + 2
    builder = spec.builder
    rules = spec.rules if spec.rules is not None else default_rules()

    @jax.jit
    def run(target, draft, texts, key):
        ctx_len = length - 1
        caches, ctx = prefill(target, draft, texts[:, :ctx_len], jnp.full((rows,), ctx_len, jnp.int32), key,
                              sampling, cap)
        ctx = ctx.replace(pending=texts[:, ctx_len])             # the probe's own next token, not a sampled one
        k1, k2 = jax.random.split(key)
        built = builder.build(draft, caches.drafter, ctx, k1, sampling)
        scored = score_tree(target, caches.target, built.tree, ctx.position, builder.max_depth)
        probs = warp_logits(scored.logits, sampling)
        _, n, _ = walk_tree(k2, built.tree, probs, rules, builder.max_depth, builder.laws)
        return tree_reward(built.tree, probs, builder.max_depth), n

    pred, n = run(target, draft, jnp.asarray(texts, jnp.int32), key)
    return float(np.mean(pred)), float(np.mean(n))


def run_ablation(cfg: AblationConfig, json_path: Path | None = None) -> dict:
    """Run every (method, budget, temperature) cell; returns the JSON-able results (also written to `out` after
    every cell to `json_path`, so an interrupted run keeps what it measured)."""
    target = model_handle(init_model(named_config(cfg.target), cfg.seed))
    draft = model_handle(init_model(named_config(cfg.draft), cfg.seed + 1))
    vocab = target.config.vocab_size
    rng = np.random.default_rng(cfg.seed)
    prompts = rng.integers(0, vocab, (cfg.batch, cfg.prompt_len)).astype(np.int32)
    lengths = np.full(cfg.batch, cfg.prompt_len, np.int32)
    cells = []
    total = len(cfg.methods) * len(cfg.budgets) * len(cfg.temperatures)
    for temp in cfg.temperatures:
        sampling = SamplingConfig(temperature=temp)
        for method in cfg.methods:
            for budget in cfg.budgets:
                spec = make_speculator(method, budget=budget)
                key = jax.random.key(cfg.seed)
                run = lambda: generate(target, prompts, lengths, key, method=spec, drafter=draft,
                                       max_new_tokens=cfg.max_new_tokens, sampling=sampling)
                _, compile_s = timed(run)
                out, seconds = timed(run)                       # second run: same shapes, compiled
                texts = np.concatenate([prompts, np.asarray(out.tokens)], axis=1)
                cut = rng.integers(cfg.prompt_len + 1, texts.shape[1] - 1, cfg.probe_rows)
                rows = rng.integers(0, cfg.batch, cfg.probe_rows)
                # contexts of equal length: the last `prompt_len + 1` tokens before each cut
                ctx = np.stack([texts[r, c - cfg.prompt_len - 1:c] for r, c in zip(rows, cut)])
                pred, probe_n = _probe(spec, target, draft, ctx, sampling, jax.random.key(cfg.seed + 7))
                cell = dict(method=method, budget=budget, nodes=spec.builder.num_nodes, temperature=temp,
                            builder=repr(spec.builder), tau=out.acceptance_length,
                            tokens_per_s=float(np.asarray(out.lengths).sum() / seconds),
                            predicted_tau=1 + pred, probe_tau=1 + probe_n, seconds=seconds,
                            compile_and_run_s=compile_s)
                cells.append(cell)
                print(f"[{len(cells)}/{total}] T={temp} {method:9s} budget={budget:4d}: tau={cell['tau']:.3f} "
                      f"predicted={cell['predicted_tau']:.3f} probe={cell['probe_tau']:.3f} "
                      f"tok/s={cell['tokens_per_s']:.0f}", flush=True)
                if json_path is not None:
                    json_path.write_text(json.dumps(_results(cfg, cells), indent=1))
    return _results(cfg, cells)


def _results(cfg: AblationConfig, cells: list) -> dict:
    return dict(config=asdict(cfg), device=str(jax.devices()[0]), random_weights=True, cells=cells)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    temps = results["config"]["temperatures"]
    fig, axes = plt.subplots(2, len(temps), figsize=(6 * len(temps), 8), squeeze=False)
    for j, temp in enumerate(temps):
        for method in results["config"]["methods"]:
            cs = [c for c in results["cells"] if c["method"] == method and c["temperature"] == temp]
            x = [c["budget"] for c in cs]
            line, = axes[0, j].plot(x, [c["tau"] for c in cs], "o-", label=f"{method} measured")
            axes[0, j].plot(x, [c["predicted_tau"] for c in cs], "x--", color=line.get_color(),
                            label=f"{method} reward")
            axes[1, j].plot(x, [c["tokens_per_s"] for c in cs], "o-", label=method)
        for i, name in enumerate(["tau (tokens / target call)", "tokens / s"]):
            axes[i, j].set_xscale("log", base=2)
            axes[i, j].set_xlabel("tree budget (nodes)")
            axes[i, j].set_ylabel(name)
            axes[i, j].set_title(f"T = {temp}")
            axes[i, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = AblationConfig()
    p.add_argument("--budgets", type=int, nargs="+", default=list(d.budgets))
    p.add_argument("--methods", nargs="+", default=list(d.methods), choices=TREE_METHODS)
    p.add_argument("--temperatures", type=float, nargs="+", default=list(d.temperatures))
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--probe-rows", type=int, default=d.probe_rows)
    p.add_argument("--target", default=d.target)
    p.add_argument("--draft", default=d.draft)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=Path("results/tree_ablation"))
    a = p.parse_args(argv)
    cfg = AblationConfig(target=a.target, draft=a.draft, budgets=tuple(a.budgets), methods=tuple(a.methods),
                         temperatures=tuple(a.temperatures), batch=a.batch, max_new_tokens=a.max_new_tokens,
                         probe_rows=a.probe_rows, seed=a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    results = run_ablation(cfg, a.out.with_suffix(".json"))
    a.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, a.out.with_suffix(".png"))
    print(f"wrote {a.out.with_suffix('.json')} and {a.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
