"""What each lossy chain rule buys (accepted tokens) and costs (distortion of the emitted law), before anyone turns
one on (transport/THEORY.md §5.6; the rules: specjax.verify.lossy_rules and HSD, specjax.verify.hsd).

1. Exact, on random context-dependent models (V = `vocab`, K = `depth` drafts): per rule and threshold, the TV and
   KL(emitted ‖ target) of the completed emitted law and the τ gain over the token rule, averaged over `models`
   models per Dirichlet concentration (`transport.studies.lossy.tradeoff_table`).
2. With `--laws FILE.npz` (stored SmolLM2 logits, `experiments/real_laws.py collect`): the per-token distortion of
   each rule without look-ahead (TV of its one-step emitted law to p) on those held-out contexts, per temperature
   and drafter.
3. With `--smollm2 N`: τ of each rule in the decode loop on SmolLM2-135M with the shipped EAGLE head, chains of
   `num_draft` drafts, N MT-bench prompts, per temperature, same prompts and keys for every rule.

    python experiments/lossy_tradeoff.py --out results/lossy_tradeoff
    python experiments/lossy_tradeoff.py --laws results/real_laws.npz --smollm2 8 --out results/lossy_tradeoff
Writes `<out>.json` (config, software versions, records; resumable), `<out>.csv` and `<out>.png` (τ gain against
TV, exact part) and prints the tables.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from specjax.bench.decoding import Results
from specjax.bench.experiment import parse_config, progress, write_csv
from transport.studies.lossy import per_token_distortion, tradeoff_table


@dataclasses.dataclass(frozen=True)
class LossyConfig:
    rules: tuple[str, ...] = ("token", "block", "hsd", "typical", "typical:0.05,0.3", "fuzzy:0.05", "fuzzy",
                              "fuzzy:0.3", "ears:0.1", "ears", "ears:0.5", "topm:1", "topm", "fly", "fly:2,0.3",
                              "fly:2,0.6")
    """chain rules (lossless ones as references; lossy ones as NAME[:values])"""
    vocab: int = 4
    """V of the random models (exact part)"""
    depth: int = 3
    """drafts per chain K (exact part)"""
    models: int = 20
    """random models per concentration (exact part)"""
    concentrations: tuple[float, ...] = (0.5, 2.0)
    """Dirichlet concentrations of the random models' laws (small: peaked laws)"""
    laws: str = ""
    """a stored-logits .npz (experiments/real_laws.py collect): per-token distortion on its contexts"""
    temperatures: tuple[float, ...] = (0.7, 1.0)
    """temperatures of the real-law and SmolLM2 parts"""
    smollm2: int = 0
    """with N > 0, τ of each rule on N MT-bench prompts of SmolLM2 + EAGLE"""
    num_draft: int = 4
    """drafts per round in the SmolLM2 part"""
    max_new_tokens: int = 48
    """tokens per prompt in the SmolLM2 part"""
    seed: int = 0


CONFIG = LossyConfig
LOSSLESS = ("token", "block")


def smollm2_cells(cfg: LossyConfig, results: Results) -> None:
    """τ of every (temperature, rule) not yet in `results`, SmolLM2 + the shipped EAGLE head, chains of K drafts."""
    cells = [(t, rule) for t in cfg.temperatures for rule in cfg.rules if not results.done(f"smollm2/{t}/{rule}")]
    if not cells:
        return
    from specjax.apps.models import load_drafter, load_target
    from specjax.bench.decoding import decode_prompts, summarize
    from specjax.bench.prompts import load_prompts
    from specjax.methods import make_method
    from specjax.sampling import SamplingConfig

    target = load_target("smollm2")
    drafter = load_drafter("eagle", target)
    ids = [target.encode_prompt(q) for q in load_prompts("mt_bench", cfg.smollm2)]
    for temperature, rule in progress(cells, len(cells), "SmolLM2 τ per rule"):
        method = make_method("chain", num_draft=cfg.num_draft, verifier=rule, allow_lossy=rule not in LOSSLESS)
        r = summarize(decode_prompts(target.handle, ids, method=method, drafter=drafter, seed=cfg.seed,
                                     max_new_tokens=cfg.max_new_tokens, eos_id=target.eos_id,
                                     sampling=SamplingConfig(temperature=temperature)))
        results.add(f"smollm2/{temperature}/{rule}", dict(rule=rule, temperature=temperature, **r))


