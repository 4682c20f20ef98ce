"""Tree ablation on a real model pair: τ, tokens/s and speedup over AR (measured in the same run, on the same prompts)
for every tree builder × budget × temperature × prompt set, each builder verified by its matching rule (point mass
for deterministic EAGLE-2 / static children, RRS without replacement for RSD-C and RSD-S, RRS i.i.d. for
SpecInfer), with the exact draft-tree reward's prediction beside the measured τ.

The prediction: one probe round at `probe_contexts` contexts cut from the decoded answers (the target's own text);
for each drafted tree the exact E[accepted | tree] (`trees.reward.tree_reward`, = DTR for deterministic trees);
predicted τ = 1 + its mean. The probe's own sampled acceptance on the same trees is reported too (same contexts, so
it checks the reward), and the decode run's τ beside them (different contexts: the whole generation).

    python experiments/tree_ablation.py --prompts 2 --max-new-tokens 48 --out results/tree_ablation
    python experiments/tree_ablation.py --config experiments/configs/tree_ablation_smollm2.toml
Default: SmolLM2-135M-Instruct with the shipped EAGLE head (`--target`, `--drafter` take the names of
`specjax.apps.models`; `random:tiny` / `model:random:tiny-draft` runs the machinery on random weights). Writes
`<out>.json` (config, software versions, one record per cell; resumable: rerun the same command after an
interruption), `<out>.csv` and `<out>.png` (τ and speedup against budget per builder).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from specjax.bench.decoding import Results, decode_prompts, summarize
from specjax.bench.experiment import parse_config, progress, write_csv
from specjax.apps.models import load_drafter, load_target
from specjax.decode.batching import pad_prompts
from specjax.decode.chain import ChainSpeculator
from specjax.decode.loop import needed_capacity, prefill
from specjax.bench.prompts import load_prompts
from specjax.sampling import SamplingConfig
from trees.builders import canonical_method
from trees import TREE_METHODS, make_speculator
from trees.reward import tree_reward


@dataclass(frozen=True)
class TreeAblationConfig:
    """One cell per (prompt set, temperature, method, budget); AR once per (prompt set, temperature)."""

    target: str = "smollm2"
    drafter: str = "eagle"
    methods: tuple[str, ...] = TREE_METHODS
    budgets: tuple[int, ...] = (8, 16, 32, 64)
    temperatures: tuple[float, ...] = (0.0, 0.7, 1.0)
    prompt_sets: tuple[str, ...] = ("mt_bench", "humaneval")
    prompts: int = 2
    max_new_tokens: int = 48
    probe_contexts: int = 32
    seed: int = 0

    def __post_init__(self):
        for method in self.methods:
            canonical_method(method)                     # ValueError on an unknown name
        if min(self.budgets, default=0) < 1 or self.prompts < 1 or self.max_new_tokens < 2 or \
                self.probe_contexts < 1:
            raise ValueError("budgets, prompts, probe_contexts must be positive and max_new_tokens >= 2")


CONFIG = TreeAblationConfig  # what `main` parses (tests/apps/test_experiments.py)


@partial(jax.jit, static_argnames=("spec", "sampling", "capacity"))
def _probe_round(target, drafter, tokens, lengths, pending, key, *, spec, sampling, capacity):
    # the text's own next token is pending (not a sampled one); then the decode loop's own round, uncommitted
    start = prefill(target, drafter, tokens, lengths, key, sampling, capacity, pending=pending)
    v = spec.propose_and_verify(target=target, drafter=drafter, caches=start.caches, ctx=start.ctx, key=key,
                                sampling=sampling, keep_laws=True)
    return tree_reward(v.built.tree, v.target_probs, spec.builder.max_depth), v.num_accepted


def probe(spec, target, drafter, texts: list[list[int]], cuts: np.ndarray, sampling: SamplingConfig,
          key: jax.Array) -> tuple[float, float]:
    """One round of `spec` at each context `texts[i][:cuts[i]]` with pending token `texts[i][cuts[i]]`: (mean exact
    E[accepted | drafted tree], mean sampled accepted length of the same trees)."""
    tokens, lengths = pad_prompts([t[:c] for t, c in zip(texts, cuts)])
    pending = jnp.asarray([t[c] for t, c in zip(texts, cuts)], jnp.int32)
    reward, accepted = _probe_round(target, drafter, jnp.asarray(tokens), jnp.asarray(lengths), pending, key,
                                    spec=spec, sampling=sampling, capacity=needed_capacity(tokens.shape[1], spec))
    return float(np.mean(reward)), float(np.mean(accepted))


def cut_contexts(prompts: list[list[int]], answers: list[list[int]], count: int, rng: np.random.Generator
                 ) -> tuple[list[list[int]], np.ndarray]:
    """`count` (text, cut) pairs: a random answer position of a random prompt (the prompt plus at least one answer
    token as context, the next answer token pending)."""
    rows = rng.integers(0, len(prompts), count)
    texts = [prompts[r] + answers[r] for r in rows]
    cuts = np.array([rng.integers(len(prompts[r]) + 1, len(t)) for r, t in zip(rows, texts)])
    return texts, cuts


def run(cfg: TreeAblationConfig, out: Path) -> Results:
    """Measure every cell not yet in `<out>.json`; returns the results (records keyed `set/T=t/method/budget`)."""
    results = Results(out.with_suffix(".json"), dataclasses.asdict(cfg))
    target = load_target(cfg.target, cfg.seed)
    drafter = load_drafter(cfg.drafter, target, cfg.seed + 1)
    if target.random_weights:
        print(f"note: {target.label} has RANDOMLY INITIALISED weights: the numbers show the machinery.")
    cells = [(s, t, m, b) for t in cfg.temperatures for s in cfg.prompt_sets
             for m in ("ar",) + cfg.methods for b in ((0,) if m == "ar" else cfg.budgets)]
    prompts = {s: [target.encode_prompt(p) for p in load_prompts(s, cfg.prompts)] for s in cfg.prompt_sets}
    for prompt_set, temperature, method, budget in progress(cells, len(cells), "tree ablation"):
        key = f"{prompt_set}/T={temperature}/{method}" + (f"/{budget}" if budget else "")
        if results.done(key):
            continue
        # every cell compiles new loops: dropping the old executables keeps a long run from exhausting the JIT's
        # code memory (LLVM "Unable to allocate section memory" after ~50 SmolLM2 loops in one process)
        jax.clear_caches()
        sampling = SamplingConfig(temperature)
        spec = ChainSpeculator(0) if method == "ar" else make_speculator(method, budget=budget)
        runs = decode_prompts(target.handle, prompts[prompt_set], seed=cfg.seed, method=spec,
                              drafter=None if method == "ar" else drafter, max_new_tokens=cfg.max_new_tokens,
                              sampling=sampling, eos_id=target.eos_id)
        record = dict(summarize(runs), prompt_set=prompt_set, temperature=temperature, method=method,
                      budget=budget)
        if method != "ar":
            # AR re-timed on the same prompts right after the cell (after its own untimed warm-up: the caches were
            # cleared), so the speedup compares two measurements taken under the same machine load
            ar = summarize(decode_prompts(target.handle, prompts[prompt_set], seed=cfg.seed, method=ChainSpeculator(0),
                                          max_new_tokens=cfg.max_new_tokens, sampling=sampling,
                                          eos_id=target.eos_id))
            rng = np.random.default_rng([cfg.seed, budget, len(key)])
            texts, cuts = cut_contexts(prompts[prompt_set], [r.tokens for r in runs], cfg.probe_contexts, rng)
            reward, accepted = probe(spec, target.handle, drafter, texts, cuts, sampling, jax.random.key(cfg.seed))
            record.update(nodes=spec.builder.num_nodes, ar_tokens_per_s=ar["tokens_per_s"],
                          speedup=record["tokens_per_s"] / ar["tokens_per_s"],
                          predicted_tau=1 + reward, probe_tau=1 + accepted)
        results.add(key, record)
    return results


def format_table(records: dict) -> str:
    """Markdown table: one row per (prompt set, temperature, method, budget)."""
    lines = ["| set | T | method | budget | τ | predicted τ | probe τ | tok/s | vs AR |", "|---" * 9 + "|"]
    for r in records.values():
        if r["method"] == "ar":
            lines.append(f"| {r['prompt_set']} | {r['temperature']} | ar | - | 1.00 | - | - | "
                         f"{r['tokens_per_s']:.1f} | 1.00 |")
        else:
            lines.append(f"| {r['prompt_set']} | {r['temperature']} | {r['method']} | {r['budget']} | "
                         f"{r['tau']:.2f} | {r['predicted_tau']:.2f} | {r['probe_tau']:.2f} | "
                         f"{r['tokens_per_s']:.1f} | {r['speedup']:.2f} |")
    return "\n".join(lines)


def plot(records: dict, cfg: TreeAblationConfig, path: Path) -> None:
    """τ (measured and predicted) and speedup over AR against budget, one column per (prompt set, temperature)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, t) for s in cfg.prompt_sets for t in cfg.temperatures]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.5 * len(panels), 7), squeeze=False)
    for j, (prompt_set, temperature) in enumerate(panels):
        for method in cfg.methods:
            cells = [r for r in records.values() if r["method"] == method and r["prompt_set"] == prompt_set
                     and r["temperature"] == temperature]
            x = [r["budget"] for r in cells]
            line, = axes[0, j].plot(x, [r["tau"] for r in cells], "o-", label=method)
            axes[0, j].plot(x, [r["predicted_tau"] for r in cells], "x--", color=line.get_color())
            axes[1, j].plot(x, [r["speedup"] for r in cells], "o-", label=method)
        axes[1, j].axhline(1.0, color="grey", lw=0.8)
        for i, name in enumerate(["τ (o measured, x reward)", "speedup over AR"]):
            axes[i, j].set(xscale="log", xlabel="tree budget (nodes)", ylabel=name,
                           title=f"{prompt_set}, T = {temperature}")
            axes[i, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    cfg, out = parse_config(TreeAblationConfig, argv, __doc__, default_out="results/tree_ablation")
    results = run(cfg, out)
    print(format_table(results.records))
    write_csv(out.with_suffix(".csv"), list(results.records.values()))
    plot(results.records, cfg, out.with_suffix(".png"))
    print(f"wrote {out}.json, {out}.csv and {out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