def run(cfg: LossyConfig, out: Path) -> Results:
    results = Results(out.with_suffix(".json"), dataclasses.asdict(cfg))
    if not results.done("exact"):
        results.add("exact", tradeoff_table(cfg.rules, cfg.models, cfg.vocab, cfg.depth, cfg.concentrations,
                                            cfg.seed))
    if cfg.laws and not results.done("laws"):
        from transport.studies.law_file import load_laws

        stored = load_laws(cfg.laws)
        one_step = [r for r in cfg.rules if r not in LOSSLESS + ("hsd",) and not r.startswith("fly")]
        results.add("laws", [dict(drafter=name, **per_token_distortion(rule, stored.target_logits, logits, t))
                             for name, logits in zip(stored.drafters, stored.drafter_logits)
                             for t in cfg.temperatures for rule in one_step])
    if cfg.smollm2:
        smollm2_cells(cfg, results)
    return results


def format_tables(records: dict) -> str:
    lines = [f"{'exact: rule':<20}{'conc':>6}{'TV mean':>9}{'TV max':>8}{'KL mean':>9}{'E[acc]':>8}{'τ gain':>8}"]
    for r in records["exact"]:
        lines.append(f"{r['rule']:<20}{r['concentration']:>6.1f}{r['tv_mean']:>9.4f}{r['tv_max']:>8.4f}"
                     f"{r['kl_mean']:>9.4f}{r['accepted_mean']:>8.3f}{r['tau_gain_mean']:>8.3f}")
    if "laws" in records:
        lines += ["", f"{'real laws: drafter':<22}{'T':>5} {'rule':<18}{'TV mean':>9}{'TV p90':>8}{'pass':>7}"
                      f"{'token pass':>11}"]
        for r in records["laws"]:
            lines.append(f"{r['drafter']:<22}{r['temperature']:>5.2f} {r['rule']:<18}{r['tv_mean']:>9.4f}"
                         f"{r['tv_p90']:>8.4f}{r['pass_mean']:>7.3f}{r['token_pass_mean']:>11.3f}")
    taus = [r for key, r in records.items() if key.startswith("smollm2/")]
    if taus:
        lines += ["", f"{'SmolLM2 + EAGLE':<16}{'T':>5} {'rule':<18}{'tau':>7}{'x token':>9}{'tok/s':>8}"]
        token = {r["temperature"]: r["tau"] for r in taus if r["rule"] == "token"}
        for r in taus:
            ratio = r["tau"] / token[r["temperature"]] if r["temperature"] in token else float("nan")
            lines.append(f"{'':<16}{r['temperature']:>5.2f} {r['rule']:<18}{r['tau']:>7.3f}{ratio:>9.3f}"
                         f"{r['tokens_per_s']:>8.1f}")
    return "\n".join(lines)


def plot(records: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = records["exact"]
    families = list(dict.fromkeys(r["rule"].partition(":")[0] for r in rows))
    color = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}       # one colour per rule family
    fig, axes = plt.subplots(1, len({r["concentration"] for r in rows}), figsize=(12, 5), sharey=True, squeeze=False)
    for ax, conc in zip(axes[0], sorted({r["concentration"] for r in rows})):
        for r in (r for r in rows if r["concentration"] == conc):
            family = r["rule"].partition(":")[0]
            ax.scatter(r["tv_mean"], r["tau_gain_mean"], s=30, color=color[family], label=family)
            ax.annotate(r["rule"], (r["tv_mean"], r["tau_gain_mean"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(1.0, color="k", lw=0.6, ls="--")
        ax.set_xlabel("TV of the emitted law to the target's (exact, mean over models)")
        ax.set_title(f"Dirichlet concentration {conc}")
    axes[0][0].set_ylabel("τ gain over the token rule")
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0][0].legend(unique.values(), unique.keys(), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    cfg, out = parse_config(LossyConfig, argv, __doc__, default_out="results/lossy_tradeoff")
    records = run(cfg, out).records
    print(format_tables(records))
    write_csv(out.with_suffix(".csv"), [dict(part="exact", **r) for r in records["exact"]]
              + [dict(part="laws", **r) for r in records.get("laws", [])]
              + [dict(part="smollm2", **r) for k, r in records.items() if k.startswith("smollm2/")])
    plot(records, out.with_suffix(".png"))
    print(f"wrote {out}.json, {out}.csv and {out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
